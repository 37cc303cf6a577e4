#include "common/payload.h"

#include <array>
#include <bit>
#include <cstdlib>
#include <new>

namespace cohort {
namespace {

// Size classes: a block of class c holds 2^(c + kSmallestShift) bytes, header included. Larger payloads (above
// 1 MiB, the default message limit) are allocated for their size and freed when dropped.
constexpr unsigned kSmallestShift = 6;  // 64 bytes
constexpr unsigned kClasses = 15;       // up to 1 MiB
constexpr std::uint32_t kUnpooled = 0xFFFF'FFFFU;

std::uint32_t size_class(std::size_t total) noexcept {
  const unsigned shift = std::max<unsigned>(kSmallestShift, static_cast<unsigned>(std::bit_width(total - 1)));
  return shift - kSmallestShift < kClasses ? shift - kSmallestShift : kUnpooled;
}

std::size_t class_bytes(std::uint32_t size_class) noexcept { return std::size_t{1} << (size_class + kSmallestShift); }

/// One thread's free blocks, a singly linked list per class threaded through the blocks themselves.
struct Pool {
  struct Free {
    Free* next;
  };
  std::array<Free*, kClasses> free{};
  std::size_t blocks = 0;
  std::size_t bytes = 0;
  bool alive = true;  // false once the thread's pool is destroyed: blocks dropped later go straight back

  ~Pool() {
    for (Free*& head : free) {
      while (head != nullptr) {
        Free* next = head->next;
        std::free(head);
        head = next;
      }
    }
    alive = false;
  }
};

thread_local Pool t_pool;

Payload::Block* take_block(std::size_t payload_size) {
  const std::size_t total = sizeof(Payload::Block) + payload_size;
  const std::uint32_t cls = size_class(total);
  void* memory = nullptr;
  if (cls != kUnpooled && t_pool.alive && t_pool.free[cls] != nullptr) {
    Pool::Free* head = t_pool.free[cls];
    t_pool.free[cls] = head->next;
    --t_pool.blocks;
    t_pool.bytes -= class_bytes(cls);
    memory = head;
  } else {
    memory = std::malloc(cls == kUnpooled ? total : class_bytes(cls));
    if (memory == nullptr) throw std::bad_alloc();
  }
  return new (memory) Payload::Block{1, cls, payload_size};
}

}  // namespace

Payload::Payload(ByteSpan bytes) {
  if (bytes.empty()) return;
  block_ = take_block(bytes.size());
  std::memcpy(block_->bytes(), bytes.data(), bytes.size());
}

void Payload::release(Block* block) noexcept {
  const std::uint32_t cls = block->size_class;
  if (cls == kUnpooled || !t_pool.alive || t_pool.bytes + class_bytes(cls) > kMaxPooledBytes) {
    std::free(block);
    return;
  }
  auto* free = reinterpret_cast<Pool::Free*>(block);  // NOLINT: the block's memory becomes a list node
  free->next = t_pool.free[cls];
  t_pool.free[cls] = free;
  ++t_pool.blocks;
  t_pool.bytes += class_bytes(cls);
}

std::size_t Payload::footprint() const noexcept {
  if (block_ == nullptr) return 0;
  return block_->size_class == kUnpooled ? sizeof(Block) + block_->size : class_bytes(block_->size_class);
}

void Payload::trim_pool() noexcept {
  if (!t_pool.alive) return;
  for (Pool::Free*& head : t_pool.free) {
    while (head != nullptr) {
      Pool::Free* next = head->next;
      std::free(head);
      head = next;
    }
  }
  t_pool.blocks = 0;
  t_pool.bytes = 0;
}

std::size_t Payload::pooled_blocks() noexcept { return t_pool.blocks; }
std::size_t Payload::pooled_bytes() noexcept { return t_pool.bytes; }

}  // namespace cohort
