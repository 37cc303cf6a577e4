#pragma once
// An immutable, shared byte buffer for the bytes that ride the hot path: a log entry's payload (proposed once,
// then held by the entry cache, every AppendRequest and the apply) and an egress message (the session's resend
// window and the gateway's output). Copying a Payload shares the bytes; the last copy gives the block back.
//
// Blocks come from a pool of the thread that drops them (free lists by power-of-two size, at most kMaxPooledBytes
// a thread), so in steady state making a payload costs one memcpy and no allocation.
//
// Invariant: a block is touched by one thread at a time. Its reference count is a plain integer, which is what
// makes a copy cheap: a node's payloads live and die on its event-loop thread (the storage thread gets bytes already
// serialized into its batch, never a Payload), and the simulator runs every node on one thread.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/bytes.h"

namespace cohort {

class Payload {
 public:
  Payload() noexcept = default;
  /// A copy of `bytes` in a pooled block (none for empty bytes).
  explicit Payload(ByteSpan bytes);
  // Implicit, for building entries and messages in tests and cold paths; the hot paths pass spans.
  Payload(const std::vector<std::byte>& bytes) : Payload(ByteSpan(bytes)) {}  // NOLINT(google-explicit-constructor)

  Payload(const Payload& other) noexcept : block_(other.block_) {
    if (block_ != nullptr) ++block_->references;
  }
  Payload(Payload&& other) noexcept : block_(other.block_) { other.block_ = nullptr; }
  Payload& operator=(const Payload& other) noexcept {
    if (this == &other) return *this;
    Block* const block = other.block_;
    if (block != nullptr) ++block->references;
    drop();
    block_ = block;
    return *this;
  }
  Payload& operator=(Payload&& other) noexcept {
    if (this != &other) {
      drop();
      block_ = other.block_;
      other.block_ = nullptr;
    }
    return *this;
  }
  ~Payload() { drop(); }

  const std::byte* data() const noexcept { return block_ == nullptr ? nullptr : block_->bytes(); }
  std::size_t size() const noexcept { return block_ == nullptr ? 0 : block_->size; }
  bool empty() const noexcept { return size() == 0; }
  const std::byte* begin() const noexcept { return data(); }
  const std::byte* end() const noexcept { return data() + size(); }
  // A contiguous range: it converts to ByteSpan implicitly (std::span's range constructor).
  ByteSpan span() const noexcept { return {data(), size()}; }
  std::vector<std::byte> to_vector() const { return {begin(), end()}; }
  /// The memory its block takes (header and rounding to the size class included): what memory bounds must count.
  std::size_t footprint() const noexcept;

  /// Equal bytes (not the same block).
  friend bool operator==(const Payload& a, const Payload& b) noexcept {
    return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
  }

  /// Blocks this thread's pool holds for reuse, and their bytes (for tests and memory accounting).
  static std::size_t pooled_blocks() noexcept;
  static std::size_t pooled_bytes() noexcept;
  /// Gives this thread's free blocks back to the allocator (after a burst: the node's release_memory_after_burst).
  static void trim_pool() noexcept;
  /// The pool keeps at most this many bytes of free blocks per thread; more are given back to the allocator.
  static constexpr std::size_t kMaxPooledBytes = std::size_t{32} << 20U;

  struct Block {
    std::uint32_t references;
    std::uint32_t size_class;  // kUnpooled: allocated for its size alone, freed when dropped
    std::size_t size;
    std::byte* bytes() noexcept { return reinterpret_cast<std::byte*>(this + 1); }  // NOLINT: trailing storage
  };

 private:
  void drop() noexcept {
    if (block_ != nullptr && --block_->references == 0) release(block_);
    block_ = nullptr;
  }
  static void release(Block* block) noexcept;

  Block* block_ = nullptr;
};

}  // namespace cohort
