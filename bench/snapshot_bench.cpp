// Snapshot benchmark: what a snapshot of a large replicated state costs the node, and where.
//
//  1. The state: a service host running the KV service, fed committed entries directly (no network, no log): a
//     number of open sessions, each with egress in its window, and puts until the KV state holds --state-mib.
//  2. The pause: ServiceHost::write_snapshot, which the node runs on its event loop (heartbeats and keep-alives
//     wait behind it). The target for 100 MiB is under 100 ms.
//  3. What happens off the loop, for reference: writing the snapshot file (pieces, fsync, rename, directory fsync)
//     and, at a restart, loading it (read, verify) and restoring it into a fresh host.
//
// Run it with `./run bench snapshot` (or build/release/bench/snapshot_bench); --dir picks the file system.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cohort/services/kv_codec.h"
#include "cohort/services/kv_service.h"
#include "host/entry_codec.h"
#include "host/service_host.h"
#include "storage/posix_file.h"
#include "storage/snapshot_file.h"

namespace {

using namespace cohort;
using Clock = std::chrono::steady_clock;

double millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

[[noreturn]] void die(const std::string& message) {
  fmt::print(stderr, "snapshot_bench: {}\n", message);
  std::exit(1);
}

// Applies entries to a host, as a replica applies committed ones: index by index, one term, a fixed stamp.
class Feeder {
 public:
  explicit Feeder(host::ServiceHost& host) : host_(host) {}

  void bootstrap() {
    constexpr std::uint32_t kMembers[] = {1, 2, 3};
    host::encode_bootstrap(scratch_, stamp_, host::Id128{1, 2}, kMembers);
    apply();
  }
  SessionId open(std::uint64_t client) {
    host::encode_session_open(scratch_, stamp_, host::Id128{client, client});
    apply();
    return index_;
  }
  void put(SessionId session, std::uint64_t seq, const std::string& key, const std::string& value) {
    services::KvRequest request;
    request.op = services::KvOp::put;
    request.request_id = seq;
    request.key = key;
    request.value = value;
    auto bytes = services::encode_kv_request(request);
    if (!bytes) die("cannot encode a put: " + bytes.error());
    host::encode_ingress(scratch_, stamp_, session, seq, *bytes);
    apply();
  }

 private:
  void apply() {
    consensus::Entry entry;
    entry.index = LogIndex{++index_};
    entry.term = Term{1};
    entry.type = consensus::EntryType::command;
    entry.payload = scratch_;
    entry.checksum = consensus::compute_checksum(entry.index, entry.term, entry.type, entry.payload);
    host_.apply(entry);
    host_.outputs().clear();
  }

  host::ServiceHost& host_;
  ClusterTime stamp_{std::chrono::seconds(1'750'000'000)};
  std::uint64_t index_ = 0;
  std::vector<std::byte> scratch_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"snapshot_bench: the event-loop pause and the disk time of a snapshot of a large state"};
  std::size_t state_mib = 100;
  std::size_t sessions = 10'000;
  std::size_t egress_per_session = 4;
  std::size_t value_size = 1024;
  std::string dir;
  bool quick = false;
  app.add_option("--state-mib", state_mib, "KV state to build, in MiB of values")->check(CLI::Range(1, 4096));
  app.add_option("--sessions", sessions, "open sessions, each with egress in its window")->check(CLI::Range(1, 100000));
  app.add_option("--egress", egress_per_session, "egress messages per session")->check(CLI::Range(0, 128));
  app.add_option("--value-size", value_size, "bytes per value")->check(CLI::Range(16, 1 << 20));
  app.add_option("--dir", dir, "directory for the snapshot file (default: a fresh one under /var/tmp)");
  app.add_flag("--quick", quick, "a small state (4 MiB, 100 sessions): checks that it runs");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    state_mib = 4;
    sessions = 100;
  }

  services::KvService kv;
  host::ServiceHost host(kv, host::HostLimits{});
  host.start();
  Feeder feed(host);
  feed.bootstrap();
  std::vector<SessionId> ids;
  for (std::size_t s = 0; s < sessions; ++s) ids.push_back(feed.open(1000 + s));
  // Each put is answered with egress, so every session's window holds its last replies.
  std::uint64_t seq = 0;
  for (std::size_t e = 0; e < egress_per_session; ++e)
    for (const SessionId id : ids) feed.put(id, e + 1, fmt::format("s{}-{}", id, e), "small");
  seq = egress_per_session;
  const std::string value(value_size, 'v');
  const std::size_t puts = (state_mib << 20U) / value_size;
  for (std::size_t i = 0; i < puts; ++i) feed.put(ids[0], ++seq, fmt::format("key-{:012}", i), value);

  // The pause, as the node takes it: its first snapshot serializes into a fresh buffer (growing it, and faulting
  // its pages in); every later one into the buffer the one before left, cleared (its capacity kept).
  std::vector<std::byte> body;
  auto start = Clock::now();
  host.write_snapshot(body);
  const double first_pause = millis(Clock::now() - start);
  std::vector<double> pauses;
  for (int run = 0; run < 5; ++run) {
    body.clear();
    start = Clock::now();
    host.write_snapshot(body);
    pauses.push_back(millis(Clock::now() - start));
  }
  std::sort(pauses.begin(), pauses.end());
  const double pause_median = pauses[pauses.size() / 2];

  if (dir.empty()) {
    char pattern[] = "/var/tmp/cohort-snapshot-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) die("cannot create a directory under /var/tmp");
    dir = pattern;
  }
  auto directory = storage::PosixDirectory::open_locked(dir);
  if (!directory) die(directory.error().message);
  const auto write_start = Clock::now();
  auto meta = storage::write_snapshot(**directory, 42, host.applied_index(), host.applied_term(), body);
  const double write_ms = millis(Clock::now() - write_start);
  if (!meta) die(meta.error().message);

  const auto load_start = Clock::now();
  auto loaded = storage::load_latest_snapshot(**directory, 42);
  const double load_ms = millis(Clock::now() - load_start);
  if (!loaded || !loaded->snapshot) die("the snapshot just written does not load back");
  services::KvService restored_kv;
  host::ServiceHost restored(restored_kv, host::HostLimits{});
  const auto restore_start = Clock::now();
  if (auto status = restored.restore(loaded->snapshot->body); !status) die(status.error());
  const double restore_ms = millis(Clock::now() - restore_start);
  if (restored.state_hash() != host.state_hash()) die("the restored state differs from the original");
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);

  const double mib = static_cast<double>(body.size()) / (1 << 20);
  fmt::print("state: {} sessions with {} egress each, {} puts of {} B: snapshot {:.1f} MiB\n", sessions,
             egress_per_session, puts, value_size, mib);
  fmt::print(
      "event-loop pause (write_snapshot): first {:.1f} ms (fresh buffer); then median {:.1f} ms, min {:.1f} ms, "
      "max {:.1f} ms ({:.0f} MiB/s)\n",
      first_pause, pause_median, pauses.front(), pauses.back(), mib / (pause_median / 1000));
  fmt::print("off the loop: write the file {:.1f} ms; at a restart: load and verify {:.1f} ms, restore {:.1f} ms\n",
             write_ms, load_ms, restore_ms);
  fmt::print(R"({{"snapshot_mib": {:.1f}, "sessions": {}, "pause_ms_first": {:.2f}, "pause_ms_median": {:.2f}, )"
             R"("pause_ms_max": {:.2f}, )"
             R"("write_ms": {:.1f}, "load_ms": {:.1f}, "restore_ms": {:.1f}}})"
             "\n",
             mib, sessions, first_pause, pause_median, pauses.back(), write_ms, load_ms, restore_ms);
  return 0;
}
