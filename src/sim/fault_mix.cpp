#include "sim/fault_mix.h"

#include <algorithm>
#include <iterator>

#include <fmt/format.h>

namespace cohort::sim {

using namespace std::chrono_literals;

namespace {

FaultMix draw_mix(Random& random, bool& calm) {
  FaultMix mix;
  const std::uint64_t size = random.below(10);
  mix.nodes = size == 0 ? 1 : size < 5 ? 3 : 5;
  // About one seed in eight runs without any fault: the happy path must hold too.
  calm = random.chance(1, 8);
  static constexpr std::uint32_t kDrop[] = {0, 0, 10, 50, 200};
  static constexpr std::uint32_t kDuplicate[] = {0, 0, 10, 50};
  static constexpr std::uint32_t kLong[] = {0, 0, 5, 30};
  mix.drop_per_mille = kDrop[random.below(std::size(kDrop))];
  mix.duplicate_per_mille = kDuplicate[random.below(std::size(kDuplicate))];
  mix.long_delay_per_mille = kLong[random.below(std::size(kLong))];
  mix.delay_max = micros(random.between(1'000, 20'000));
  mix.partition_every = random.chance(1, 3) ? 0s : micros(random.between(500'000, 8'000'000));
  mix.crash_every = random.chance(1, 3) ? 0s : micros(random.between(500'000, 8'000'000));
  mix.crash_after_role_change_per_mille =
      mix.crash_every == 0s ? 0 : static_cast<std::uint32_t>(random.chance(1, 2) ? 0 : random.between(10, 200));
  mix.fsync_failure_per_100k = random.chance(3, 4) ? 0 : static_cast<std::uint32_t>(random.between(1, 100));
  mix.slow_storage_per_mille = random.chance(1, 2) ? 0 : static_cast<std::uint32_t>(random.between(1, 100));
  mix.client_every = micros(random.between(1'000, 100'000));
  mix.transfer_every = random.chance(1, 2) ? 0s : micros(random.between(1'000'000, 10'000'000));
  // Small batches and pipelines split a new leader's backlog over many requests, so followers acknowledge old
  // entries before its no-op: the window that Figure 8's rule exists for.
  static constexpr std::size_t kBatch[] = {1, 2, 4, 64, 1024};
  static constexpr std::size_t kInflight[] = {1, 2, 8};
  mix.max_append_entries = kBatch[random.below(std::size(kBatch))];
  mix.max_inflight_appends = kInflight[random.below(std::size(kInflight))];
  mix.crash_after_commit_per_mille =
      mix.crash_every == 0s ? 0 : static_cast<std::uint32_t>(random.chance(1, 2) ? 0 : random.between(5, 100));
  // A tiny pipeline moves a few entries per round trip: keep clients slower than that, or the backlog of the
  // safety phase alone would outlast the liveness limit.
  if (mix.max_append_entries * mix.max_inflight_appends < 16)
    mix.client_every = std::max<Duration>(mix.client_every, 100ms);
  if (calm) {
    mix.drop_per_mille = mix.duplicate_per_mille = mix.long_delay_per_mille = 0;
    mix.partition_every = mix.crash_every = mix.transfer_every = 0s;
    mix.fsync_failure_per_100k = mix.slow_storage_per_mille = mix.crash_after_role_change_per_mille = 0;
    mix.crash_after_commit_per_mille = 0;
  }
  return mix;
}

// Storage draws come from a generator of their own, so that seeds running on the in-memory store keep the
// schedules they had before real storage joined the simulator.
void draw_storage(FaultMix& mix, std::uint64_t seed) {
  Random random(seed ^ 0x53544F52414745ULL);
  mix.real_storage = random.chance(1, 2);
  if (!mix.real_storage) return;
  mix.sync_none = random.chance(1, 4);
  mix.segment_size = random.chance(1, 2) ? random.between(256, 4096) : random.between(4096, 64U << 10U);
  mix.cache_bytes = static_cast<std::size_t>(random.chance(1, 2) ? random.between(0, 4096) : 1U << 20U);
  if (mix.crash_every != 0s && random.chance(1, 2))
    mix.crash_in_storage_per_mille = static_cast<std::uint32_t>(random.between(5, 50));
}

// Faults of state loss and forged messages, from a generator of their own for the same reason.
void draw_loss(FaultMix& mix, std::uint64_t seed) {
  Random random(seed ^ 0x4C4F53534C4F5353ULL);
  if (mix.crash_every != 0s && mix.nodes > 1 && random.chance(1, 3))
    mix.state_loss_per_mille = static_cast<std::uint32_t>(random.between(100, 600));
  if (random.chance(1, 8)) mix.forged_term_per_mille = static_cast<std::uint32_t>(random.between(1, 20));
}

// Snapshots, from a generator of their own for the same reason: on about half the seeds, often enough that most
// restarts restore one.
void draw_snapshots(FaultMix& mix, std::uint64_t seed) {
  Random random(seed ^ 0x534E415053484F54ULL);
  if (!random.chance(1, 2)) return;
  mix.snapshot_every = random.between(8, 256);
  if (mix.crash_every != 0s && random.chance(1, 2))
    mix.crash_in_snapshot_per_mille = static_cast<std::uint32_t>(random.between(20, 200));
  // Not below 256 bytes: a snapshot of 20 KiB in 64-byte chunks is hundreds of round trips, each reordering of which
  // the leader resends only after rounds without progress (three heartbeats): ten times the ratio of a 64 MiB
  // snapshot in 1 MiB chunks, and slower than the liveness phase allows.
  static constexpr std::size_t kChunk[] = {256, 1024, 4096, std::size_t{1} << 20U};
  static constexpr std::size_t kChunks[] = {1, 2, 4};
  mix.snapshot_chunk_bytes = kChunk[random.below(std::size(kChunk))];
  mix.max_inflight_snapshot_chunks = kChunks[random.below(std::size(kChunks))];
}

// The applications' closes and deadlines, power losses and blackouts, from a generator of their own for the same
// reason. A power loss of every node needs sync policy none (under fsync it loses nothing) and no snapshots: a
// snapshot one node made durable beyond the log a majority kept is outside what this simulator checks.
void draw_closes(FaultMix& mix, std::uint64_t seed, bool calm) {
  Random random(seed ^ 0x434C4F534553ULL);
  const bool closes = !calm && random.chance(1, 2);
  const auto give_up = static_cast<std::uint32_t>(random.chance(1, 2) ? random.between(100, 600) : 0);
  const auto connect = static_cast<std::uint32_t>(random.chance(1, 3) ? random.between(100, 500) : 0);
  const Duration close = random.chance(1, 3) ? 0s : micros(random.between(2'000'000, 12'000'000));
  const Duration power = micros(random.between(4'000'000, 15'000'000));
  const bool power_loss = !calm && random.chance(1, 2);
  const bool blackout = !calm && random.chance(1, 64);
  const Duration blackout_length = micros(random.between(180'000'000, 300'000'000));
  if (closes) {
    mix.client_give_up_per_mille = give_up;
    mix.client_connect_timeout_per_mille = connect;
    mix.client_close_every = close;
  }
  if (power_loss && mix.real_storage && mix.sync_none && mix.snapshot_every == 0) mix.power_loss_every = power;
  if (blackout) mix.blackout = blackout_length;
}

// Bounded send buffers towards the clients, from a generator of their own for the same reason: on a third of the
// seeds, small enough that a stall or a slow client fills them.
void draw_send_buffer(FaultMix& mix, std::uint64_t seed) {
  Random random(seed ^ 0x53454E4442554646ULL);
  if (random.chance(1, 3)) mix.client_send_buffer = static_cast<std::size_t>(random.between(512, 8U << 10U));
}

// The clients' faults, from a generator of their own for the same reason. Most seeds have some; a calm seed has
// none. The session timeout is short, so that the sessions of clients cut off or restarted expire within a run.
void draw_clients(FaultMix& mix, std::uint64_t seed, bool calm) {
  Random random(seed ^ 0x434C49454E5453ULL);
  mix.session_timeout = micros(random.between(4'000'000, 8'000'000));
  const bool faults = !calm && random.chance(3, 4);
  static constexpr std::uint32_t kSlow[] = {0, 0, 5, 20};
  const std::uint32_t slow = kSlow[random.below(std::size(kSlow))];
  const Duration cutoff = random.chance(1, 3) ? 0s : micros(random.between(3'000'000, 15'000'000));
  const Duration restart = random.chance(1, 3) ? 0s : micros(random.between(3'000'000, 15'000'000));
  const Duration reset = random.chance(1, 3) ? 0s : micros(random.between(500'000, 5'000'000));
  const Duration stall = random.chance(1, 3) ? 0s : micros(random.between(500'000, 5'000'000));
  const Duration outage = random.chance(1, 12) ? micros(random.between(10'000'000, 30'000'000)) : 0s;
  if (!faults) return;
  mix.client_long_delay_per_mille = slow;
  mix.client_cutoff_every = cutoff;
  mix.client_restart_every = restart;
  mix.connection_reset_every = reset;
  mix.connection_stall_every = stall;
  mix.outage_every = outage;
}

}  // namespace

std::string FaultMix::describe() const {
  return fmt::format(
      "nodes={} drop={}/1000 dup={}/1000 long-delay={}/1000 delay<={}ms partition-every={}ms crash-every={}ms "
      "crash-on-role-change={}/1000 fsync-fail={}/100k slow-storage={}/1000 client-every={}ms transfer-every={}ms "
      "crash-on-leader-commit={}/1000 batch={} inflight={} state-loss={}/1000 forged-term={}/1000 storage={} "
      "clients={} session-timeout={}ms cutoff-every={}ms client-restart-every={}ms reset-every={}ms stall-every={}ms "
      "client-slow={}/1000 outage-every={}ms snapshot-every={} crash-in-snapshot={}/1000 snapshot-chunks={}Bx{} "
      "send-buffer={}B give-up={}/1000 connect-deadline={}/1000 close-every={}ms power-loss-every={}ms "
      "blackout={}s",
      nodes, drop_per_mille, duplicate_per_mille, long_delay_per_mille, as_micros(delay_max) / 1000,
      as_micros(partition_every) / 1000, as_micros(crash_every) / 1000, crash_after_role_change_per_mille,
      fsync_failure_per_100k, slow_storage_per_mille, as_micros(client_every) / 1000, as_micros(transfer_every) / 1000,
      crash_after_commit_per_mille, max_append_entries, max_inflight_appends, state_loss_per_mille,
      forged_term_per_mille,
      !real_storage ? std::string("memory")
                    : fmt::format("segments(sync={} segment={}B cache={}B crash-in-write={}/1000)",
                                  sync_none ? "none" : "fsync", segment_size, cache_bytes, crash_in_storage_per_mille),
      clients, as_micros(session_timeout) / 1000, as_micros(client_cutoff_every) / 1000,
      as_micros(client_restart_every) / 1000, as_micros(connection_reset_every) / 1000,
      as_micros(connection_stall_every) / 1000, client_long_delay_per_mille, as_micros(outage_every) / 1000,
      snapshot_every, crash_in_snapshot_per_mille, snapshot_chunk_bytes, max_inflight_snapshot_chunks,
      client_send_buffer, client_give_up_per_mille, client_connect_timeout_per_mille,
      as_micros(client_close_every) / 1000, as_micros(power_loss_every) / 1000, as_micros(blackout) / 1'000'000);
}

std::optional<FaultMix> hunt_mix(std::string_view name) {
  FaultMix mix;
  mix.delay_max = 5ms;
  mix.crash_every = 1s;
  mix.client_every = 30ms;
  if (name == "figure8") {
    mix.nodes = 5;
    mix.partition_every = 2s;
    mix.crash_after_role_change_per_mille = 300;
    mix.crash_after_commit_per_mille = 200;
    mix.max_append_entries = 1;
    mix.max_inflight_appends = 1;
    return mix;
  }
  if (name == "storage") {
    mix.nodes = 3;
    mix.real_storage = true;
    mix.segment_size = 1024;
    mix.cache_bytes = 0;
    mix.crash_in_storage_per_mille = 100;
    mix.client_every = 10ms;
    return mix;
  }
  if (name == "loss") {
    mix.nodes = 3;
    mix.crash_every = 500ms;
    mix.state_loss_per_mille = 700;
    mix.crash_after_role_change_per_mille = 100;
    // Stale leaders and elections still under way when a node comes back without its memory of them.
    mix.partition_every = 2s;
    mix.transfer_every = 1s;
    mix.long_delay_per_mille = 30;
    mix.real_storage = true;  // damaged records and lost page caches need the real log on its byte-level files
    mix.sync_none = true;
    mix.segment_size = 4096;
    mix.cache_bytes = 4096;
    return mix;
  }
  if (name == "vote") {
    mix.nodes = 3;
    mix.crash_after_role_change_per_mille = 500;
    mix.slow_storage_per_mille = 300;
    return mix;
  }
  if (name == "clients") {
    mix.nodes = 3;
    mix.crash_every = 3s;
    mix.partition_every = 3s;
    mix.transfer_every = 3s;
    mix.client_every = 20ms;
    mix.session_timeout = 4s;
    mix.client_cutoff_every = 4s;
    mix.client_restart_every = 5s;
    mix.connection_reset_every = 1s;
    mix.connection_stall_every = 1s;
    mix.client_long_delay_per_mille = 20;
    mix.client_send_buffer = 1024;  // bursts (a resume's resend) overflow it
    return mix;
  }
  if (name == "snapshot") {
    // Snapshots every 8 entries and a log compacted behind them, on real storage with small segments (so that
    // compaction removes some): followers cut off, crashed or wiped come back behind the leader's log and install
    // its snapshot; crashes cut installs and compactions short; damage loses snapshots, so that starts repair.
    mix.nodes = 3;
    mix.crash_every = 700ms;
    mix.partition_every = 2s;
    mix.drop_per_mille = 20;
    mix.long_delay_per_mille = 10;
    mix.state_loss_per_mille = 300;
    mix.crash_after_role_change_per_mille = 50;
    mix.real_storage = true;
    mix.segment_size = 512;
    mix.cache_bytes = 4096;
    mix.crash_in_storage_per_mille = 20;
    mix.snapshot_every = 8;
    mix.crash_in_snapshot_per_mille = 100;
    mix.snapshot_chunk_bytes = 256;
    mix.max_inflight_snapshot_chunks = 2;
    mix.max_append_entries = 4;
    mix.client_every = 10ms;
    return mix;
  }
  if (name == "outage") {
    // Nothing but outages: the clients stay up and connected whenever a node serves.
    mix.nodes = 3;
    mix.crash_every = 0s;
    mix.client_every = 20ms;
    mix.session_timeout = 4s;
    mix.outage_every = 6s;
    return mix;
  }
  if (name == "closes") {
    mix.nodes = 3;
    mix.crash_every = 2s;
    mix.partition_every = 4s;
    mix.outage_every = 15s;
    mix.client_every = 20ms;
    mix.session_timeout = 4s;
    mix.connection_reset_every = 2s;
    mix.client_give_up_per_mille = 500;
    mix.client_connect_timeout_per_mille = 300;
    mix.client_close_every = 2s;
    return mix;
  }
  if (name == "power") {
    mix.nodes = 3;
    mix.crash_every = 3s;
    mix.client_every = 10ms;
    mix.real_storage = true;
    mix.sync_none = true;
    mix.segment_size = 2048;  // a few hundred entries to a segment: a power loss takes the unsynced last one
    mix.cache_bytes = 4096;
    mix.power_loss_every = 3s;
    return mix;
  }
  if (name == "blackout") {
    mix.nodes = 3;
    mix.crash_every = 0s;
    mix.client_every = 20ms;
    mix.session_timeout = 5s;
    mix.blackout = 240s;
    mix.client_give_up_per_mille = 300;  // those give up during it; a new client replaces each
    return mix;
  }
  return std::nullopt;
}

FaultMix draw_fault_mix(Random& random, std::uint64_t seed) {
  bool calm = false;
  FaultMix mix = draw_mix(random, calm);
  draw_storage(mix, seed);
  draw_loss(mix, seed);
  draw_clients(mix, seed, calm);
  draw_snapshots(mix, seed);
  draw_send_buffer(mix, seed);
  draw_closes(mix, seed, calm);
  return mix;
}

FaultMix fault_mix_for_seed(std::uint64_t seed) {
  Random random(seed);
  return draw_fault_mix(random, seed);
}

}  // namespace cohort::sim
