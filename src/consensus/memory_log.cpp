#include "consensus/memory_log.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/assert.h"

namespace cohort::consensus {

std::optional<Term> MemoryLogStore::State::term_at(LogIndex index) const {
  if (index == base.index) return base.term;
  if (index < base.index || index > last_index()) return std::nullopt;
  return entries[index.value() - base.index.value() - 1].term;
}

const Entry& MemoryLogStore::entry(LogIndex index) const {
  COHORT_ASSERT(index >= first_index() && index <= last_index());
  return current_.entries[index.value() - current_.base.index.value() - 1];
}

PersistSeq MemoryLogStore::record(Change change) {
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
  COHORT_ASSERT(index >= current_.base.index && index <= last_index());
  return record(Truncate{index});
}

PersistSeq MemoryLogStore::compact(LogIndex up_to) {
  COHORT_ASSERT(up_to <= last_index());
  // Recorded even when it removes nothing: the caller waits for its sequence number like any other.
  const LogBase to = up_to > current_.base.index ? LogBase{up_to, *term_at(up_to)} : current_.base;
  return record(Compact{to});
}

PersistSeq MemoryLogStore::reset(LogIndex index, Term term) {
  COHORT_ASSERT(index != LogIndex{0} || term == Term{0});
  return record(Reset{LogBase{index, term}, nullptr});
}

PersistSeq MemoryLogStore::install(const SnapshotPtr& snapshot) {
  COHORT_ASSERT(snapshot != nullptr && snapshot->position.index != LogIndex{0});
  return record(Reset{snapshot->position, snapshot});
}

PersistSeq MemoryLogStore::save_hard_state(const HardState& state) { return record(state); }

void MemoryLogStore::apply(State& state, const Write& write) {
  if (const auto* append = std::get_if<Append>(&write.change)) {
    state.entries.insert(state.entries.end(), append->entries.begin(), append->entries.end());
  } else if (const auto* truncate = std::get_if<Truncate>(&write.change)) {
    state.entries.resize(truncate->after.value() - state.base.index.value());
  } else if (const auto* compact = std::get_if<Compact>(&write.change)) {
    const std::uint64_t removed = compact->base.index.value() - state.base.index.value();
    state.entries.erase(state.entries.begin(), state.entries.begin() + static_cast<std::ptrdiff_t>(removed));
    state.base = compact->base;
  } else if (const auto* reset = std::get_if<Reset>(&write.change)) {
    state.entries.clear();
    state.base = reset->base;
    if (reset->snapshot != nullptr) state.snapshot = reset->snapshot;
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
  const LogIndex last = durable_.last_index();
  return PersistCompletion{durable_seq_, last, *durable_.term_at(last)};
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

std::string MemoryLogStore::explain_recovery(const LogBase& base, std::span<const Entry> entries,
                                             const HardState& state) const {
  bool hard_state_ok = state == durable_.hard_state;
  for (const Write& write : pending_)
    if (const auto* saved = std::get_if<HardState>(&write.change)) hard_state_ok = hard_state_ok || state == *saved;
  if (!hard_state_ok)
    return fmt::format("recovered term {} and vote {}, which no write left", state.term.value(),
                       state.voted_for ? state.voted_for->value() : 0);

  // Whether the recovered log is `stage`'s base followed by a prefix of its entries at least `at_least` long.
  const auto prefix_of = [&](const State& stage, std::size_t at_least) {
    return base == stage.base && entries.size() >= at_least && entries.size() <= stage.entries.size() &&
           std::equal(entries.begin(), entries.end(), stage.entries.begin());
  };
  State stage = durable_;
  for (std::size_t next = 0;; ++next) {
    if (prefix_of(stage, stage.entries.size())) return {};
    if (next == pending_.size()) break;
    const Write& write = pending_[next];
    if (std::holds_alternative<Append>(write.change)) {
      State after = stage;
      apply(after, write);
      if (prefix_of(after, stage.entries.size())) return {};
    } else if (const auto* truncate = std::get_if<Truncate>(&write.change)) {
      if (prefix_of(stage, truncate->after.value() - stage.base.index.value())) return {};
    } else if (const auto* compact = std::get_if<Compact>(&write.change)) {
      // Stopped part way: a base between the old one and the new, and every entry after it.
      if (base.index >= stage.base.index && base.index <= compact->base.index &&
          base.term == stage.term_at(base.index)) {
        const auto kept =
            stage.entries.begin() + static_cast<std::ptrdiff_t>(base.index.value() - stage.base.index.value());
        if (std::equal(entries.begin(), entries.end(), kept, stage.entries.end())) return {};
      }
    }
    apply(stage, write);
  }
  return fmt::format(
      "recovered a log of {} entries after base ({}, {}) that is not the durable log ({} entries after base ({}, {})) "
      "followed by a prefix of the {} writes since",
      entries.size(), base.index.value(), base.term.value(), durable_.entries.size(), durable_.base.index.value(),
      durable_.base.term.value(), pending_.size());
}

void MemoryLogStore::restore(LogBase base, std::vector<Entry> entries, HardState state) {
  pending_.clear();
  durable_.base = base;
  durable_.entries = std::move(entries);
  durable_.hard_state = state;
  current_ = durable_;
  durable_seq_ = next_seq_ - 1;
}

}  // namespace cohort::consensus
