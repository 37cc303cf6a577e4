#include "storage/segmented_log.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "common/assert.h"
#include "storage/recovery.h"

namespace cohort::storage {
namespace {
constexpr std::size_t kReadAhead = 256U << 10U;
// What the spare batches may keep of their byte buffers' capacity, all together. Up to kBatchesInFlight plus one
// batches circulate, so without a bound each would keep its high-water mark for good: after a
// burst in which the storage side fell behind (each batch then grows for several loop turns until the queue has
// room), that was 65 buffers of several MiB, 0.7 GiB of capacity in a node that wrote 1 GiB of 16 KiB
// messages. A steady stream stays well below the bound (a group commit of 3,000-10,000 64-byte records, about 1 MiB, is
// spread over the batches of many loop turns), so it is still served from spares; a burst's batch beyond it gives its
// buffer back, and the next batch allocates once and grows as before, a cost per batch, not per record.
constexpr std::size_t kSpareBatchBytes = 16U << 20U;

/// What a cached entry costs in memory: its payload and its bookkeeping, so that a stream of tiny commands
/// cannot hold millions of entries under a cap meant for bytes.
// The payload's block as allocated (rounded up to its pool's size class), not only its bytes: the budget is memory.
std::size_t cached_cost(const consensus::Entry& entry) noexcept { return entry.payload.footprint() + 96; }
}  // namespace

SegmentedLog::SegmentedLog(Directory& directory, Identity identity, LogOptions options, RecoveredLog recovered,
                           std::uint64_t seed)
    : directory_(directory),
      identity_(identity),
      options_(options),
      hard_state_(recovered.hard_state),
      base_(recovered.base),
      last_index_(recovered.last_index),
      segments_(std::move(recovered.segments)),
      terms_(std::move(recovered.terms)),
      random_(seed) {
  COHORT_ASSERT(options_.segment_size > kSegmentHeaderSize);
  COHORT_ASSERT(last_index_ >= base_.index);
  COHORT_ASSERT(segments_.empty() || segments_.front().first == first_index());
  spare_batches_.reserve(kBatchesInFlight + 1);
  while (spare_batches_.size() < kBatchesInFlight + 1) {
    spare_batches_.push_back(std::make_unique<Batch>());
    spare_bytes_ += spare_batches_.back()->bytes.capacity();
  }
}

std::optional<Term> SegmentedLog::term_at(LogIndex index) const {
  if (index == base_.index) return base_.term;
  if (index > last_index_ || index < base_.index) return std::nullopt;
  const auto it = std::upper_bound(terms_.begin(), terms_.end(), index,
                                   [](LogIndex i, const TermRun& run) { return i < run.first; });
  COHORT_ASSERT(it != terms_.begin());
  return std::prev(it)->term;
}

Batch& SegmentedLog::batch() {
  if (batch_ == nullptr) {
    if (spare_batches_.empty()) {
      batch_ = std::make_unique<Batch>();
    } else {
      // The roomiest: a few batches circulate in steady state, and those grow to its busiest loop turn once; a
      // spare left small by a quiet spell is taken only when more are in flight.
      const auto roomiest =
          std::max_element(spare_batches_.begin(), spare_batches_.end(),
                           [](const auto& a, const auto& b) { return a->bytes.capacity() < b->bytes.capacity(); });
      std::iter_swap(roomiest, spare_batches_.end() - 1);
      batch_ = std::move(spare_batches_.back());
      spare_batches_.pop_back();
      spare_bytes_ -= batch_->bytes.capacity();
    }
  }
  return *batch_;
}

consensus::PersistSeq SegmentedLog::append(std::span<const consensus::Entry> entries) {
  COHORT_ASSERT(!entries.empty());  // an append with nothing to write would name a seq that never completes
  const consensus::PersistSeq seq = next_seq();
  Batch& out = batch();
  for (const consensus::Entry& entry : entries) {
    COHORT_ASSERT(entry.index == last_index_.next());
    COHORT_ASSERT(entry.term >= (terms_.empty() ? base_.term : terms_.back().term));
    COHORT_ASSERT(entry.payload.size() <= std::numeric_limits<std::uint32_t>::max());  // bounded upstream
    const std::uint64_t size = record_size(entry.payload.size());
    bool roll = segments_.empty();
    if (!roll) {
      const SegmentInfo& last = segments_.back();
      roll = last.last >= last.first && last.size + size > options_.segment_size;
    }
    if (roll) {
      segments_.push_back(SegmentInfo{entry.index, random_.next(), last_index_, kSegmentHeaderSize, {}, 0});
      segments_.back().samples.reserve(kSamplesPerSegment);  // filled as the segment grows, on the append path
    }
    SegmentInfo& segment = segments_.back();
    const std::uint64_t offset = segment.size;

    // One operation per run of records into one segment: a batch stays small however many appends it holds.
    const std::size_t begin = out.bytes.size();
    out.bytes.resize(begin + size);
    encode_record(out.bytes.data() + begin, entry);
    StorageOp* op = out.ops.empty() ? nullptr : &out.ops.back();
    if (roll || op == nullptr || op->kind != StorageOp::Kind::append || op->segment != segment.first ||
        op->end != begin) {
      out.ops.push_back(StorageOp{});
      op = &out.ops.back();
      op->kind = StorageOp::Kind::append;
      op->segment = segment.first;
      op->new_segment = roll;
      op->nonce = segment.nonce;
      op->offset = offset;
      op->begin = begin;
    }
    op->end = begin + size;
    op->seq = seq;
    op->last_index = entry.index;
    op->last_term = entry.term;

    segment.add_record(entry.index, offset, options_.segment_size);
    segment.size += size;
    segment.last = entry.index;
    appended_bytes_ += size;
    if (terms_.empty() || terms_.back().term != entry.term) terms_.push_back(TermRun{entry.index, entry.term});
    last_index_ = entry.index;
    cache_bytes_ += cached_cost(entry);
    cache_.push_back(Cached{entry, offset, seq});
  }
  evict();
  return seq;
}

consensus::PersistSeq SegmentedLog::truncate_after(LogIndex index) {
  COHORT_ASSERT(index >= base_.index && index <= last_index_);
  const consensus::PersistSeq seq = next_seq();
  StorageOp op;
  op.kind = StorageOp::Kind::truncate;
  op.seq = seq;
  op.after = index;
  if (index >= first_index()) {
    // The cut goes where record index + 1 starts, or at the end of the segment holding `index` if that is
    // where the record ends.
    const Located holder = locate(index);
    SegmentInfo& segment = segments_[holder.segment];
    op.cut_segment = segment.first;
    op.cut_size = index == segment.last ? segment.size : locate(index.next()).offset;
    segment.size = op.cut_size;
    segment.last = index;
    segment.drop_samples_after(index, options_.segment_size);
    segments_.resize(holder.segment + 1);
  } else {
    segments_.clear();
  }
  while (!terms_.empty() && terms_.back().first > index) terms_.pop_back();
  while (!cache_.empty() && cache_.back().entry.index > index) {
    cache_bytes_ -= cached_cost(cache_.back().entry);
    cache_.pop_back();
  }
  last_index_ = index;
  op.last_index = index;
  op.last_term = *term_at(index);
  batch().ops.push_back(op);
  // Positions in segments_ past the cut are gone: so is what the read state remembers about them.
  forget_reads();
  return seq;
}

consensus::PersistSeq SegmentedLog::compact(LogIndex up_to) {
  COHORT_ASSERT(up_to <= last_index_);
  const consensus::PersistSeq seq = next_seq();
  // Whole segments, oldest first, while they end at or before up_to; never the last, which takes the appends
  // (only it may hold no record, so every segment counted here holds some).
  std::size_t removed = 0;
  while (removed + 1 < segments_.size() && segments_[removed].last <= up_to) ++removed;
  if (removed != 0) {
    const LogIndex index = segments_[removed].first.prev();
    base_ = consensus::LogBase{index, *term_at(index)};
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(removed));
    // The runs that end at or before the base go; the one holding the first entry after it stays.
    std::size_t runs = 0;
    while (runs + 1 < terms_.size() && terms_[runs + 1].first <= first_index()) ++runs;
    terms_.erase(terms_.begin(), terms_.begin() + static_cast<std::ptrdiff_t>(runs));
    // Cached entries at or before the base can no longer be read; those not yet written are in the batch.
    while (!cache_.empty() && cache_.front().entry.index <= base_.index) {
      cache_bytes_ -= cached_cost(cache_.front().entry);
      cache_.pop_front();
    }
    forget_reads();
  }
  // An operation even when nothing goes: its sequence number must complete like any other.
  StorageOp op;
  op.kind = StorageOp::Kind::compact;
  op.seq = seq;
  op.base = base_;
  op.last_index = last_index_;
  op.last_term = *term_at(last_index_);
  batch().ops.push_back(op);
  return seq;
}

consensus::PersistSeq SegmentedLog::reset(LogIndex index, Term term) {
  COHORT_ASSERT(index != LogIndex{0} || term == Term{0});
  return reset_to(consensus::LogBase{index, term}, nullptr);
}

consensus::PersistSeq SegmentedLog::install(const consensus::SnapshotPtr& snapshot) {
  COHORT_ASSERT(snapshot != nullptr && snapshot->position.index != LogIndex{0});
  return reset_to(snapshot->position, snapshot);
}

consensus::PersistSeq SegmentedLog::reset_to(consensus::LogBase base, consensus::SnapshotPtr snapshot) {
  const consensus::PersistSeq seq = next_seq();
  base_ = base;
  last_index_ = base.index;
  segments_.clear();
  terms_.clear();
  // Entries not yet written go too: the storage side writes them, then removes their segments with the rest.
  cache_.clear();
  cache_bytes_ = 0;
  forget_reads();
  StorageOp op;
  op.kind = StorageOp::Kind::reset;
  op.seq = seq;
  op.base = base_;
  op.snapshot = std::move(snapshot);
  op.last_index = base.index;
  op.last_term = base.term;
  batch().ops.push_back(op);
  return seq;
}

consensus::PersistSeq SegmentedLog::save_hard_state(const consensus::HardState& state) {
  const consensus::PersistSeq seq = next_seq();
  StorageOp op;
  op.kind = StorageOp::Kind::hard_state;
  op.seq = seq;
  op.last_index = last_index_;
  op.last_term = *term_at(last_index_);
  op.hard_state = state;
  batch().ops.push_back(op);
  hard_state_ = state;
  return seq;
}

std::size_t SegmentedLog::queued_bytes() const noexcept { return batch_ == nullptr ? 0 : batch_->bytes.size(); }

std::unique_ptr<Batch> SegmentedLog::take_batch() {
  if (batch_ == nullptr || batch_->empty()) return nullptr;
  return std::move(batch_);
}

std::optional<consensus::PersistCompletion> SegmentedLog::complete(std::unique_ptr<Batch> done,
                                                                   const BatchResult& result) {
  COHORT_ASSERT(done != nullptr);
  done->clear();
  // clear() keeps the capacity; beyond the spares' bound the buffer itself goes (shrink_to_fit may do nothing).
  if (spare_bytes_ + done->bytes.capacity() > kSpareBatchBytes) std::vector<std::byte>().swap(done->bytes);
  spare_bytes_ += done->bytes.capacity();
  spare_batches_.push_back(std::move(done));
  if (failure_) return std::nullopt;
  if (result.error) {
    failure_ = result.error;
    return std::nullopt;
  }
  COHORT_ASSERT(result.completion.seq > completed_seq_ && result.completion.seq < next_seq_);
  completed_seq_ = result.completion.seq;
  forget_window();
  evict();
  return result.completion;
}

std::vector<SegmentKey> SegmentedLog::segment_keys() const {
  std::vector<SegmentKey> keys;
  keys.reserve(segments_.size());
  for (const SegmentInfo& segment : segments_) keys.push_back(SegmentKey{segment.first, segment.nonce});
  return keys;
}

void SegmentedLog::forget_window() const {
  window_length_ = 0;
  window_offset_ = 0;
}

void SegmentedLog::forget_reads() const {
  read_segment_ = ~std::size_t{0};
  read_file_.reset();
  forget_window();
  cursor_ = Located{~std::size_t{0}, 0};
}

void SegmentedLog::evict() {
  while (cache_bytes_ > options_.cache_bytes && !cache_.empty() && cache_.front().seq <= completed_seq_) {
    cache_bytes_ -= cached_cost(cache_.front().entry);
    cache_.pop_front();
  }
}

std::size_t SegmentedLog::segment_of(LogIndex index) const {
  const auto it = std::upper_bound(segments_.begin(), segments_.end(), index,
                                   [](LogIndex i, const SegmentInfo& segment) { return i < segment.first; });
  COHORT_ASSERT(it != segments_.begin());
  return static_cast<std::size_t>(std::prev(it) - segments_.begin());
}

std::uint64_t SegmentedLog::bytes_after(LogIndex index) const {
  if (index >= last_index_ || last_index_ == base_.index) return 0;  // else a segment holds what follows
  const LogIndex next = index.next();
  const std::size_t position = next < first_index() ? 0 : segment_of(next);
  const SegmentInfo& segment = segments_[position];
  std::uint64_t from = kSegmentHeaderSize;
  const auto sample = std::upper_bound(segment.samples.begin(), segment.samples.end(), next,
                                       [](LogIndex i, const Sample& s) { return i < s.index; });
  if (sample != segment.samples.begin()) from = std::prev(sample)->offset;
  std::uint64_t bytes = segment.size - std::min(from, segment.size);
  for (std::size_t later = position + 1; later < segments_.size(); ++later) bytes += segments_[later].size;
  return bytes;
}

SegmentedLog::Located SegmentedLog::locate(LogIndex index) const {
  COHORT_ASSERT(index >= first_index() && index <= last_index_);
  const std::size_t position = segment_of(index);
  const LogIndex cache_first{last_index_.value() - cache_.size() + 1};
  if (index >= cache_first) return Located{position, cache_[index.value() - cache_first.value()].offset};
  // Not cached, so written: walk the segment's records from the nearest known position.
  const SegmentInfo& segment = segments_[position];
  LogIndex at = segment.first;
  std::uint64_t offset = kSegmentHeaderSize;
  const auto sample = std::upper_bound(segment.samples.begin(), segment.samples.end(), index,
                                       [](LogIndex i, const Sample& s) { return i < s.index; });
  if (sample != segment.samples.begin()) {
    at = std::prev(sample)->index;
    offset = std::prev(sample)->offset;
  }
  if (cursor_.segment == position && cursor_index_ <= index && cursor_index_ > at) {
    at = cursor_index_;
    offset = cursor_.offset;
  }
  // Each header on the way is checked: a damaged length must stop the walk where the damage is.
  while (at < index) {
    const auto header = decode_record_header(read_window(position, offset, kRecordHeaderSize), segment.nonce);
    if (!header || header->index != at)
      fatal_error(fmt::format("log segment {}/{} is damaged at offset {}: the record of index {} fails its checks",
                              directory_.path(), segment_name(segment.first), offset, at.value()));
    offset += record_size(header->body_length);
    at = at.next();
  }
  return Located{position, offset};
}

const consensus::Entry& SegmentedLog::entry(LogIndex index) const {
  COHORT_ASSERT(index >= first_index() && index <= last_index_);
  const LogIndex cache_first{last_index_.value() - cache_.size() + 1};
  if (index >= cache_first) return cache_[index.value() - cache_first.value()].entry;
  const Located where = locate(index);
  read_record(where.segment, where.offset, index);
  return scratch_;
}

ByteSpan SegmentedLog::read_window(std::size_t position, std::uint64_t offset, std::size_t size) const {
  const SegmentInfo& segment = segments_[position];
  if (read_segment_ != position || offset < window_offset_ || offset + size > window_offset_ + window_length_) {
    if (read_segment_ != position) {
      read_file_.reset();
      read_segment_ = ~std::size_t{0};
      auto opened = directory_.open(segment_name(segment.first), OpenMode::existing);
      if (!opened) fatal_error(fmt::format("cannot read back the log: {}", opened.error().message));
      read_file_ = std::move(opened).value();
      read_segment_ = position;
    }
    // Read ahead, but not past the segment's end: reads near the tail (a replica applying what it just
    // stored, with a small cache) stay small. The buffer only grows, so a refill costs no zero-fill.
    const std::size_t ahead = static_cast<std::size_t>(std::min<std::uint64_t>(kReadAhead, segment.size - offset));
    const std::size_t want = std::max(size, ahead);
    if (window_.size() < want) window_.resize(want);
    window_offset_ = offset;
    window_length_ = 0;
    auto read = read_file_->read_at(offset, MutableByteSpan(window_.data(), want));
    if (!read) fatal_error(fmt::format("cannot read back the log: {}", read.error().message));
    window_length_ = *read;
    if (*read < size)
      fatal_error(fmt::format("log segment {}/{} ends at offset {}, inside a record the log holds", directory_.path(),
                              segment_name(segment.first), offset + *read));
  }
  return ByteSpan(window_.data(), window_length_).subspan(offset - window_offset_, size);
}

void SegmentedLog::read_record(std::size_t position, std::uint64_t offset, LogIndex index) const {
  const std::string file = segment_name(segments_[position].first);
  const auto header = decode_record_header(read_window(position, offset, kRecordHeaderSize), segments_[position].nonce);
  if (!header || header->index != index)
    fatal_error(fmt::format("log segment {}/{} is damaged at offset {}: the record of index {} fails its checks",
                            directory_.path(), file, offset, index.value()));
  const ByteSpan body = read_window(position, offset + kRecordHeaderSize, header->body_length);
  if (!body_ok(*header, body))
    fatal_error(fmt::format("log segment {}/{} is damaged at offset {}: the body of index {} fails its checksum",
                            directory_.path(), file, offset, index.value()));
  scratch_.index = header->index;
  scratch_.term = header->term;
  scratch_.type = header->type;
  scratch_.checksum = header->entry_checksum;
  scratch_.payload = Payload(body);
  cursor_ = Located{position, offset + record_size(header->body_length)};
  cursor_index_ = index.next();
}

}  // namespace cohort::storage
