#include "cohort/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {

// A relaxed increment: the count is read only between phases, after the threads that allocate have synchronized.
std::atomic<std::uint64_t> g_allocations{0};

}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* block = std::malloc(size == 0 ? 1 : size)) return block;
  throw std::bad_alloc();
}

// Every unaligned form is replaced together: a nothrow new left to the runtime (std::stable_sort's buffer) would be
// freed by the delete below, which is a mismatch under AddressSanitizer's allocator.
void* operator new(std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }

// GCC cannot see that the operator new above is the malloc these pair with.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* block) noexcept { std::free(block); }
void operator delete(void* block, std::size_t /*size*/) noexcept { std::free(block); }
void operator delete(void* block, const std::nothrow_t& /*tag*/) noexcept { std::free(block); }
void operator delete[](void* block) noexcept { std::free(block); }
void operator delete[](void* block, std::size_t /*size*/) noexcept { std::free(block); }
void operator delete[](void* block, const std::nothrow_t& /*tag*/) noexcept { std::free(block); }
#pragma GCC diagnostic pop

namespace cohort::tool {

std::uint64_t allocation_count() noexcept { return g_allocations.load(std::memory_order_relaxed); }

}  // namespace cohort::tool
