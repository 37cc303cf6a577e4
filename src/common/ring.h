#pragma once
// A double-ended queue over one growable array: push at the back, pop at either end, index from the front. Unlike
// std::deque it never frees or allocates while its size stays under its largest so far, so a queue that is filled
// and drained at a steady rate (the client's resend buffer, the log's entry cache, a session's egress window)
// allocates nothing per element. A popped slot keeps its moved-from value until it is reused.

#include <cstddef>
#include <utility>
#include <vector>

#include "common/assert.h"

namespace cohort {

template <typename T>
class Ring {
 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  T& operator[](std::size_t index) noexcept { return slots_[slot(index)]; }
  const T& operator[](std::size_t index) const noexcept { return slots_[slot(index)]; }
  T& front() noexcept { return (*this)[0]; }
  T& back() noexcept { return (*this)[size_ - 1]; }
  const T& front() const noexcept { return (*this)[0]; }
  const T& back() const noexcept { return (*this)[size_ - 1]; }

  void push_back(T value) {
    if (size_ == slots_.size()) grow();
    slots_[slot(size_)] = std::move(value);
    ++size_;
  }

  /// Removes the front element and returns it (moved out).
  T pop_front() noexcept {
    COHORT_ASSERT(size_ > 0);
    T value = std::move(slots_[head_]);
    head_ = (head_ + 1) & (slots_.size() - 1);
    --size_;
    return value;
  }

  /// Removes the back element and returns it (moved out).
  T pop_back() noexcept {
    COHORT_ASSERT(size_ > 0);
    --size_;
    return std::move(slots_[slot(size_)]);
  }

  /// Removes every element (their slots keep moved-from values).
  void clear() noexcept {
    while (size_ > 0) pop_front();
  }

  /// Front to back, for reading.
  class const_iterator {
   public:
    const_iterator(const Ring& ring, std::size_t index) noexcept : ring_(&ring), index_(index) {}
    const T& operator*() const noexcept { return (*ring_)[index_]; }
    const T* operator->() const noexcept { return &(*ring_)[index_]; }
    const_iterator& operator++() noexcept {
      ++index_;
      return *this;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) noexcept { return a.index_ == b.index_; }

   private:
    const Ring* ring_;
    std::size_t index_;
  };
  const_iterator begin() const noexcept { return {*this, 0}; }
  const_iterator end() const noexcept { return {*this, size_}; }

  /// Removes every element, calling `take` with each (moved out), front first.
  template <typename F>
  void drain(F&& take) {
    while (size_ > 0) take(pop_front());
  }

 private:
  // Capacity is a power of two, so a slot is an index masked.
  std::size_t slot(std::size_t index) const noexcept { return (head_ + index) & (slots_.size() - 1); }

  void grow() {
    std::vector<T> bigger(slots_.empty() ? 16 : slots_.size() * 2);
    for (std::size_t index = 0; index < size_; ++index) bigger[index] = std::move((*this)[index]);
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace cohort
