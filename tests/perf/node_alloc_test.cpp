// Heap allocations on the nodes' path per message, in steady state (issue 16): three real Nodes in this process
// (each run() on a thread of its own, echo service, loopback TCP), one client in invoker mode on the test's thread
// keeping a window of messages in flight. After a warm-up, every call into the C allocator is counted by the thread
// that made it: each node's event-loop thread, and every other thread the nodes started (storage, snapshot
// writers). The client's thread (this one), the invoker-mode client's whole runtime, is counted apart.
// Its own executable, since it replaces the allocator's entry points for the whole program; release builds only (the
// sanitizers replace the allocator themselves).

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <errno.h>
#include <execinfo.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cohort/client.h"
#include "cohort/node.h"
#include "services/echo_service.h"

namespace {

constexpr int kNodes = 3;
constexpr int kClientThread = kNodes;  // counts[kClientThread]: the test's own thread
constexpr int kOtherThreads = kNodes + 1;

// Who is allocating: a node's loop thread sets its index before run(); the test's thread sets kClientThread;
// threads the nodes start keep -1 and count as kOtherThreads.
thread_local int t_owner = -1;
std::atomic<bool> g_counting{false};
std::array<std::atomic<std::uint64_t>, kNodes + 2> g_counts{};

// COHORT_ALLOC_BACKTRACES=N prints where the first N counted allocations on the nodes' threads came from (with
// COHORT_ALLOC_CLIENT set: on the client's).
std::atomic<int> g_backtraces_left{0};
std::atomic<bool> g_trace_client{false};
thread_local bool t_in_backtrace = false;

void count(std::size_t size) {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  const int owner = t_owner < 0 ? kOtherThreads : t_owner;
  g_counts[static_cast<std::size_t>(owner)].fetch_add(1, std::memory_order_relaxed);
  if ((owner == kClientThread) == g_trace_client.load(std::memory_order_relaxed) && !t_in_backtrace &&
      g_backtraces_left.fetch_sub(1, std::memory_order_relaxed) > 0) {
    t_in_backtrace = true;
    std::array<void*, 24> frames{};
    const int depth = ::backtrace(frames.data(), static_cast<int>(frames.size()));
    std::array<char, 64> line{};
    const int length = std::snprintf(line.data(), line.size(), "--- allocation of %zu bytes\n", size);
    ::write(2, line.data(), static_cast<std::size_t>(length));
    ::backtrace_symbols_fd(frames.data(), depth, 2);
    t_in_backtrace = false;
  }
}

}  // namespace

// The C allocator itself is interposed (glibc lets a program define these): operator new, the node's pools and the
// libraries all end up here, so nothing that takes memory from the heap escapes the count.
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* block, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);

void* malloc(std::size_t size) {
  count(size);
  return __libc_malloc(size);
}
void* calloc(std::size_t count_, std::size_t size) {
  count(count_ * size);
  return __libc_calloc(count_, size);
}
void* realloc(void* block, std::size_t size) {
  count(size);
  return __libc_realloc(block, size);
}
void* memalign(std::size_t alignment, std::size_t size) {
  count(size);
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  count(size);
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  count(size);
  void* block = __libc_memalign(alignment, size);
  if (block == nullptr) return ENOMEM;
  *out = block;
  return 0;
}
}

namespace {

using namespace std::chrono_literals;

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

class Counter final : public cohort::ClientListener {
 public:
  void on_applied(std::uint64_t /*seq*/, std::uint64_t /*position*/) override { ++applied; }
  void on_rejected(std::uint64_t /*seq*/, cohort::Reason /*reason*/, std::string_view /*text*/) override { ++failed; }
  void on_unknown(std::uint64_t /*seq*/, cohort::Reason /*reason*/, std::string_view /*text*/) override { ++failed; }
  void on_egress(std::uint64_t /*seq*/, std::span<const std::byte> /*message*/) override { ++egress; }
  std::uint64_t applied = 0;
  std::uint64_t failed = 0;
  std::uint64_t egress = 0;
};

struct Cluster {
  std::filesystem::path dir;
  std::vector<std::unique_ptr<cohort::services::EchoService>> services;
  std::vector<std::unique_ptr<cohort::Node>> nodes;
  std::vector<std::thread> threads;
  std::vector<std::string> client_endpoints;

  explicit Cluster(cohort::SyncPolicy sync) {
    dir = std::filesystem::temp_directory_path() / fmt::format("cohort-node-alloc-{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::vector<cohort::Member> members;
    for (std::uint32_t id = 1; id <= kNodes; ++id) {
      members.push_back({id, fmt::format("127.0.0.1:{}", free_port()), fmt::format("127.0.0.1:{}", free_port())});
      client_endpoints.push_back(members.back().client_endpoint);
    }
    for (std::uint32_t id = 1; id <= kNodes; ++id) {
      cohort::NodeOptions options;
      options.node_id = id;
      options.cluster_id = 9;
      options.members = members;
      options.data_dir = (dir / fmt::format("n{}", id)).string();
      options.sync = sync;
      options.handle_signals = false;
      // Per message, not per 16 MiB: no snapshot and no new segment inside the measured window (each of those
      // allocates its buffers and files once, a cost per snapshot and per segment).
      options.snapshot_threshold = 0;
      options.segment_size = 1ULL << 30U;
      options.log_level = cohort::LogLevel::warn;
      // Served, and updated every tick: the metrics must not allocate on the message path either.
      options.metrics_endpoint = "127.0.0.1:0";
      services.push_back(std::make_unique<cohort::services::EchoService>());
      nodes.push_back(std::make_unique<cohort::Node>(options, *services.back()));
      if (auto error = nodes.back()->start()) throw std::runtime_error(*error);
    }
    for (int i = 0; i < kNodes; ++i)
      threads.emplace_back([this, i] {
        t_owner = i;
        nodes[static_cast<std::size_t>(i)]->run();
      });
  }

  ~Cluster() {
    for (auto& node : nodes) node->request_stop();
    for (auto& thread : threads) thread.join();
    nodes.clear();
    std::filesystem::remove_all(dir);
  }
};

struct Window {
  std::uint64_t offered = 0;
};

/// Keeps `in_flight` messages outstanding until `count` more were applied; false on a stall.
bool pump(cohort::Client& client, Counter& counter, Window& window, std::uint64_t count, std::uint64_t in_flight,
          const std::vector<std::byte>& message) {
  const std::uint64_t target = counter.applied + count;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (counter.applied < target) {
    while (window.offered - counter.applied < in_flight && window.offered < target) {
      if (client.offer(message).status != cohort::OfferStatus::accepted) break;
      ++window.offered;
    }
    client.poll();
    if (std::chrono::steady_clock::now() > deadline || counter.failed != 0) return false;
  }
  return true;
}

void measure(cohort::SyncPolicy sync, const char* name) {
  t_owner = kClientThread;
  Cluster cluster(sync);
  Counter counter;
  cohort::ClientOptions options;
  options.cluster_id = 9;
  options.members = cluster.client_endpoints;
  options.threading = cohort::ClientThreading::invoker;
  cohort::Client client(options, counter);
  ASSERT_TRUE(client.wait_connected(30s));
  const std::vector<std::byte> message(64, std::byte{0x5A});
  Window window;
  // Warm-up: every buffer on the path reaches its steady size. The longest to fill is the log's entry cache (16 MiB
  // at 160 bytes an entry of 64: about 105,000 entries), whose payload blocks the pool then recycles; then twice the
  // window for a while, and the measured part keeps fewer in flight, so most of its batches, apply turns and queues
  // fit buffers the warm-up already grew.
  ASSERT_TRUE(pump(client, counter, window, 300'000, 256, message));
  ASSERT_TRUE(pump(client, counter, window, 100'000, 512, message));
  constexpr std::uint64_t kMeasuredInFlight = 128;
  if (const char* traces = std::getenv("COHORT_ALLOC_BACKTRACES")) g_backtraces_left.store(std::atoi(traces));
  g_trace_client.store(std::getenv("COHORT_ALLOC_CLIENT") != nullptr);

  // Measured in windows of 100,000 messages, until one has no allocation at all on the nodes' threads and one none
  // on the client's. An allocation per message, per batch or per loop turn shows in every window, so none would be
  // quiet. What a window may also meet is a buffer growing to a new high-water mark: a stall of this shared machine
  // (a follower's storage thread descheduled, say) leaves more entries in flight on one node than ever before, and
  // its pools and rings grow once for them (a few allocations, or about a hundred payload blocks for the cache).
  // Or a connection's receive buffer, shrunk after a quiet spell of small reads, grows again for a large one. Such
  // growth is rare, a cost per stall or burst rather than per message, so some window is quiet. On a busy machine
  // (a fresh-clone CI run under fsync) the nodes' best window of 10 still held 1 allocation, with 1-3 in most: one of
  // the 65 storage batches or a small vector reaching a new mark. So the nodes' best window may hold a few, at most
  // kStrayAllocations, which is still at most one allocation per 25,000 messages; the client's must hold none.
  constexpr int kMaxWindows = 10;
  constexpr std::uint64_t kStrayAllocations = 4;
  constexpr std::uint64_t kWindowMessages = 100'000;
  std::uint64_t fewest_nodes = ~std::uint64_t{0};  // in the nodes' best window so far
  bool quiet_client = false;
  int windows = 0;
  std::uint64_t nodes_total = 0;
  std::string per_window;
  for (; windows < kMaxWindows && !(fewest_nodes == 0 && quiet_client); ++windows) {
    for (auto& count : g_counts) count.store(0);
    const auto started = std::chrono::steady_clock::now();
    g_counting.store(true);
    const bool done = pump(client, counter, window, kWindowMessages, kMeasuredInFlight, message);
    g_counting.store(false);
    ASSERT_TRUE(done) << "the cluster stalled or refused a message";
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    std::uint64_t nodes = g_counts[kOtherThreads].load();
    for (int i = 0; i < kNodes; ++i) nodes += g_counts[static_cast<std::size_t>(i)].load();
    const std::uint64_t client_count = g_counts[kClientThread].load();
    fewest_nodes = std::min(fewest_nodes, nodes);
    quiet_client = quiet_client || client_count == 0;
    nodes_total += nodes;
    per_window += fmt::format("{}{} on the nodes' threads, {} on the client's ({} ms)", windows == 0 ? "" : "; ", nodes,
                              client_count, elapsed);
  }
  std::printf("[ allocations ] sync %s: windows of %llu messages: %s\n", name,
              static_cast<unsigned long long>(kWindowMessages), per_window.c_str());
  EXPECT_LE(fewest_nodes, kStrayAllocations) << "the nodes allocate on the per-message path";
  EXPECT_TRUE(quiet_client) << "the invoker-mode client allocates on the per-message path";
  // And the growth stays small: one allocation per 100 messages anywhere would be a cost per message or batch on
  // some path taken only now and then.
  EXPECT_LT(nodes_total, static_cast<std::uint64_t>(windows) * kWindowMessages / 100)
      << "the nodes allocate on some path per message or batch";
  client.close(1s);
}

TEST(NodeAllocations, NoneWhileThreeNodesCommitMessagesWithoutFsync) { measure(cohort::SyncPolicy::none, "none"); }
TEST(NodeAllocations, NoneWhileThreeNodesCommitMessagesWithFsync) { measure(cohort::SyncPolicy::fsync, "fsync"); }

}  // namespace
