#include "consensus/memory_log.h"

#include <algorithm>

#include "common/assert.h"

namespace cohort::consensus {

std::optional<Term> MemoryLogStore::term_at(LogIndex index) const {
  if (index == LogIndex{0}) return Term{0};
  if (index > last_index()) return std::nullopt;
  return current_.entries[index.value() - 1].term;
}

const Entry& MemoryLogStore::entry(LogIndex index) const {
  COHORT_ASSERT(index >= LogIndex{1} && index <= last_index());
  return current_.entries[index.value() - 1];
}

PersistSeq MemoryLogStore::record(std::variant<Append, Truncate, HardState> change) {
  Write write{next_seq_++, std::move(change)};
  apply(current_, write);
  pending_.push_back(std::move(write));
  return pending_.back().seq;
}

PersistSeq MemoryLogStore::append(std::span<const Entry> entries) {
  COHORT_ASSERT(!entries.empty());
  COHORT_ASSERT(entries.front().index == last_index().next());
  return record(Append{std::vector<Entry>(entries.begin(), entries.end())});
}

PersistSeq MemoryLogStore::truncate_after(LogIndex index) {
  COHORT_ASSERT(index <= last_index());
  return record(Truncate{index});
}

PersistSeq MemoryLogStore::save_hard_state(const HardState& state) { return record(state); }

void MemoryLogStore::apply(State& state, const Write& write) {
  if (const auto* append = std::get_if<Append>(&write.change)) {
    state.entries.insert(state.entries.end(), append->entries.begin(), append->entries.end());
  } else if (const auto* truncate = std::get_if<Truncate>(&write.change)) {
    state.entries.resize(truncate->after.value());
  } else {
    state.hard_state = std::get<HardState>(write.change);
  }
}

PersistCompletion MemoryLogStore::make_durable(PersistSeq seq) {
  COHORT_ASSERT(seq < next_seq_);
  while (!pending_.empty() && pending_.front().seq <= seq) {
    apply(durable_, pending_.front());
    durable_seq_ = pending_.front().seq;
    pending_.pop_front();
  }
  const LogIndex last{durable_.entries.size()};
  return PersistCompletion{durable_seq_, last, last == LogIndex{0} ? Term{0} : durable_.entries.back().term};
}

std::size_t MemoryLogStore::crash(std::size_t keep, std::size_t torn_entries) {
  std::size_t kept = 0;
  while (!pending_.empty() && kept < keep) {
    apply(durable_, pending_.front());
    durable_seq_ = pending_.front().seq;
    pending_.pop_front();
    ++kept;
  }
  if (!pending_.empty() && torn_entries > 0) {
    if (const auto* append = std::get_if<Append>(&pending_.front().change)) {
      const std::size_t count = std::min(torn_entries, append->entries.size() - 1);
      durable_.entries.insert(durable_.entries.end(), append->entries.begin(),
                              append->entries.begin() + static_cast<std::ptrdiff_t>(count));
    }
  }
  const std::size_t lost = pending_.size();
  pending_.clear();
  current_ = durable_;
  next_seq_ = durable_seq_ + 1;
  return lost;
}

}  // namespace cohort::consensus
