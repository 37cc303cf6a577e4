#include "sim/storage_model.h"

#include <algorithm>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "common/assert.h"
#include "host/service_host.h"
#include "storage/recovery.h"
#include "storage/snapshot_file.h"

namespace cohort::sim {

using consensus::Entry;
using consensus::PersistSeq;

// --- CheckedLog -------------------------------------------------------------------------------------------------

PersistSeq CheckedLog::append(std::span<const Entry> entries) {
  checker_.on_append(node_, store_, entries);
  const PersistSeq seq = store_.append(entries);
  return real_ != nullptr ? real_->append(entries) : seq;
}

PersistSeq CheckedLog::truncate_after(LogIndex index) {
  checker_.on_truncate(node_, index, raft_ != nullptr ? raft_->commit_index() : LogIndex{0});
  const PersistSeq seq = store_.truncate_after(index);
  return real_ != nullptr ? real_->truncate_after(index) : seq;
}

PersistSeq CheckedLog::compact(LogIndex up_to) {
  // Only what a snapshot covers goes, and a snapshot covers only applied, so committed, entries.
  if (raft_ != nullptr && up_to > raft_->commit_index())
    checker_.fail(fmt::format("node {} compacts its log up to {}, beyond its commit index {}", node_.value(),
                              up_to.value(), raft_->commit_index().value()));
  if (real_ == nullptr) return store_.compact(up_to);
  const PersistSeq seq = real_->compact(up_to);
  (void)store_.compact(real_->base().index);
  return seq;
}

PersistSeq CheckedLog::reset(LogIndex index, Term term) {
  // A follower installs a snapshot beyond what it committed; its committed entries are never dropped.
  if (raft_ != nullptr && index < raft_->commit_index())
    checker_.fail(fmt::format("node {} resets its log to index {}, below its commit index {}", node_.value(),
                              index.value(), raft_->commit_index().value()));
  const PersistSeq seq = store_.reset(index, term);
  return real_ != nullptr ? real_->reset(index, term) : seq;
}

PersistSeq CheckedLog::install(const consensus::SnapshotPtr& snapshot) {
  const LogIndex index = snapshot->position.index;
  if (raft_ != nullptr && index <= raft_->commit_index())
    checker_.fail(fmt::format("node {} installs a snapshot at index {}, at or below its commit index {}", node_.value(),
                              index.value(), raft_->commit_index().value()));
  const PersistSeq seq = store_.install(snapshot);
  return real_ != nullptr ? real_->install(snapshot) : seq;
}

PersistSeq CheckedLog::save_hard_state(const consensus::HardState& state) {
  const consensus::HardState previous = store_.hard_state();
  // The core's own rules, checked from outside: terms never go back; one vote per term.
  if (state.term < previous.term)
    checker_.fail(
        fmt::format("node {} saves term {} after term {}", node_.value(), state.term.value(), previous.term.value()));
  else if (state.term == previous.term && previous.voted_for && state.voted_for != previous.voted_for)
    checker_.fail(fmt::format("node {} changes its vote in term {} from {} to {}", node_.value(), state.term.value(),
                              previous.voted_for->value(), state.voted_for ? state.voted_for->value() : 0));
  const PersistSeq seq = store_.save_hard_state(state);
  return real_ != nullptr ? real_->save_hard_state(state) : seq;
}

// --- NodeStorage ------------------------------------------------------------------------------------------------

NodeStorage::NodeStorage(std::uint32_t index, NodeId id, std::uint64_t cluster_id, const FaultMix& mix,
                         const Phase& phase, Random& random, const Trace& trace, Stats& stats, Checker& checker)
    : index_(index),
      id_(id),
      cluster_id_(cluster_id),
      mix_(mix),
      phase_(phase),
      random_(random),
      trace_(trace),
      stats_(stats),
      checker_(checker),
      log_(model_, checker, id) {}

void NodeStorage::open(Time now) {
  if (mix_.real_storage) open_real();
  sync_requested_ = model_.durable_seq();
  busy_ = false;
  device_free_ = now;
}

const char* to_string(StateLoss loss) noexcept {
  switch (loss) {
    case StateLoss::none: return "none";
    case StateLoss::wipe: return "wiped disk";
    case StateLoss::damage: return "damaged durable record";
    case StateLoss::machine: return "machine crash under sync policy none";
  }
  return "unknown";
}

void NodeStorage::crash(const char* why, StateLoss loss) {
  if (mix_.real_storage) return crash_real(why, loss);
  // Unsynced writes are lost, or a prefix of them reached the disk. Sometimes the first write that did not make
  // it whole made it in part: a torn append batch.
  const std::size_t pending = model_.pending_writes();
  const auto keep = static_cast<std::size_t>(random_.between(0, pending));
  const auto torn = static_cast<std::size_t>(random_.chance(1, 4) ? random_.between(1, 64) : 0);
  const std::size_t lost = model_.crash(keep, torn);
  trace_.line(index_, "{}: kept {} of {} unsynced writes (next torn to {} entries), lost {}; durable log {}", why, keep,
              pending, torn, lost, model_.durable_entries().size());
  // The in-memory store models what real recovery hands the core after a state loss: an empty fresh node, or a
  // log cut at a damaged durable record with the node recovering.
  if (loss == StateLoss::wipe) {
    model_.restore({}, {}, consensus::HardState{Term{0}, std::nullopt, consensus::Standing::fresh});
    model_.forget_snapshot();
    snapshot_.clear();
    last_snapshot_ = LogIndex{};
    trace_.line(index_, "state loss: {}", to_string(loss));
  } else if (loss == StateLoss::damage && !model_.durable_entries().empty()) {
    const std::vector<Entry>& durable = model_.durable_entries();
    const auto cut = static_cast<std::size_t>(random_.below(durable.size()));
    consensus::HardState state = model_.durable_hard_state();
    state.standing = consensus::Standing::recovering;
    model_.restore(model_.durable_base(),
                   std::vector<Entry>(durable.begin(), durable.begin() + static_cast<std::ptrdiff_t>(cut)), state);
    trace_.line(index_, "state loss: {} at index {}", to_string(loss), model_.durable_base().index.value() + cut + 1);
    // Half the time the snapshots are damaged too (the runtime skips damaged ones): with a compacted log, nothing
    // then covers the log's base, and the start must take the repair path (host::prepare_start).
    if (random_.chance(1, 2) && (!snapshot_.empty() || model_.durable_snapshot() != nullptr)) {
      snapshot_.clear();
      model_.forget_snapshot();
      last_snapshot_ = LogIndex{};
      trace_.line(index_, "state loss: the snapshots are lost too");
    }
  }
}

PersistSeq NodeStorage::durable_seq() const {
  return mix_.real_storage ? durable_log_->completed_seq() : model_.durable_seq();
}

Duration NodeStorage::device_latency() {
  Duration latency = micros(random_.between(50, 2'000));
  if (phase_ == Phase::safety && random_.chance(mix_.slow_storage_per_mille, 1000))
    latency = micros(random_.between(20'000, 300'000));
  return latency;
}

std::optional<StorageEvent> NodeStorage::after_step(Time now) {
  if (mix_.real_storage) {
    // The storage thread takes a batch as soon as it is idle; what the core writes meanwhile waits in the queue.
    if (auto batch = durable_log_->take_batch()) queued_.push_back(std::move(batch));
    if (busy_ || queued_.empty()) return std::nullopt;
    busy_ = true;
    return StorageEvent{EventKind::storage_write, micros(random_.between(5, 200))};
  }
  const PersistSeq last = model_.last_seq();
  if (last <= sync_requested_) return std::nullopt;
  sync_requested_ = last;
  const Duration latency = device_latency();
  device_free_ = std::max(device_free_, now + latency);
  return StorageEvent{EventKind::sync, device_free_ - now, last};
}

std::optional<consensus::PersistCompletion> NodeStorage::sync(PersistSeq seq) {
  if (phase_ == Phase::safety && random_.chance(mix_.fsync_failure_per_100k, 100'000)) return std::nullopt;
  const consensus::PersistCompletion completion = model_.make_durable(seq);
  trace_.line(index_, "durable up to seq {} (log {}/{})", completion.seq, completion.last_index.value(),
              completion.last_term.value());
  return completion;
}

// --- real storage -----------------------------------------------------------------------------------------------

storage::LogOptions NodeStorage::real_options() const {
  storage::LogOptions log_options;
  log_options.segment_size = mix_.segment_size;
  log_options.cache_bytes = mix_.cache_bytes;
  return log_options;
}

// Builds the node's log on what its disk holds now (a node starting, the first time or after a crash).
NodeStorage::Saved NodeStorage::save_snapshot(LogIndex index, Term term, std::span<const std::byte> body) {
  if (!mix_.real_storage) {
    snapshot_.assign(body.begin(), body.end());
    last_snapshot_ = index;
    trace_.line(index_, "snapshot at index {} (term {}, {} bytes)", index.value(), term.value(), body.size());
    return Saved::saved;
  }
  if (phase_ == Phase::safety && random_.chance(mix_.crash_in_snapshot_per_mille, 1000)) {
    // Cut short: some of its pieces written, never finished. Recovery removes what is left of it.
    storage::SnapshotWriter writer(/*sync_interval=*/4096);
    const storage::SnapshotMeta meta{index, term, body.size(), storage::snapshot_checksum(body)};
    const std::size_t written = random_.below(body.size() + 1);
    if (writer.begin(*disk_, cluster_id_, meta).ok()) (void)writer.write(body.first(written));
    trace_.line(index_, "snapshot at index {}: crash after {} of {} bytes", index.value(), written, body.size());
    return Saved::crashed;
  }
  auto saved = storage::write_snapshot(*disk_, cluster_id_, index, term, body);
  if (!saved) {
    // An injected fsync failure: the log still holds everything, as the runtime says when it happens.
    trace_.line(index_, "snapshot at index {} failed: {}", index.value(), saved.error().message);
    return Saved::failed;
  }
  if (last_snapshot_ != LogIndex{}) {
    if (auto removed = storage::remove_snapshots_before(*disk_, last_snapshot_); !removed)
      trace_.line(index_, "removing old snapshots failed: {}", removed.error().message);
  }
  last_snapshot_ = index;
  trace_.line(index_, "snapshot at index {} (term {}, {} bytes) written", index.value(), term.value(), body.size());
  return Saved::saved;
}

void NodeStorage::on_installed(const consensus::Snapshot& snapshot) {
  // With real storage the install wrote it as a snapshot file and removed the older ones: the next snapshot saved
  // keeps it as the previous one. The in-memory store keeps it in the model (durable_snapshot()).
  if (mix_.real_storage) last_snapshot_ = snapshot.position.index;
}

std::optional<std::vector<std::byte>> NodeStorage::load_snapshot() {
  if (!mix_.real_storage) {
    const consensus::SnapshotPtr& installed = model_.durable_snapshot();
    const LogIndex saved =
        snapshot_.empty() ? LogIndex{} : host::ServiceHost::snapshot_position(snapshot_).value().first;
    if (installed != nullptr && installed->position.index > saved) return installed->bytes;
    if (snapshot_.empty()) return std::nullopt;
    return snapshot_;
  }
  auto latest = storage::load_latest_snapshot(*disk_, cluster_id_);
  if (!latest) {
    checker_.fail(fmt::format("node {} cannot list its snapshots: {}", id_.value(), latest.error().message));
    return std::nullopt;
  }
  for (const storage::DamagedSnapshot& damaged : latest->skipped)
    checker_.fail(fmt::format("node {} finds snapshot {} damaged: {}", id_.value(), damaged.name, damaged.reason));
  if (!latest->snapshot) return std::nullopt;
  last_snapshot_ = latest->snapshot->meta.index;
  return std::move(latest->snapshot->body);
}

void NodeStorage::open_real() {
  if (disk_ == nullptr) disk_ = std::make_unique<storage::MemoryDirectory>(fmt::format("n{}", index_ + 1));
  auto recovered = storage::recover(*disk_, identity(), real_options());
  if (!recovered) {
    // The run cannot go on without this node's log; the failure stops it at the end of this step.
    checker_.fail(fmt::format("node {} cannot recover its log: {}", id_.value(), recovered.error()));
    recovered = storage::RecoveredLog{};
  }
  // As the runtime does at every start: a machine restart under policy none makes the node a recovering one.
  if (auto noted = storage::note_machine_boot(*disk_, identity(), *recovered, machine_boot_,
                                              mix_.sync_none ? storage::SyncPolicy::none : storage::SyncPolicy::fsync);
      !noted)
    checker_.fail(fmt::format("node {} cannot note its machine's boot: {}", id_.value(), noted.error()));
  // The model starts from what the first start writes (a new directory: a fresh node), and follows a standing
  // that the start itself writes.
  if (!opened_ || recovered->hard_state != model_.durable_hard_state())
    model_.restore(model_.durable_base(), std::vector<Entry>(model_.durable_entries()), recovered->hard_state);
  opened_ = true;
  durable_log_ = std::make_unique<storage::SegmentedLog>(*disk_, identity(), real_options(), std::move(*recovered),
                                                         random_.next());
  writer_ = std::make_unique<storage::LogWriter>(
      *disk_, identity(), mix_.sync_none ? storage::SyncPolicy::none : storage::SyncPolicy::fsync,
      durable_log_->segment_keys(), durable_log_->last_index());
  queued_.clear();
  writing_.clear();
  seq_offset_ = model_.last_seq();
  log_.use(durable_log_.get());
}

// The machine (or the process) goes down: the disk keeps what its crash model keeps. Recovery runs at once, to
// check what it finds against the model of every write made (consensus::MemoryLogStore::explain_recovery). A state
// loss comes on top: a wiped disk, a damaged durable record, or the page cache of a machine running policy none.
void NodeStorage::crash_real(const char* why, StateLoss loss) {
  log_.use(nullptr);
  durable_log_.reset();
  writer_.reset();
  queued_.clear();
  writing_.clear();
  ++stats_.recoveries;
  if (loss == StateLoss::wipe) {
    disk_ = std::make_unique<storage::MemoryDirectory>(fmt::format("n{}", index_ + 1));
    last_snapshot_ = LogIndex{};
    opened_ = false;  // the next start creates the directory anew
    model_.restore({}, {}, consensus::HardState{Term{0}, std::nullopt, consensus::Standing::fresh});
    model_.forget_snapshot();
    trace_.line(index_, "{}: state loss: {}", why, to_string(loss));
    return;
  }
  if (loss == StateLoss::machine) {
    // Written but never synced: under policy none a machine crash may lose entries the node acknowledged. The
    // model's durable log is what was written, so recovery may find any prefix of it.
    disk_->crash(random_);
    // Never all zeros, which would read as a kernel that gives no boot id.
    machine_boot_[0] = static_cast<std::byte>(static_cast<unsigned>(machine_boot_[0]) % 255U + 1U);
    recover_and_check("machine crash under policy none", /*machine_restarted=*/true,
                      [&](const consensus::LogBase& base, const std::vector<Entry>& entries,
                          const consensus::HardState& state) -> std::string {
                        const auto& written = model_.durable_entries();
                        if (base == model_.durable_base() && entries.size() <= written.size() &&
                            std::equal(entries.begin(), entries.end(), written.begin()))
                          return {};
                        return model_.explain_recovery(base, entries, state);
                      });
    trace_.line(index_, "{}: state loss: {}", why, to_string(loss));
    return;
  }
  const bool machine = !mix_.sync_none && random_.chance(3, 4);
  if (machine)
    disk_->crash(random_);
  else
    disk_->crash_keep_all();
  recover_and_check(machine ? "machine crash" : "process crash", /*machine_restarted=*/false,
                    [&](const consensus::LogBase& base, const std::vector<Entry>& entries,
                        const consensus::HardState& state) -> std::string {
                      std::string wrong = model_.explain_recovery(base, entries, state);
                      // A crash alone tears only what no sync covered: never damage to a durable record, which
                      // makes the node recovering where no write of its own did.
                      consensus::HardState unmarked = state;
                      unmarked.standing = model_.hard_state().standing;
                      if (!wrong.empty() && state.standing == consensus::Standing::recovering &&
                          model_.explain_recovery(base, entries, unmarked).empty())
                        wrong = "recovery names damage to a durable record where the crash only tore unsynced writes";
                      return wrong;
                    });
  if (loss != StateLoss::damage || checker_.failed()) return;
  const std::optional<LogIndex> damaged = damage_proven_record();
  if (!damaged) return;
  trace_.line(index_, "{}: state loss: {} at index {}", why, to_string(loss), damaged->value());
  recover_and_check("damage", /*machine_restarted=*/false,
                    [&](const consensus::LogBase& base, const std::vector<Entry>& entries,
                        const consensus::HardState& state) -> std::string {
                      const auto& durable = model_.durable_entries();
                      if (state.standing != consensus::Standing::recovering)
                        return fmt::format("damage to durable index {} leaves the node standing as {}",
                                           damaged->value(), consensus::to_string(state.standing));
                      if (base != model_.durable_base() ||
                          base.index.value() + entries.size() + 1 != damaged->value() ||
                          !std::equal(entries.begin(), entries.end(), durable.begin()))
                        return fmt::format("damage to durable index {} is not cut there: {} entries recovered",
                                           damaged->value(), entries.size());
                      return {};
                    });
  // Half the time the snapshots are lost too (the runtime skips damaged ones; here they are gone): with a compacted
  // log, nothing then covers the log's base, and the start must take the repair path (host::prepare_start).
  if (checker_.failed() || !random_.chance(1, 2)) return;
  auto names = disk_->list();
  if (!names) return;
  bool removed = false;
  for (const std::string& name : *names)
    if (storage::parse_snapshot_name(name)) removed = disk_->remove(name).ok() || removed;
  if (!removed) return;
  (void)disk_->sync();
  last_snapshot_ = LogIndex{};
  trace_.line(index_, "state loss: the snapshots are lost too");
}

void NodeStorage::recover_and_check(
    const char* what, bool machine_restarted,
    const std::function<std::string(const consensus::LogBase&, const std::vector<Entry>&, const consensus::HardState&)>&
        explain) {
  auto recovered = storage::recover(*disk_, identity(), real_options());
  if (!recovered) {
    checker_.fail(fmt::format("node {} refuses to recover after a {}: {}", id_.value(), what, recovered.error()));
    return;
  }
  // What the crash left, before a start after a machine restart marks the node recovering.
  const consensus::HardState left = recovered->hard_state;
  if (machine_restarted) {
    if (auto noted =
            storage::note_machine_boot(*disk_, identity(), *recovered, machine_boot_, storage::SyncPolicy::none);
        !noted) {
      checker_.fail(fmt::format("node {} cannot note its machine's boot: {}", id_.value(), noted.error()));
      return;
    }
  }
  for (const std::string& repair : recovered->repairs) {
    trace_.line(index_, "recovery: {}", repair);
    if (repair.find("torn tail") != std::string::npos) ++stats_.torn_tails;
  }
  const consensus::HardState hard_state = recovered->hard_state;
  const consensus::LogBase base = recovered->base;
  const storage::SegmentedLog log(*disk_, identity(), real_options(), std::move(*recovered), 0);
  std::vector<Entry> entries;
  for (LogIndex i = log.first_index(); i <= log.last_index(); i = i.next()) entries.push_back(log.entry(i));
  if (const std::string wrong = explain(base, entries, left); !wrong.empty()) {
    checker_.fail(fmt::format("node {} after a {}: {}", id_.value(), what, wrong));
    return;
  }
  trace_.line(index_, "{}: recovered log {} term {} standing {}", what, entries.size(), hard_state.term.value(),
              consensus::to_string(hard_state.standing));
  model_.restore(base, std::move(entries), hard_state);
}

std::optional<LogIndex> NodeStorage::damage_proven_record() {
  auto names = disk_->list();
  if (!names) return std::nullopt;
  std::vector<std::pair<LogIndex, std::string>> segments;
  for (const std::string& name : *names)
    if (const auto first = storage::parse_segment_name(name)) segments.emplace_back(*first, name);
  std::sort(segments.begin(), segments.end());
  struct Record {
    LogIndex index;
    std::size_t segment;
    std::uint64_t offset;
    std::uint64_t size;  // header and body
  };
  std::vector<Record> records;
  LogIndex proven;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const auto bytes = disk_->bytes(segments[s].second);
    if (!bytes) return std::nullopt;
    std::string reason;
    const auto header = storage::decode_segment_header(*bytes, reason);
    if (!header) return std::nullopt;
    const ByteSpan all(*bytes);
    std::uint64_t offset = storage::kSegmentHeaderSize;
    while (offset + storage::kRecordHeaderSize <= all.size()) {
      const auto record = storage::decode_record_header(all.subspan(offset, storage::kRecordHeaderSize), header->nonce);
      if (!record) break;
      records.push_back({record->index, s, offset, storage::kRecordHeaderSize + record->body_length});
      proven = std::max(proven, record->durable_before);
      offset += storage::record_size(record->body_length);
    }
  }
  // Recovery has just synced and kept what it found: a record is proven durable once a later one claims it.
  std::vector<const Record*> candidates;
  for (const Record& record : records)
    if (record.index <= proven) candidates.push_back(&record);
  if (candidates.empty()) return std::nullopt;
  const Record& victim = *candidates[random_.below(candidates.size())];
  const std::uint64_t at = victim.offset + random_.below(victim.size);
  disk_->corrupt(segments[victim.segment].second, at, static_cast<std::byte>(1U << random_.below(8)));
  return victim.index;
}

std::vector<storage::Batch*> NodeStorage::take_queued() {
  std::vector<storage::Batch*> group;
  while (!queued_.empty()) {
    writing_.push_back(std::move(queued_.front()));
    queued_.pop_front();
    group.push_back(writing_.back().get());
  }
  return group;
}

// The storage thread takes everything queued and writes it; its sync follows as a separate event, so a crash
// can fall between the two.
std::vector<StorageEvent> NodeStorage::write() {
  const std::vector<storage::Batch*> group = take_queued();
  if (auto status = writer_->write(group); !status) {
    checker_.fail(fmt::format("node {}: storage write fails: {}", id_.value(), status.error().message));
    return {};
  }
  const Duration latency = device_latency();
  std::vector<StorageEvent> next;
  // An install (its snapshot file written and synced, the reset not yet) or a compaction (the base file or the
  // removals not yet synced) is cut short more often than other writes: crash_in_snapshot_per_mille.
  const bool snapshot_work = std::any_of(group.begin(), group.end(), [](const storage::Batch* batch) {
    return std::any_of(batch->ops.begin(), batch->ops.end(), [](const storage::StorageOp& op) {
      return op.kind == storage::StorageOp::Kind::compact ||
             (op.kind == storage::StorageOp::Kind::reset && op.snapshot != nullptr);
    });
  });
  if (phase_ == Phase::safety && (random_.chance(mix_.crash_in_storage_per_mille, 1000) ||
                                  (snapshot_work && random_.chance(mix_.crash_in_snapshot_per_mille, 1000))))
    next.push_back(StorageEvent{EventKind::crash_node, latency / 2});
  next.push_back(StorageEvent{EventKind::storage_sync, latency});
  return next;
}

bool NodeStorage::sync_written(const std::function<void(const consensus::PersistCompletion&)>& on_durable) {
  const bool fail = !mix_.sync_none && phase_ == Phase::safety && random_.chance(mix_.fsync_failure_per_100k, 100'000);
  disk_->fail_syncs(fail);
  const auto synced = writer_->sync();
  disk_->fail_syncs(false);
  if (!synced) {
    if (!fail) checker_.fail(fmt::format("node {}: storage sync fails: {}", id_.value(), synced.error().message));
    return false;
  }
  complete_written(&on_durable);
  busy_ = false;
  return true;
}

void NodeStorage::complete_written(const std::function<void(const consensus::PersistCompletion&)>* on_durable) {
  for (auto& batch : writing_) {
    storage::BatchResult result;
    result.completion = batch->completion();
    const auto completion = durable_log_->complete(std::move(batch), result);
    COHORT_ASSERT(completion.has_value());
    (void)model_.make_durable(completion->seq + seq_offset_);
    trace_.line(index_, "durable up to seq {} (log {}/{})", completion->seq, completion->last_index.value(),
                completion->last_term.value());
    if (on_durable != nullptr) (*on_durable)(*completion);
  }
  writing_.clear();
}

void NodeStorage::persist_start_writes() {
  if (!mix_.real_storage) {
    if (model_.last_seq() > model_.durable_seq()) (void)model_.make_durable(model_.last_seq());
    sync_requested_ = model_.durable_seq();
    return;
  }
  if (auto batch = durable_log_->take_batch()) queued_.push_back(std::move(batch));
  if (queued_.empty()) return;
  const std::vector<storage::Batch*> group = take_queued();
  if (auto status = writer_->write(group); !status) {
    checker_.fail(fmt::format("node {}: storage write at start fails: {}", id_.value(), status.error().message));
    return;
  }
  if (auto synced = writer_->sync(); !synced) {
    checker_.fail(fmt::format("node {}: storage sync at start fails: {}", id_.value(), synced.error().message));
    return;
  }
  complete_written(nullptr);
}

}  // namespace cohort::sim
