// Storage benchmark: what the durable log sustains on this machine's disk, next to what the disk itself
// does, so the group commit's effect is visible in one run.
//
//  1. The disk's floor: append 64 bytes, fdatasync, repeat (one writer, nothing batched). Its rate is the most
//     records per second a log that syncs every record could reach.
//  2. The log: the event-loop side (SegmentedLog) appends entries as fast as its window allows and hands
//     batches to the real storage thread (StorageThread + LogWriter), which groups whatever is queued into one
//     gather write and one fdatasync. For each sync policy and record size it prints records/s, MB/s,
//     records per fdatasync, and append-to-completion latency.
//
// Run it with `./run bench storage` (or build/release/bench/storage_bench); --dir picks the file system.

#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "common/wakeup.h"
#include "storage/posix_file.h"
#include "storage/recovery.h"
#include "storage/segmented_log.h"
#include "storage/storage_thread.h"

namespace {

using namespace cohort;
using Clock = std::chrono::steady_clock;

struct Settings {
  std::string dir;
  double seconds = 2.0;
  std::size_t window = 65'536;  // records appended but not yet complete, at most (saturated runs)
  std::size_t turn = 64;        // records appended per loop turn (saturated runs)
};

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double percentile(std::vector<double>& samples, double p) {
  if (samples.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(samples.size() - 1));
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(k), samples.end());
  return samples[k];
}

[[noreturn]] void die(const std::string& message) {
  fmt::print(stderr, "storage_bench: {}\n", message);
  std::exit(1);
}

std::string fresh_dir(const std::string& parent, const std::string& name) {
  const std::string path = parent + "/" + name;
  std::filesystem::remove_all(path);
  return path;
}

// ---- 1. the disk's floor

struct Floor {
  double rate = 0;
  double p50 = 0;
  double p99 = 0;
};

Floor measure_fdatasync(const Settings& settings) {
  auto dir = storage::PosixDirectory::open_locked(fresh_dir(settings.dir, "fdatasync"));
  if (!dir) die(dir.error().message);
  auto file = (*dir)->open("probe", storage::OpenMode::create_new);
  if (!file) die(file.error().message);
  std::vector<std::byte> record(64, std::byte{0x5A});
  const ByteSpan parts[] = {record};
  std::vector<double> latencies;
  std::uint64_t offset = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(settings.seconds);
  while (Clock::now() < end) {
    const auto before = Clock::now();
    if (auto status = (*file)->write_at(offset, parts); !status) die(status.error().message);
    if (auto status = (*file)->sync(); !status) die(status.error().message);
    latencies.push_back(micros(Clock::now() - before));
    offset += record.size();
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  Floor floor;
  floor.rate = static_cast<double>(latencies.size()) / elapsed;
  floor.p50 = percentile(latencies, 0.50);
  floor.p99 = percentile(latencies, 0.99);
  return floor;
}

// ---- 2. the log

struct Result {
  double records_per_second = 0;
  double payload_mb_per_second = 0;
  double disk_mb_per_second = 0;
  double records_per_sync = 0;
  double p50 = 0;
  double p99 = 0;
  std::uint64_t records = 0;
};

Result measure_log(const Settings& settings, storage::SyncPolicy policy, std::size_t payload, std::size_t window,
                   std::size_t turn_size) {
  const std::string path =
      fresh_dir(settings.dir,
                fmt::format("log-{}-{}-{}", policy == storage::SyncPolicy::fsync ? "fsync" : "none", payload, window));
  auto dir = storage::PosixDirectory::open_locked(path);
  if (!dir) die(dir.error().message);
  const storage::Identity identity{1, NodeId{1}};
  const storage::LogOptions options;
  auto recovered = storage::recover(**dir, identity, options);
  if (!recovered) die(recovered.error());
  storage::SegmentedLog log(**dir, identity, options, std::move(*recovered), std::random_device{}());
  storage::LogWriter writer(**dir, identity, policy, log.segment_keys(), log.last_index());
  (void)log.save_hard_state(consensus::HardState{Term{1}, NodeId{1}});

  Wakeup wakes;
  storage::StorageThread thread(writer, [&] { wakes.ring(); });

  std::vector<consensus::Entry> turn(turn_size);
  for (auto& entry : turn) {
    entry.term = Term{1};
    entry.payload = Payload(std::vector<std::byte>(payload, std::byte{0x42}));
  }
  struct Pending {
    LogIndex last;
    Clock::time_point at;
  };
  std::deque<Pending> pending;
  std::vector<double> latencies;
  LogIndex completed;
  const std::uint64_t syncs_before = writer.syncs();
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(settings.seconds);
  bool appending = true;
  while (appending || thread.in_flight() != 0 || log.last_index() > completed) {
    const std::uint32_t seen = wakes.value();
    bool progress = false;
    const auto now = Clock::now();
    if (appending && now >= end) {
      appending = false;
      progress = true;  // the loop's condition changed: check it again before sleeping
    }
    if (appending && log.last_index().value() - completed.value() + turn_size <= window) {
      const std::uint64_t next = log.last_index().value() + 1;
      for (std::size_t i = 0; i < turn.size(); ++i) {
        consensus::Entry& entry = turn[i];
        entry.index = LogIndex{next + i};
        entry.checksum = consensus::compute_checksum(entry.index, entry.term, entry.type, entry.payload);
      }
      (void)log.append(turn);
      pending.push_back(Pending{log.last_index(), now});
      progress = true;
    }
    if (thread.has_room()) {
      if (auto batch = log.take_batch()) {
        thread.submit(std::move(batch));
        progress = true;
      }
    }
    while (auto done = thread.poll()) {
      const auto completion = log.complete(std::move(done->batch), done->result);
      if (!completion) die(log.failure()->message);
      completed = completion->last_index;
      const auto at = Clock::now();
      while (!pending.empty() && pending.front().last <= completed) {
        latencies.push_back(micros(at - pending.front().at));
        pending.pop_front();
      }
      progress = true;
    }
    if (!progress) wakes.wait(seen);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  Result result;
  result.records = completed.value();
  result.records_per_second = static_cast<double>(result.records) / elapsed;
  result.payload_mb_per_second = result.records_per_second * static_cast<double>(payload) / 1e6;
  result.disk_mb_per_second = result.records_per_second * static_cast<double>(storage::record_size(payload)) / 1e6;
  const std::uint64_t syncs = writer.syncs() - syncs_before;
  result.records_per_sync = syncs == 0 ? 0 : static_cast<double>(result.records) / static_cast<double>(syncs);
  result.p50 = percentile(latencies, 0.50);
  result.p99 = percentile(latencies, 0.99);
  return result;
}

std::string filesystem_of(const std::string& path) {
  struct statfs info {};
  if (::statfs(path.c_str(), &info) != 0) return "unknown";
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs (fdatasync costs nothing here: use --dir on a real disk)";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794C7630: return "overlayfs";
    default: return fmt::format("type {:#x}", static_cast<unsigned long>(info.f_type));
  }
}

int run(int argc, char** argv) {
  CLI::App app{"storage_bench: the durable log's append throughput against the disk's fdatasync floor"};
  Settings settings;
  bool quick = false;
  app.add_option("--dir", settings.dir, "where to write (a fresh directory under /var/tmp by default)");
  app.add_option("--seconds", settings.seconds, "length of each measurement")->check(CLI::PositiveNumber);
  app.add_option("--window", settings.window, "records appended but not yet complete, at most")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24U));
  app.add_flag("--quick", quick, "a tenth of a second per measurement, for smoke tests");
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each figure shows as soon as it is measured, even in a pipe
  if (quick) settings.seconds = 0.1;
  bool owned = false;
  if (settings.dir.empty()) {
    std::string pattern = "/var/tmp/cohort-storage-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) die("cannot create a directory under /var/tmp");
    settings.dir = pattern;
    owned = true;
  }
  std::filesystem::create_directories(settings.dir);

  fmt::print("storage benchmark in {} ({}); {:.1f} s per measurement, window {} records, {} per turn\n", settings.dir,
             filesystem_of(settings.dir), settings.seconds, settings.window, settings.turn);
  const Floor floor = measure_fdatasync(settings);
  fmt::print("disk floor: 64-byte write + fdatasync: {:.0f} syncs/s, latency p50 {:.0f} us p99 {:.0f} us\n", floor.rate,
             floor.p50, floor.p99);
  fmt::print("{:<8} {:>7} {:<14} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10}\n", "policy", "record", "load", "records/s",
             "MB/s", "disk MB/s", "recs/fsync", "p50 us", "p99 us");
  std::string json =
      fmt::format(R"({{"fdatasync_per_s":{:.0f},"fdatasync_p50_us":{:.0f},"runs":[)", floor.rate, floor.p50);
  bool first = true;
  const auto report = [&](const char* label, storage::SyncPolicy policy, std::size_t payload, std::size_t window,
                          std::size_t turn) {
    const Result r = measure_log(settings, policy, payload, window, turn);
    const char* name = policy == storage::SyncPolicy::fsync ? "fsync" : "none";
    // Under policy none the only syncs are the metadata's and new segments': records per sync means nothing.
    const std::string per_sync =
        policy == storage::SyncPolicy::fsync ? fmt::format("{:.1f}", r.records_per_sync) : std::string("-");
    fmt::print("{:<8} {:>6}B {:<14} {:>12.0f} {:>10.1f} {:>10.1f} {:>12} {:>10.0f} {:>10.0f}\n", name, payload, label,
               r.records_per_second, r.payload_mb_per_second, r.disk_mb_per_second, per_sync, r.p50, r.p99);
    json += fmt::format(R"({}{{"policy":"{}","payload":{},"load":"{}","records_per_s":{:.0f},"mb_per_s":{:.1f},)"
                        R"("records_per_fsync":{:.1f},"p50_us":{:.0f},"p99_us":{:.0f}}})",
                        first ? "" : ",", name, payload, label, r.records_per_second, r.payload_mb_per_second,
                        r.records_per_sync, r.p50, r.p99);
    first = false;
  };
  for (const auto policy : {storage::SyncPolicy::fsync, storage::SyncPolicy::none})
    for (const std::size_t payload : {std::size_t{64}, std::size_t{1024}})
      report("saturated", policy, payload, settings.window, settings.turn);
  // One record at a time: the latency of one append through the storage thread, against the floor's.
  for (const auto policy : {storage::SyncPolicy::fsync, storage::SyncPolicy::none})
    report("one at a time", policy, 64, 1, 1);
  fmt::print(
      "group commit: with policy fsync each fdatasync covers many records; syncing every record would "
      "cap the log at {:.0f} records/s\n",
      floor.rate);
  fmt::print("{}]}}\n", json);
  if (owned) std::filesystem::remove_all(settings.dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    fmt::print(stderr, "storage_bench: fatal: {}\n", error.what());
    return 1;
  }
}
