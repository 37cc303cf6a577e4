#pragma once
// A bounded single-producer/single-consumer queue: one thread pushes, one other thread pops, neither blocks
// nor allocates after construction. The node's event-loop and storage threads talk through two of them.
// Head and tail sit on their own cache lines, and each side caches the other's index, so a push or a pop
// touches shared lines only when the cached view says the queue is full or empty.

#include <atomic>
#include <cstddef>
#include <optional>
#include <vector>

#include "common/assert.h"

namespace cohort {

// The padding the analyzer flags is the point: head and tail on separate cache lines.
template <typename T>
class SpscQueue {  // NOLINT(clang-analyzer-optin.performance.Padding)
 public:
  /// `capacity` is rounded up to a power of two.
  explicit SpscQueue(std::size_t capacity) {
    std::size_t size = 2;
    while (size < capacity) size *= 2;
    slots_.resize(size);
    mask_ = size - 1;
  }

  /// Producer only. False (and `value` untouched) if the queue is full.
  bool try_push(T& value) {
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) return false;
    }
    slots_[tail & mask_] = std::move(value);
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  /// Consumer only.
  std::optional<T> try_pop() {
    const std::size_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return std::nullopt;
    }
    std::optional<T> value(std::move(slots_[head & mask_]));
    head_.store(head + 1, std::memory_order_release);
    return value;
  }

  std::size_t capacity() const noexcept { return mask_ + 1; }

 private:
  static constexpr std::size_t kCacheLine = 64;
  std::vector<T> slots_;
  std::size_t mask_ = 0;
  alignas(kCacheLine) std::atomic<std::size_t> head_{0};  // next slot to pop; written by the consumer
  std::size_t tail_cache_ = 0;                            // the consumer's view of tail_
  alignas(kCacheLine) std::atomic<std::size_t> tail_{0};  // next slot to push; written by the producer
  std::size_t head_cache_ = 0;                            // the producer's view of head_
};

}  // namespace cohort
