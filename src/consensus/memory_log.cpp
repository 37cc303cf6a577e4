#include "consensus/memory_log.h"

#include <algorithm>

#include <fmt/format.h>

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

std::string MemoryLogStore::explain_recovery(std::span<const Entry> entries, const HardState& state) const {
  bool hard_state_ok = state == durable_.hard_state;
  for (const Write& write : pending_)
    if (const auto* saved = std::get_if<HardState>(&write.change)) hard_state_ok = hard_state_ok || state == *saved;
  if (!hard_state_ok)
    return fmt::format("recovered term {} and vote {}, which no write left", state.term.value(),
                       state.voted_for ? state.voted_for->value() : 0);

  const auto prefix_of = [&](const std::vector<Entry>& log, std::size_t at_least) {
    return entries.size() >= at_least && entries.size() <= log.size() &&
           std::equal(entries.begin(), entries.end(), log.begin());
  };
  State stage = durable_;
  if (prefix_of(stage.entries, stage.entries.size())) return {};
  for (const Write& write : pending_) {
    if (std::holds_alternative<Append>(write.change)) {
      State after = stage;
      apply(after, write);
      if (prefix_of(after.entries, stage.entries.size())) return {};
    } else if (const auto* truncate = std::get_if<Truncate>(&write.change)) {
      if (prefix_of(stage.entries, truncate->after.value())) return {};
    }
    apply(stage, write);
  }
  return fmt::format(
      "recovered a log of {} entries that is not the durable log ({} entries) followed by a prefix "
      "of the {} writes since",
      entries.size(), durable_.entries.size(), pending_.size());
}

void MemoryLogStore::reset(std::vector<Entry> entries, HardState state) {
  pending_.clear();
  durable_.entries = std::move(entries);
  durable_.hard_state = state;
  current_ = durable_;
  durable_seq_ = next_seq_ - 1;
}

}  // namespace cohort::consensus
