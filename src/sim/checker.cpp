#include "sim/checker.h"

#include <algorithm>

#include <fmt/format.h>

namespace cohort::sim {

using consensus::Entry;

namespace {

std::string describe(const Entry& entry) {
  return fmt::format("{{index {} term {} type {} checksum {:016x} payload \"{}\"}}", entry.index.value(),
                     entry.term.value(), static_cast<int>(entry.type), entry.checksum, as_chars(entry.payload));
}

}  // namespace

std::optional<Term> Checker::committed_term(LogIndex index) const {
  if (index == LogIndex{0} || index.value() > committed_.size()) return std::nullopt;
  return committed_[index.value() - 1].entry.term;
}

void Checker::fail(std::string description) {
  if (failure_.empty()) failure_ = std::move(description);
}

void Checker::on_append(NodeId node, const consensus::LogStore& log, std::span<const Entry> entries) {
  if (entries.empty()) return;
  const auto before = log.term_at(entries.front().index.prev());
  if (!before) {
    fail(fmt::format("node {} appends index {} after a log ending at {}: a gap", node.value(),
                     entries.front().index.value(), log.last_index().value()));
    return;
  }
  Term previous = *before;
  for (const Entry& entry : entries) {
    if (!consensus::checksum_ok(entry)) {
      fail(fmt::format("node {} stores a damaged entry {}", node.value(), describe(entry)));
      return;
    }
    const auto [it, inserted] =
        entries_.try_emplace(Key{entry.index.value(), entry.term.value()}, Record{previous, entry});
    if (!inserted) {
      const Record& record = it->second;
      if (!(record.entry == entry)) {
        fail(fmt::format("Log Matching: node {} stores {} where another log holds {} at the same (index, term)",
                         node.value(), describe(entry), describe(record.entry)));
        return;
      }
      if (record.previous_term != previous) {
        fail(fmt::format("Log Matching: node {} stores {} after an entry of term {}, another log after term {}",
                         node.value(), describe(entry), previous.value(), record.previous_term.value()));
        return;
      }
    }
    previous = entry.term;
  }
}

void Checker::on_truncate(NodeId node, LogIndex after, LogIndex commit) {
  if (after < commit)
    fail(fmt::format("State Machine Safety: node {} truncates its log after {}, below its commit index {}",
                     node.value(), after.value(), commit.value()));
}

void Checker::on_release(NodeId node, const consensus::Message& message, const consensus::MemoryLogStore& model) {
  const consensus::HardState& durable = model.durable_hard_state();
  const auto* vote_request = std::get_if<consensus::VoteRequest>(&message.body);
  const auto* vote_response = std::get_if<consensus::VoteResponse>(&message.body);
  // A pre-vote request asks about the next term; a granted pre-vote answers in the term it was asked about.
  const bool asks_ahead = (vote_request != nullptr && vote_request->pre_vote) ||
                          (vote_response != nullptr && vote_response->pre_vote && vote_response->granted);
  if (!asks_ahead && message.term > durable.term) {
    fail(fmt::format("node {} sends a {} of term {} while its durable term is {}", node.value(),
                     consensus::type_name(message), message.term.value(), durable.term.value()));
    return;
  }
  if (vote_response != nullptr && vote_response->granted && !vote_response->pre_vote &&
      (durable.term != message.term || durable.voted_for != message.to)) {
    fail(fmt::format("node {} grants its vote of term {} to node {} before that vote is durable", node.value(),
                     message.term.value(), message.to.value()));
    return;
  }
  // (Unless a newer leader has cut the log since: the answer was true when it was made, in an older term.)
  // The durable log's end counts what its base covers: a durable snapshot (an install's is durable with its reset).
  const std::uint64_t durable_end = model.durable_base().index.value() + model.durable_entries().size();
  if (const auto* response = std::get_if<consensus::AppendResponse>(&message.body);
      response != nullptr && response->success && durable.term == message.term &&
      response->match_index.value() > durable_end) {
    fail(fmt::format("node {} acknowledges a match up to {} while its durable log ends at {}", node.value(),
                     response->match_index.value(), durable_end));
  }
}

void Checker::on_step(NodeId node, consensus::Role role, Term term, bool became_leader, LogIndex previous,
                      LogIndex commit, const consensus::LogStore& log,
                      std::span<const consensus::MemoryLogStore* const> stores) {
  if (term.value() >= consensus::kTermLimit) {
    fail(fmt::format("node {} adopts term {}, from the top half that no correct member reaches", node.value(),
                     term.value()));
    return;
  }
  if (role == consensus::Role::leader) {
    const auto [it, inserted] = leaders_.try_emplace(term.value(), node);
    if (!inserted && it->second != node) {
      fail(fmt::format("Election Safety: nodes {} and {} both lead term {}", it->second.value(), node.value(),
                       term.value()));
      return;
    }
  }
  // A log's base stands for entries a snapshot covers: they were committed (a snapshot is of applied state), so the
  // base is a committed position, with its term. Checked before what follows relies on it.
  const consensus::LogBase base = log.base();
  if (base.index != LogIndex{0}) {
    if (base.index.value() > committed_.size()) {
      fail(fmt::format("node {}'s log starts after index {}, beyond every entry known committed (up to {})",
                       node.value(), base.index.value(), committed_.size()));
      return;
    }
    if (const Entry& at = committed_[base.index.value() - 1].entry; at.term != base.term) {
      fail(fmt::format("State Machine Safety: node {}'s log starts after ({}, {}), where {} was committed",
                       node.value(), base.index.value(), base.term.value(), describe(at)));
      return;
    }
  }
  if (became_leader) {
    for (const Committed& committed : committed_) {
      if (committed.observed_in >= term) continue;
      const LogIndex index = committed.entry.index;
      if (index <= base.index) continue;  // the base is committed: its snapshot holds the entries up to it
      if (index > log.last_index() || !(log.entry(index) == committed.entry)) {
        fail(fmt::format("Leader Completeness: node {} leads term {} without committed entry {} (its log: {})",
                         node.value(), term.value(), describe(committed.entry),
                         index > log.last_index() ? std::string("ends at ") + std::to_string(log.last_index().value())
                                                  : describe(log.entry(index))));
        return;
      }
    }
  }
  if (commit < previous) {
    fail(
        fmt::format("node {}'s commit index moves back from {} to {}", node.value(), previous.value(), commit.value()));
    return;
  }
  if (commit > log.last_index()) {
    fail(fmt::format("node {} reports commit index {} beyond its log's end {}", node.value(), commit.value(),
                     log.last_index().value()));
    return;
  }
  // Entries up to the base are committed ones (checked above): the node restored or installed their snapshot.
  for (LogIndex index = std::max(previous, base.index).next(); index <= commit; index = index.next()) {
    const Entry& entry = log.entry(index);
    const std::size_t position = index.value() - 1;
    if (position > committed_.size()) {
      fail(fmt::format("node {} commits index {} while the committed log known ends at {}: a gap", node.value(),
                       index.value(), committed_.size()));
      return;
    }
    if (position < committed_.size()) {
      if (!(committed_[position].entry == entry)) {
        fail(fmt::format("State Machine Safety: node {} commits {} where {} was committed before", node.value(),
                         describe(entry), describe(committed_[position].entry)));
        return;
      }
      continue;
    }
    committed_.push_back(Committed{entry, term});
    // A leader counts a replica only once it is durable, so a new commit is durable on a majority already.
    if (!durable_on_majority(position, stores)) {
      fail(fmt::format("node {} commits {}, which is durable on no majority", node.value(), describe(entry)));
      return;
    }
  }
}

void Checker::check_durable_claim(NodeId node, LogIndex claimed, const consensus::MemoryLogStore& store) {
  if (claimed == LogIndex{0}) return;
  const LogIndex durable_base = store.durable_base().index;
  const auto& durable = store.durable_entries();
  const std::uint64_t end = durable_base.value() + durable.size();
  if (claimed.value() > end) {
    fail(fmt::format("node {} counts its log durable up to {}, but its durable log ends at {}", node.value(),
                     claimed.value(), end));
    return;
  }
  // At or below either base, a snapshot covers the entry (committed): there is no entry to compare.
  if (claimed <= durable_base || claimed <= store.base().index) return;
  if (durable[claimed.value() - durable_base.value() - 1] != store.entry(claimed))
    fail(fmt::format("node {} counts its log durable up to {}, but its durable log holds another entry there",
                     node.value(), claimed.value()));
}

bool Checker::durable_on_majority(std::size_t position, std::span<const consensus::MemoryLogStore* const> stores,
                                  bool lost_state_holds) const {
  const std::uint64_t index = position + 1;
  std::size_t holders = 0;
  for (const consensus::MemoryLogStore* store : stores) {
    const std::uint64_t base = store->durable_base().index.value();
    const auto& durable = store->durable_entries();
    // At or below its durable base, the node's durable snapshot holds the entry (bases are committed positions:
    // on_step).
    if ((lost_state_holds && store->durable_hard_state().standing != consensus::Standing::member) || index <= base ||
        (index - base - 1 < durable.size() && durable[index - base - 1] == committed_[position].entry))
      ++holders;
  }
  return holders >= cluster_size_ / 2 + 1;
}

void Checker::check_committed_durable(std::span<const consensus::MemoryLogStore* const> stores) {
  for (std::size_t position = 0; position < committed_.size(); ++position) {
    if (!durable_on_majority(position, stores)) {
      fail(fmt::format("State Machine Safety: committed entry {} is no longer durable on a majority",
                       describe(committed_[position].entry)));
      return;
    }
  }
}

LogIndex Checker::forget_lost_commits(std::span<const consensus::MemoryLogStore* const> stores) {
  // Every node is recovering now: count what each really holds.
  std::size_t kept = 0;
  while (kept < committed_.size() && durable_on_majority(kept, stores, /*lost_state_holds=*/false)) ++kept;
  committed_.resize(kept);
  return LogIndex{kept};
}

}  // namespace cohort::sim
