// The client core allocates nothing per message in steady state (issue 14): offers, acks and egress reuse the
// core's pooled byte buffers, its ring and its vectors. The test drives the core as the runtime does (client.cpp:
// frames in, outgoing() cleared after every turn, events swapped out and handed back with recycle()) and counts
// every call of the global operator new. Its own executable, since it replaces operator new for the whole program.
// The frames it feeds in are encoded and scanned before the measured part.

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <variant>
#include <vector>

#include "client/client_core.h"
#include "common/bytes.h"
#include "protocol/catalogue.h"
#include "protocol/frame.h"

namespace {

// Single-threaded while counting: plain variables are enough.
bool g_counting = false;
std::size_t g_allocations = 0;

void* allocate(std::size_t size) {
  if (g_counting) ++g_allocations;
  return std::malloc(size == 0 ? 1 : size);
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) {
  if (g_counting) ++g_allocations;
  const auto align = static_cast<std::size_t>(alignment);
  return std::aligned_alloc(align, (size + align - 1) / align * align);
}

// Out of line, so the compiler does not see free() meet a pointer from operator new (-Wmismatched-new-delete).
[[gnu::noinline]] void release(void* block) noexcept { std::free(block); }

}  // namespace

void* operator new(std::size_t size) {
  if (void* block = allocate(size)) return block;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* block = allocate(size)) return block;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new(std::size_t size, std::align_val_t alignment) {
  if (void* block = allocate_aligned(size, alignment)) return block;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  if (void* block = allocate_aligned(size, alignment)) return block;
  throw std::bad_alloc();
}
void operator delete(void* block) noexcept { release(block); }
void operator delete[](void* block) noexcept { release(block); }
void operator delete(void* block, std::size_t) noexcept { release(block); }
void operator delete[](void* block, std::size_t) noexcept { release(block); }
void operator delete(void* block, const std::nothrow_t&) noexcept { release(block); }
void operator delete[](void* block, const std::nothrow_t&) noexcept { release(block); }
void operator delete(void* block, std::align_val_t) noexcept { release(block); }
void operator delete[](void* block, std::align_val_t) noexcept { release(block); }
void operator delete(void* block, std::size_t, std::align_val_t) noexcept { release(block); }
void operator delete[](void* block, std::size_t, std::align_val_t) noexcept { release(block); }

namespace cohort::client {
namespace {

using namespace std::chrono_literals;
using ByteVector = std::vector<std::byte>;

constexpr std::uint64_t kSession = 10;
constexpr protocol::Incarnation kIncarnation{0x1C, 0x2D};
constexpr std::uint32_t kThree[] = {1, 2, 3};
constexpr std::size_t kMessageSize = 64;
constexpr std::size_t kAckEvery = 8;  // messages per ack (the leader batches), and per egress message
constexpr std::size_t kWarmUp = 4000;
constexpr std::size_t kMeasured = 10000;

/// Counts the allocations while it lives.
class Counting {
 public:
  Counting() {
    g_allocations = 0;
    g_counting = true;
  }
  ~Counting() { g_counting = false; }
  Counting(const Counting&) = delete;
  Counting& operator=(const Counting&) = delete;
  std::size_t allocations() const { return g_allocations; }
};

/// Frames encoded back to back into one buffer, then scanned: the frames are views into it.
class Frames {
 public:
  template <typename Message>
  void add(const Message& message) {
    protocol::append_frame(message, bytes_);
  }
  std::vector<protocol::Frame> scan() const {
    std::vector<protocol::Frame> frames;
    for (ByteSpan rest(bytes_); !rest.empty();) {
      const protocol::FrameScan scan = protocol::scan_frame(rest);
      EXPECT_EQ(scan.status, protocol::FrameScan::Status::complete);
      if (scan.status != protocol::FrameScan::Status::complete) break;
      frames.push_back(scan.frame);
      rest = rest.subspan(scan.consumed);
    }
    return frames;
  }

 private:
  ByteVector bytes_;
};

// The counter sees the allocations of this very program (the replacement is in place).
TEST(ClientAllocTest, TheCounterCountsEveryAllocation) {
  std::size_t counted = 0;
  {
    const Counting counting;
    ByteVector bytes(100);
    bytes.resize(1000);
    counted = counting.allocations();
  }
  EXPECT_EQ(counted, 2U);
}

TEST(ClientAllocTest, OffersAcksAndEgressAllocateNothingInSteadyState) {
  ClientOptions options;
  options.cluster_id = 7;
  options.members = {"n1:7001", "n2:7002", "n3:7003"};
  ClientCore core(options, 0xC1, 0xE7, 42);

  // Every frame the node sends, encoded and scanned before anything is measured: the session opened (layout 3),
  // then for every kAckEvery messages an ack and an egress message (its seqs from 1).
  constexpr std::size_t kTotal = kWarmUp + kMeasured;
  Frames encoded;
  protocol::SessionReply opened;
  opened.status = protocol::SessionStatus::opened;
  opened.leader_id = 1;
  opened.term = 1;
  opened.session_id = kSession;
  opened.incarnation = kIncarnation;
  opened.max_message_size = 1U << 20U;
  opened.keepalive_interval_ms = 250;
  opened.silence_limit_ms = 1000;
  encoded.add(opened);
  const std::array<std::byte, kMessageSize> egress_payload{};
  for (std::size_t batch = 1; batch <= kTotal / kAckEvery; ++batch) {
    encoded.add(protocol::Ack{kSession, batch * kAckEvery, 1000 + batch, 1, 1});
    encoded.add(protocol::Egress{kSession, batch, egress_payload, 1, 1});
  }
  const std::vector<protocol::Frame> frames = encoded.scan();
  ASSERT_EQ(frames.size(), 1 + 2 * (kTotal / kAckEvery));

  Time now{0};
  core.tick(now);
  ASSERT_TRUE(core.take_connect().has_value());
  protocol::PeerIdentity node;
  node.role = protocol::PeerRole::node;
  node.node_id = 1;
  node.incarnation = kIncarnation;
  node.members = protocol::MemberIds::of(kThree);
  core.on_connected(now, node);
  core.on_frame(frames[0], now);
  ASSERT_EQ(core.state(), ClientState::connected);
  core.outgoing().clear();
  core.events().clear();  // connected, the session, the leader

  std::array<std::byte, kMessageSize> message{};
  std::vector<Event> events;  // as the runtime's: swapped with the core's, then recycled
  std::size_t next_frame = 1;
  std::size_t applied = 0;
  std::size_t egress = 0;
  std::size_t other_events = 0;
  // One turn of the runtime per message: an offer, the node's frames when a batch is complete, a tick, the
  // outgoing bytes "sent", the events told and handed back.
  const auto run = [&](std::size_t messages) {
    for (std::size_t i = 0; i < messages; ++i) {
      now += 1ms;
      message[0] = static_cast<std::byte>(i);
      const Offer offer = core.offer(message, now);
      if (offer.status != OfferStatus::accepted) {
        ADD_FAILURE() << "offer " << i << ": " << to_string(offer.status);
        return;
      }
      if (offer.seq % kAckEvery == 0) {
        core.on_frame(frames[next_frame++], now);  // the ack of the batch
        core.on_frame(frames[next_frame++], now);  // an egress message
      }
      core.tick(now);
      core.outgoing().clear();
      events.swap(core.events());
      for (const Event& event : events) {
        if (std::holds_alternative<AppliedEvent>(event))
          ++applied;
        else if (std::holds_alternative<EgressEvent>(event))
          ++egress;
        else
          ++other_events;
      }
      core.recycle(events);
    }
  };

  run(kWarmUp);
  ASSERT_EQ(applied, kWarmUp);
  std::size_t allocations = 0;
  {
    const Counting counting;
    run(kMeasured);
    allocations = counting.allocations();
  }
  EXPECT_EQ(allocations, 0U) << "over " << kMeasured << " messages";
  // The measured part did the work it claims.
  EXPECT_EQ(applied, kTotal);
  EXPECT_EQ(egress, kTotal / kAckEvery);
  EXPECT_EQ(other_events, 0U);
  EXPECT_EQ(core.state(), ClientState::connected);
  EXPECT_EQ(core.unacknowledged(), 0U);
}

}  // namespace
}  // namespace cohort::client
