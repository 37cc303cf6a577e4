#pragma once
// The storage model: each node's disk, which survives the node's crashes, and the model of that disk (every
// write the node's core made, and which of them are durable) that recovery is checked against. The fault mix
// picks one of two disks for a run:
//  - the record-level in-memory store (consensus::MemoryLogStore), the model itself: a sync event makes writes
//    durable; a crash keeps the durable state and a prefix of the pending writes, the next one sometimes torn;
//  - the real segmented log (src/storage) on the byte-level in-memory file layer, with the model beside it: the
//    storage thread's group commit is two events, its write and its sync, so that a crash can fall between
//    them. A crash is a machine crash (unsynced bytes lost, torn or reordered) or a process crash (everything
//    written survives); recovery runs at once and must find the durable log plus a prefix of the writes since.
// Either way the core sees its log through CheckedLog, which shows every write to the checker first.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/random.h"
#include "consensus/memory_log.h"
#include "consensus/raft.h"
#include "sim/checker.h"
#include "sim/event_queue.h"
#include "sim/fault_mix.h"
#include "sim/simulator.h"
#include "sim/trace.h"
#include "storage/batch.h"
#include "storage/format.h"
#include "storage/log_writer.h"
#include "storage/memory_file.h"
#include "storage/segmented_log.h"

namespace cohort::sim {

/// The core's LogStore, seen through the checker: every write is checked before it reaches the store.
class CheckedLog final : public consensus::LogStore {
 public:
  CheckedLog(consensus::MemoryLogStore& store, Checker& checker, NodeId node)
      : store_(store), checker_(checker), node_(node) {}

  void attach(const consensus::Raft* raft) { raft_ = raft; }
  /// With real storage, the core reads from and writes to `real`; `store_` follows every write as the model
  /// that recovery is checked against. Sequence numbers are the real log's.
  void use(consensus::LogStore* real) { real_ = real; }

  consensus::LogBase base() const override { return source().base(); }
  LogIndex last_index() const override { return source().last_index(); }
  std::optional<Term> term_at(LogIndex index) const override { return source().term_at(index); }
  const consensus::Entry& entry(LogIndex index) const override { return source().entry(index); }
  consensus::HardState hard_state() const override { return source().hard_state(); }

  consensus::PersistSeq append(std::span<const consensus::Entry> entries) override;
  consensus::PersistSeq truncate_after(LogIndex index) override;
  /// The model removes what the real log did (whole segments only), so the two keep the same base.
  consensus::PersistSeq compact(LogIndex up_to) override;
  consensus::PersistSeq reset(LogIndex index, Term term) override;
  consensus::PersistSeq install(const consensus::SnapshotPtr& snapshot) override;
  consensus::PersistSeq save_hard_state(const consensus::HardState& state) override;

 private:
  const consensus::LogStore& source() const { return real_ != nullptr ? *real_ : store_; }

  consensus::MemoryLogStore& store_;
  Checker& checker_;
  NodeId node_;
  const consensus::Raft* raft_ = nullptr;
  consensus::LogStore* real_ = nullptr;
};

/// What a crash costs a node besides its unsynced writes (FaultMix::state_loss_per_mille).
enum class StateLoss : std::uint8_t {
  none,
  wipe,     // the disk is replaced by an empty one
  damage,   // a record proven durable is damaged (with the in-memory store: the durable log is cut somewhere)
  machine,  // under sync policy none: the machine crashes, the page cache is lost, and the kernel boot id changes
};
const char* to_string(StateLoss loss) noexcept;

/// Device work a node's storage needs the event loop to schedule for the node's current incarnation: an event
/// of `kind` after `delay` (a sync of the in-memory store: up to `seq`).
struct StorageEvent {
  EventKind kind = EventKind::sync;
  Duration delay{0};
  consensus::PersistSeq seq = 0;
};

/// One node's disk and its model. It outlives the node's incarnations; the node's lifecycle (cluster.h) calls
/// open() at each start, crash() at each stop, and hands it the storage events addressed to the node.
class NodeStorage {
 public:
  /// `index` and `id` are the node's; `cluster_id` stamps the real storage's files. `phase` is the run's:
  /// storage faults strike only while it is the safety phase.
  NodeStorage(std::uint32_t index, NodeId id, std::uint64_t cluster_id, const FaultMix& mix, const Phase& phase,
              Random& random, const Trace& trace, Stats& stats, Checker& checker);
  NodeStorage(const NodeStorage&) = delete;
  NodeStorage& operator=(const NodeStorage&) = delete;

  /// The log the node's core reads and writes.
  consensus::LogStore& log() noexcept { return log_; }
  /// Every write the core made, and which are durable (with the in-memory store, the disk itself).
  const consensus::MemoryLogStore& model() const noexcept { return model_; }

  /// The node starts: with real storage, recovery builds the log on what the disk holds. Call before building
  /// the core on log().
  void open(Time now);
  /// The core whose commit index truncations are checked against (null while the node is down).
  void attach(const consensus::Raft* raft) { log_.attach(raft); }
  /// The node goes down (`why`, for the trace): the disk keeps what its crash model keeps, and with real storage
  /// recovery is checked against the model at once. Work in flight is forgotten. With `loss`, it also loses
  /// state: recovery must then make it a fresh or recovering node (never a member that forgot).
  void crash(const char* why, StateLoss loss = StateLoss::none);
  /// Saves a snapshot the node's host wrote at (index, term), replacing all but the previous one: with real storage
  /// through the snapshot files (storage/snapshot_file.h), else in a slot the disk keeps. `crashed` if the node
  /// crashed while writing it (a fault of crash_in_snapshot_per_mille): the caller crashes the node. `failed` if an
  /// injected fsync failure stopped it: the disk holds the snapshots it held before.
  enum class Saved : std::uint8_t { saved, failed, crashed };
  Saved save_snapshot(LogIndex index, Term term, std::span<const std::byte> body);
  /// The newest snapshot the disk holds, as a start loads it: the newest of those the node saved and the one it
  /// installed last (with real storage, an install writes a snapshot file like the others). A damaged one fails the
  /// run (none is injected: a damaged snapshot is modelled as a lost one).
  std::optional<std::vector<std::byte>> load_snapshot();
  /// The node's core installed a snapshot from its leader (Ready::installed): its log now starts there.
  void on_installed(const consensus::Snapshot& snapshot);
  /// At a start, before the core is built: the writes the start made itself (host::prepare_start) become durable at
  /// once, as the runtime's start makes them before it builds the replica.
  void persist_start_writes();

  /// Whether the node's durable standing says it may have lost state and not caught up since.
  bool lost_state() const { return model_.durable_hard_state().standing != consensus::Standing::member; }

  /// Messages whose `after` is at most this may leave the node (raft.h, driver contract 2).
  consensus::PersistSeq durable_seq() const;

  /// After a step of the node's core: the device work its writes call for, if any.
  std::optional<StorageEvent> after_step(Time now);
  /// EventKind::storage_write (real storage): the storage thread writes every queued batch. Returns what
  /// follows, in order: perhaps a crash before the sync (a fault), then the sync.
  std::vector<StorageEvent> write();
  /// EventKind::storage_sync (real storage): the sync; each completed batch goes to `on_durable`, in order.
  /// False if the sync failed: the node must stop, never retry (the kernel may have dropped the dirty pages).
  bool sync_written(const std::function<void(const consensus::PersistCompletion&)>& on_durable);
  /// EventKind::sync (in-memory store): makes the writes up to `seq` durable. Nullopt if the sync failed: the
  /// node must stop.
  std::optional<consensus::PersistCompletion> sync(consensus::PersistSeq seq);

 private:
  storage::LogOptions real_options() const;
  storage::Identity identity() const { return storage::Identity{cluster_id_, id_}; }
  void open_real();
  void crash_real(const char* why, StateLoss loss);
  // Damages one record that a later intact record proves durable; nullopt if none is proven yet.
  std::optional<LogIndex> damage_proven_record();
  // Recovers the disk after a crash or a damage (as a start after a machine restart does, if `machine_restarted`),
  // checks what it finds with `explain` (an empty string: fine), and makes it the model's durable state.
  void recover_and_check(
      const char* what, bool machine_restarted,
      const std::function<std::string(const consensus::LogBase&, const std::vector<consensus::Entry>&,
                                      const consensus::HardState&)>& explain);
  // Real storage: the queued batches move to the written ones (the storage thread takes them); then, once synced,
  // each written batch completes, in order, and goes to `on_durable` (if set).
  std::vector<storage::Batch*> take_queued();
  void complete_written(const std::function<void(const consensus::PersistCompletion&)>* on_durable);
  // Around 1 ms, sometimes (slow storage, a fault) 20-300 ms.
  Duration device_latency();

  std::uint32_t index_;
  NodeId id_;
  std::uint64_t cluster_id_;
  const FaultMix& mix_;
  const Phase& phase_;
  Random& random_;
  const Trace& trace_;
  Stats& stats_;
  Checker& checker_;

  consensus::MemoryLogStore model_;
  CheckedLog log_;

  // Real storage only: the disk, which survives crashes, and what a node builds on it at every start.
  std::unique_ptr<storage::MemoryDirectory> disk_;
  std::unique_ptr<storage::SegmentedLog> durable_log_;
  std::unique_ptr<storage::LogWriter> writer_;
  std::deque<std::unique_ptr<storage::Batch>> queued_;    // taken from the log, waiting for the storage thread
  std::vector<std::unique_ptr<storage::Batch>> writing_;  // written, waiting for their sync
  bool busy_ = false;                                     // a storage_write or storage_sync is scheduled
  consensus::PersistSeq seq_offset_ = 0;                  // model seq = real seq + seq_offset_
  bool opened_ = false;                                   // the disk has been opened once (its first meta exists)
  storage::MachineBoot machine_boot_{std::byte{1}};       // the simulated kernel's boot id: a machine crash moves it

  LogIndex last_snapshot_;  // the newest snapshot saved (0: none)

  // In-memory store only.
  std::vector<std::byte> snapshot_;  // the newest snapshot's body: written whole at once, lost only with a wipe
  consensus::PersistSeq sync_requested_ = 0;  // highest sequence a sync is scheduled for, in this incarnation
  Time device_free_{};                        // one device: syncs complete in the order they were issued
};

}  // namespace cohort::sim
