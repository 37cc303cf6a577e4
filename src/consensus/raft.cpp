#include "consensus/raft.h"

#include <algorithm>

#include <fmt/format.h>
#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per checksum
#include <xxhash.h>

#include "common/assert.h"
#include "common/planted_bug.h"

// Planted bugs, for the simulator's self-test only (common/planted_bug.h: only the test-only target planted_bugs
// can switch one on). A checker that cannot fail is a defect: each of these must be caught within a stated number
// of seeds.
//   1: commit an entry of an earlier term by counting replicas (Figure 8)
//   2: grant a second vote in one term
//   3: send vote requests before the candidate's own vote is durable
//   4: count a storage completion for entries truncated since
//   7: a node that lost its state (fresh or recovering) votes anyway
//   8: a leader ignores a follower's new boot id, so it never repairs a follower that came back shorter
//  14: a follower acknowledges an installed snapshot before the install is durable

namespace cohort::consensus {

std::uint64_t snapshot_checksum(ByteSpan bytes) noexcept { return XXH3_64bits(bytes.data(), bytes.size()); }

std::uint64_t compute_checksum(LogIndex index, Term term, EntryType type, ByteSpan payload) noexcept {
  std::byte header[17];
  store_le<std::uint64_t>(header, index.value());
  store_le<std::uint64_t>(header + 8, term.value());
  store_le<std::uint8_t>(header + 16, static_cast<std::uint8_t>(type));
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, sizeof(header));
  if (!payload.empty()) XXH3_64bits_update(&state, payload.data(), payload.size());
  return XXH3_64bits_digest(&state);
}

const char* type_name(const Message& message) noexcept {
  static constexpr const char* kNames[] = {"VoteRequest",    "VoteResponse",      "AppendRequest", "AppendResponse",
                                           "Heartbeat",      "HeartbeatResponse", "TimeoutNow",    "StandingQuery",
                                           "StandingAnswer", "SnapshotChunk",     "SnapshotAck"};
  return kNames[message.body.index()];
}

const char* to_string(Standing standing) noexcept {
  switch (standing) {
    case Standing::member: return "member";
    case Standing::fresh: return "fresh";
    case Standing::recovering: return "recovering";
  }
  return "unknown";
}

const char* to_string(Role role) noexcept {
  switch (role) {
    case Role::follower: return "follower";
    case Role::pre_candidate: return "pre-candidate";
    case Role::candidate: return "candidate";
    case Role::leader: return "leader";
  }
  return "unknown";
}

std::optional<std::string> validate(const Config& config) {
  if (config.id.value() == 0) return "node id must not be 0";
  if (config.members.empty()) return "members must not be empty";
  std::vector<NodeId> sorted = config.members;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) return "members lists a node twice";
  if (sorted.front().value() == 0) return "member ids must not be 0";
  if (sorted.back() == kForgottenVote) return fmt::format("member id {} is reserved", kForgottenVote.value());
  if (!std::binary_search(sorted.begin(), sorted.end(), config.id))
    return fmt::format("node id {} is not among the members", config.id.value());
  if (config.heartbeat_interval <= Duration::zero()) return "heartbeat interval must be positive";
  if (config.election_timeout_min <= config.heartbeat_interval)
    return "election timeout must be longer than the heartbeat interval";
  if (config.election_timeout_max <= config.election_timeout_min)
    return "election timeout range is empty (max must exceed min)";
  if (config.max_append_entries == 0 || config.max_inflight_appends == 0)
    return "max append entries and max inflight appends must be at least 1";
  if (config.snapshot_chunk_bytes == 0 || config.max_inflight_snapshot_chunks == 0)
    return "snapshot chunk bytes and max inflight snapshot chunks must be at least 1";
  return std::nullopt;
}

Raft::Raft(Config config, LogStore& log, std::uint64_t seed, Time now, LogIndex committed)
    // Entries up to the base are covered by a snapshot: committed.
    : config_(std::move(config)), log_(log), random_(seed), commit_(std::max(committed, log.base().index)) {
  const auto problem = validate(config_);
  COHORT_ASSERT(!problem.has_value());
  ready_.messages.reserve(Ready::kReservedMessages);
  COHORT_ASSERT(committed <= log_.last_index());
  const HardState state = log_.hard_state();
  term_ = state.term;
  voted_for_ = state.voted_for;
  standing_ = state.standing;
  // Its own generator, so the election timeouts a seed gives stay as they were. Never 0 ("not heard from yet").
  boot_ = config_.boot != 0 ? config_.boot : Random(seed ^ 0x9E3779B97F4A7C15ULL).next() | 1U;
  // What the store holds at construction was recovered from disk: it is durable.
  durable_index_ = log_.last_index();
  match_scratch_.reserve(config_.members.size());
  // It knows no live leader: it pre-votes soon. Where a leader lives, its followers ignore that (stickiness) and its
  // next heartbeat makes this node follow. The only voter has no one to wait for, nor anyone to disrupt: it stands
  // at its first tick.
  schedule_prompt_election(now);
  if (quorum() == 1) election_deadline_ = now;
  next_standing_query_ = now;
  if (standing_ != Standing::member && quorum() == 1)
    set_standing(Standing::member,
                 standing_ == Standing::fresh
                     ? "a new single-node cluster: standing as a member at once"
                     : "this single-node cluster has no replica to repair from: standing on its own log as it is "
                       "now; entries it had acknowledged before may be lost");
}

// --- inputs ---------------------------------------------------------------------------------------------------

void Raft::tick(Time now) {
  if (standing_ != Standing::member) {
    // Never stands: it asks where the cluster is instead, until it may vote again (maybe_rejoin).
    if (now >= next_standing_query_) query_standing(now);
    return;
  }
  if (!unconfirmed_.empty()) {
    if (role_ != Role::follower || leader_) {
      unconfirmed_.clear();  // an election is under way, or over: nothing left to wait for
    } else if (now >= next_standing_query_) {
      next_standing_query_ = now + config_.heartbeat_interval;
      for (const NodeId member : unconfirmed_) send(member, StandingQuery{}, hard_state_seq_);
    }
  }
  if (role_ != Role::leader) {
    // A lone candidate only waits for its own vote to become durable (on_persisted): standing again would
    // write a new term each time and, with a disk slower than the election timeout, never win.
    const bool lone_candidate = role_ == Role::candidate && quorum() == 1;
    if (now >= election_deadline_ && !lone_candidate) {
      start_election(now, /*transfer=*/false);
    } else if ((role_ == Role::pre_candidate || role_ == Role::candidate) && now >= next_vote_request_) {
      next_vote_request_ = now + config_.heartbeat_interval;
      for (const NodeId member : config_.members) {
        const bool answered =
            std::any_of(votes_.begin(), votes_.end(), [&](const auto& vote) { return vote.first == member; });
        if (!answered) request_vote(member);
      }
    }
    return;
  }
  if (now >= next_heartbeat_) {
    broadcast_heartbeats();
    next_heartbeat_ = now + config_.heartbeat_interval;
  }
  if (config_.check_quorum) {
    // Judged at every tick, not once a timeout: a leader cut off from the majority steps down one election timeout
    // after it last heard from enough followers, when their stickiness lapses and they may elect another, so that
    // its clients move on as soon as a new leader can exist (they are told it knows no leader).
    std::size_t active = 1;  // itself
    for (const Progress& progress : progress_)
      if (now - progress.last_heard <= config_.election_timeout_min) ++active;
    if (active < quorum()) {
      // Cut off from a majority: a newer leader may exist already. Stop answering as leader. It knows no live
      // leader now: it stands promptly, harmless where a newer leader lives (its followers keep to it).
      become_follower(term_, std::nullopt, now);
      schedule_prompt_election(now);
      return;
    }
  }
  if (transfer_target_ && now >= transfer_deadline_) transfer_target_.reset();
}

void Raft::step(const Message& message, Time now) {
  if (message.to != config_.id) return;
  if (std::find(config_.members.begin(), config_.members.end(), message.from) == config_.members.end()) return;
  if (message.from == config_.id) return;
  // No correct member reaches such a term (one election per election timeout); adopting it would let the next
  // election wrap the term around. A forged or corrupted message, dropped.
  if (message.term.value() >= kTermLimit) return;

  // Standing queries and answers are term-neutral: a node that lost its state may hold any term, and asking
  // must not disturb a working leader.
  if (std::holds_alternative<StandingQuery>(message.body)) {
    const bool founded_with_asker =
        std::find(founders_.begin(), founders_.end(), std::pair(message.from, message.boot)) != founders_.end();
    StandingAnswer answer{message.boot, standing_, role_ == Role::leader, last_index(), founded_with_asker};
    ready_.messages.push_back({Message{config_.id, message.from, term_, answer, boot_}, hard_state_seq_});
    return;
  }
  if (const auto* answer = std::get_if<StandingAnswer>(&message.body)) {
    handle_standing_answer(message, *answer, now);
    check_invariants();
    return;
  }

  if (message.term > term_) {
    if (const auto* request = std::get_if<VoteRequest>(&message.body)) {
      // Leader stickiness: while this node hears from a live leader, it does not help anyone unseat it.
      // A leadership transfer is the one exception.
      if (!request->transfer && in_leader_lease(now)) return;
      if (request->pre_vote) {
        handle_vote_request(message, *request, now);  // a pre-vote changes no one's term
        return;
      }
      become_follower(message.term, std::nullopt, now);
    } else if (const auto* response = std::get_if<VoteResponse>(&message.body);
               response != nullptr && response->pre_vote && response->granted) {
      // A granted pre-vote carries the term it was asked about: no term change.
    } else {
      const bool from_leader =
          std::holds_alternative<AppendRequest>(message.body) || std::holds_alternative<Heartbeat>(message.body) ||
          std::holds_alternative<SnapshotChunk>(message.body) || std::holds_alternative<TimeoutNow>(message.body);
      become_follower(message.term, from_leader ? std::optional<NodeId>(message.from) : std::nullopt, now);
    }
  } else if (message.term < term_) {
    // A leader or pre-candidate from an older term learns the current term from the answer and stands down.
    // Everything else from an older term is dropped.
    if (std::holds_alternative<AppendRequest>(message.body) || std::holds_alternative<Heartbeat>(message.body) ||
        std::holds_alternative<SnapshotChunk>(message.body)) {
      send(message.from, HeartbeatResponse{}, hard_state_seq_);
    } else if (const auto* request = std::get_if<VoteRequest>(&message.body); request != nullptr && request->pre_vote) {
      send(message.from, VoteResponse{false, true}, hard_state_seq_);
    }
    return;
  }

  std::visit(
      [&](const auto& body) {
        using Body = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<Body, VoteRequest>) {
          handle_vote_request(message, body, now);
        } else if constexpr (std::is_same_v<Body, VoteResponse>) {
          handle_vote_response(message, body, now);
        } else if constexpr (std::is_same_v<Body, AppendRequest>) {
          handle_append_request(message, body, now);
        } else if constexpr (std::is_same_v<Body, AppendResponse>) {
          handle_append_response(message, body, now);
        } else if constexpr (std::is_same_v<Body, Heartbeat>) {
          handle_heartbeat(message, body, now);
        } else if constexpr (std::is_same_v<Body, HeartbeatResponse>) {
          handle_heartbeat_response(message, now);
        } else if constexpr (std::is_same_v<Body, TimeoutNow>) {
          if (role_ == Role::follower && standing_ == Standing::member) become_candidate(now, /*transfer=*/true);
        } else if constexpr (std::is_same_v<Body, SnapshotChunk>) {
          handle_snapshot_chunk(message, body, now);
        } else if constexpr (std::is_same_v<Body, SnapshotAck>) {
          handle_snapshot_ack(message, body, now);
        }
      },
      message.body);
  check_invariants();
}

Result<LogIndex, ProposeError> Raft::propose(EntryType type, ByteSpan payload, Time /*now*/) {
  if (role_ != Role::leader) return unexpected(ProposeError::not_leader);
  if (transfer_target_) return unexpected(ProposeError::transferring);
  Entry entry;
  entry.index = last_index().next();
  entry.term = term_;
  entry.type = type;
  entry.payload = Payload(payload);
  entry.checksum = compute_checksum(entry.index, entry.term, entry.type, entry.payload);
  last_seq_ = log_.append(std::span<const Entry>(&entry, 1));
  replicate_pending_ = true;
  return entry.index;
}

Status<TransferError> Raft::transfer_leadership(NodeId target, Time now) {
  if (role_ != Role::leader) return unexpected(TransferError::not_leader);
  if (target == config_.id) return unexpected(TransferError::is_self);
  Progress* progress = progress_of(target);
  if (progress == nullptr) return unexpected(TransferError::unknown_member);
  transfer_target_ = target;
  transfer_deadline_ = now + config_.election_timeout_min;
  maybe_finish_transfer(*progress);
  if (progress->match < last_index()) replicate_to(*progress);
  return {};
}

std::optional<NodeId> Raft::best_transfer_target() const {
  if (role_ != Role::leader) return std::nullopt;
  // Heard from within an election timeout of the follower heard from last: the others may be gone.
  Time newest{};
  for (const Progress& progress : progress_) newest = std::max(newest, progress.last_heard);
  const auto recently_active = [&](const Progress& progress) {
    return newest - progress.last_heard < config_.election_timeout_min;
  };
  const Progress* best = nullptr;
  for (const Progress& progress : progress_) {
    if (best == nullptr ||
        std::pair(recently_active(progress), progress.match) > std::pair(recently_active(*best), best->match))
      best = &progress;
  }
  if (best == nullptr) return std::nullopt;
  return best->id;
}

void Raft::on_persisted(const PersistCompletion& completion, Time now) {
  COHORT_ASSERT(completion.seq <= last_seq_);
  // Count the entries only if the log still holds them: a completion for a suffix truncated since names an
  // (index, term) the log no longer has.
  const auto term = log_.term_at(completion.last_index);
  if (term && *term == completion.last_term) durable_index_ = completion.last_index;
  if (planted_bug() == 4) durable_index_ = std::min(completion.last_index, last_index());
  // A single-node candidate's own vote is the whole majority, counted once durable. (With peers, their votes
  // answer requests that left only after it was durable.)
  if (role_ == Role::candidate && quorum() == 1 && completion.seq >= hard_state_seq_) become_leader(now);
  if (role_ == Role::leader) maybe_commit();
  if (standing_ == Standing::recovering) maybe_rejoin();
  check_invariants();
}

void Raft::offer_snapshot(SnapshotPtr snapshot) {
  COHORT_ASSERT(snapshot == nullptr || snapshot->position.index <= commit_);
  snapshot_ = std::move(snapshot);
}

void Raft::compact(LogIndex up_to) {
  COHORT_ASSERT(snapshot_ != nullptr && up_to <= snapshot_->position.index);
  last_seq_ = log_.compact(up_to);
}

void Raft::take_ready(Ready& out) {
  if (role_ == Role::leader && replicate_pending_) broadcast_appends();
  replicate_pending_ = false;
  out.installed = std::move(ready_.installed);
  ready_.installed = nullptr;
  out.messages.clear();
  if (out.messages.capacity() < Ready::kReservedMessages) out.messages.reserve(Ready::kReservedMessages);
  out.messages.swap(ready_.messages);
  out.notices.clear();
  out.notices.swap(ready_.notices);
  out.commit = commit_;
}

// --- role changes ---------------------------------------------------------------------------------------------

std::optional<LogIndex> Raft::match_index(NodeId follower) const {
  for (const Progress& progress : progress_)
    if (progress.id == follower) return progress.match;
  return std::nullopt;
}

void Raft::start_election(Time now, bool transfer) {
  if (config_.pre_vote && !transfer)
    become_pre_candidate(now);
  else
    become_candidate(now, transfer);
}

void Raft::become_follower(Term term, std::optional<NodeId> leader, Time now) {
  // Matches count only towards the leader, and the term, they were made with.
  if (term > term_ || leader != leader_) leader_match_ = LogIndex{0};
  if (term > term_) set_term(term);
  role_ = Role::follower;
  leader_ = leader;
  votes_.clear();
  progress_.clear();
  transfer_target_.reset();
  replicate_pending_ = false;
  if (leader_)
    note_leader_contact(now);
  else
    reset_election_timer(now);
}

void Raft::become_pre_candidate(Time now) {
  role_ = Role::pre_candidate;
  leader_.reset();
  progress_.clear();
  votes_.assign(1, {config_.id, true});
  reset_election_timer(now);
  if (quorum() == 1) {
    become_candidate(now, false);
    return;
  }
  next_vote_request_ = now + config_.heartbeat_interval;
  for (const NodeId member : config_.members)
    if (member != config_.id) request_vote(member);
}

void Raft::become_candidate(Time now, bool transfer) {
  ++elections_started_;
  set_term(term_.next());
  vote_for(config_.id);  // durable before the requests leave: they wait for hard_state_seq_
  role_ = Role::candidate;
  leader_.reset();
  progress_.clear();
  votes_.assign(1, {config_.id, true});
  transfer_election_ = transfer;
  reset_election_timer(now);
  // Alone, it wins once its own vote is durable (on_persisted): leading a term that a crash could make it
  // forget would let it write a second, different entry at the same (index, term) after a restart.
  if (quorum() == 1) return;
  next_vote_request_ = now + config_.heartbeat_interval;
  for (const NodeId member : config_.members)
    if (member != config_.id) request_vote(member);
}

void Raft::request_vote(NodeId member) {
  COHORT_ASSERT(role_ == Role::pre_candidate || role_ == Role::candidate);
  COHORT_ASSERT(member != config_.id);
  if (role_ == Role::pre_candidate) {
    // Asks for the term it would stand in; its own term stays as it is until a majority agrees.
    ready_.messages.push_back(
        {Message{config_.id, member, term_.next(), VoteRequest{last_index(), last_term(), true, false}, boot_},
         hard_state_seq_});
    return;
  }
  // The same request again is harmless: a voter that granted it grants it again and writes nothing.
  send(member, VoteRequest{last_index(), last_term(), false, transfer_election_},
       planted_bug() == 3 ? 0 : hard_state_seq_);
}

void Raft::become_leader(Time now) {
  ++elections_won_;
  role_ = Role::leader;
  leader_ = config_.id;
  votes_.clear();
  transfer_target_.reset();
  progress_.clear();
  for (const NodeId member : config_.members) {
    if (member == config_.id) continue;
    Progress progress;
    progress.id = member;
    progress.next = last_index().next();
    progress.last_heard = now;  // a fresh leader gets one election timeout before check-quorum judges it
    progress_.push_back(std::move(progress));
  }
  next_heartbeat_ = now + config_.heartbeat_interval;
  // A no-op of its own term lets the leader commit, by the Figure 8 rule, everything before it.
  const auto appended = propose(EntryType::noop, {}, now);
  COHORT_ASSERT(appended.has_value());
  broadcast_appends();
  replicate_pending_ = false;
}

// --- vote handling --------------------------------------------------------------------------------------------

void Raft::handle_vote_request(const Message& message, const VoteRequest& request, Time now) {
  const bool can_vote = voted_for_ == message.from ||
                        (((planted_bug() == 2 && role_ == Role::follower) || !voted_for_) && !leader_) ||
                        (request.pre_vote && message.term > term_);
  // A node that may have forgotten a vote or an acknowledged entry helps no one win until it rejoins.
  const bool granted = can_vote && (standing_ == Standing::member || planted_bug() == 7) &&
                       log_up_to_date(request.last_index, request.last_term);
  if (granted && !request.pre_vote) {
    if (voted_for_ != message.from) vote_for(message.from);  // a repeated request rewrites nothing
    reset_election_timer(now);
  }
  // A granted pre-vote answers in the term asked about; everything else in this node's own term.
  const Term answer_term = granted && request.pre_vote ? message.term : term_;
  ready_.messages.push_back(
      {Message{config_.id, message.from, answer_term, VoteResponse{granted, request.pre_vote}, boot_},
       hard_state_seq_});
}

void Raft::handle_vote_response(const Message& message, const VoteResponse& response, Time now) {
  if (response.pre_vote ? role_ != Role::pre_candidate : role_ != Role::candidate) return;
  if (!response.pre_vote && message.term != term_) return;
  // A pre-vote is granted in the term asked about, term_ + 1: a grant in term_ answered an earlier round (asked
  // from term_ - 1, before this node stood and lost), late or duplicated, and must not count in this one.
  if (response.pre_vote && response.granted && message.term != term_.next()) return;
  const bool counted =
      std::any_of(votes_.begin(), votes_.end(), [&](const auto& v) { return v.first == message.from; });
  if (!counted) votes_.emplace_back(message.from, response.granted);
  const auto granted =
      static_cast<std::size_t>(std::count_if(votes_.begin(), votes_.end(), [](const auto& v) { return v.second; }));
  const std::size_t refused = votes_.size() - granted;
  if (granted >= quorum()) {
    if (role_ == Role::pre_candidate)
      become_candidate(now, false);
    else
      become_leader(now);
  } else if (refused >= quorum()) {
    become_follower(term_, std::nullopt, now);
  }
}

// --- replication: follower side -------------------------------------------------------------------------------

// Messages that only a second leader of this node's term, or a leader missing committed entries, could send
// (impossible between correct members) are dropped, not asserted on: they come from the network, and a node must
// not crash on a peer's bug. The simulator's checkers catch such violations among correct cores.
void Raft::handle_append_request(const Message& message, const AppendRequest& request, Time now) {
  if (role_ == Role::leader) return;  // another leader in our term
  if (role_ != Role::follower || leader_ != message.from) become_follower(term_, message.from, now);
  note_leader_contact(now);
  // An acknowledgement also says "I promised no higher term". A node that lost its state does not know which
  // terms it promised until it holds its vote floor: a leader of an older term could count its answer and commit
  // an entry that the leader it had voted for overwrites.
  if (!acknowledges()) return;

  // The previous entry must be one the sender could hold (index 0 has term 0), and the entries contiguous after
  // it, of terms no newer than the sender's, and intact. A malformed request is dropped, never asserted on.
  if (request.prev_term > message.term || (request.prev_index == LogIndex{0} && request.prev_term != Term{0})) return;
  LogIndex expected = request.prev_index.next();
  Term previous_term = request.prev_term;
  for (const Entry& entry : request.entries) {
    if (entry.index != expected || entry.term < previous_term || entry.term > message.term || !checksum_ok(entry))
      return;  // damaged or malformed in transit: drop; the leader resends
    expected = expected.next();
    previous_term = entry.term;
  }

  AppendResponse response;
  response.rejected_prev = request.prev_index;
  const LogIndex match{request.prev_index.value() + request.entries.size()};
  // Entries up to the base are covered by a snapshot, so committed: a correct leader's match them. Only those
  // after the base are checked; the one at the base (if sent) must have the base's term.
  LogIndex prev_index = request.prev_index;
  Term prev_term = request.prev_term;
  std::span<const Entry> entries(request.entries);
  if (const LogBase base = log_.base(); prev_index < base.index) {
    const std::uint64_t covered = base.index.value() - prev_index.value();
    if (covered < entries.size()) {
      if (entries[covered - 1].term != base.term) return;  // cannot be from a correct leader
      entries = entries.subspan(covered);
    } else {
      entries = {};
    }
    prev_index = base.index;
    prev_term = base.term;
  }
  if (prev_index > last_index()) {
    response.conflict_index = last_index().next();
    send(message.from, response, last_seq_);
    return;
  }
  const Term local_prev_term = term_at(prev_index);
  if (local_prev_term != prev_term) {
    // Everything committed matches a correct leader, so a conflict lies above commit_.
    if (prev_index <= commit_) return;
    LogIndex first = prev_index;
    while (first.prev() > commit_ && term_at(first.prev()) == local_prev_term) first = first.prev();
    response.conflict_term = local_prev_term;
    response.conflict_index = first;
    send(message.from, response, last_seq_);
    return;
  }

  // Skip what the log already holds; truncate at the first conflict; append the rest.
  std::size_t skip = 0;
  while (skip < entries.size()) {
    const Entry& entry = entries[skip];
    if (entry.index > last_index() || term_at(entry.index) != entry.term) break;
    ++skip;
  }
  if (skip < entries.size()) {
    const LogIndex first_new = entries[skip].index;
    if (first_new <= last_index()) {
      if (first_new <= commit_) return;  // a committed entry is never replaced
      last_seq_ = log_.truncate_after(first_new.prev());
      durable_index_ = std::min(durable_index_, first_new.prev());
    }
    last_seq_ = log_.append(entries.subspan(skip));
  }
  commit_ = std::max(commit_, std::min(request.commit, match));
  leader_match_ = std::max(leader_match_, match);
  response.success = true;
  response.match_index = match;
  // The acknowledgement claims durability of everything up to match: it waits for every write so far.
  send(message.from, response, last_seq_);
  if (standing_ == Standing::recovering) maybe_rejoin();
}

void Raft::handle_snapshot_chunk(const Message& message, const SnapshotChunk& chunk, Time now) {
  if (role_ == Role::leader) return;  // another leader in our term
  if (role_ != Role::follower || leader_ != message.from) become_follower(term_, message.from, now);
  note_leader_contact(now);
  if (!acknowledges()) return;
  // Malformed (a snapshot of a term newer than its sender's, or at index 0, or data beyond its size): dropped.
  if (chunk.position.term > message.term || chunk.position.index == LogIndex{0} || chunk.position.term == Term{0} ||
      chunk.offset > chunk.size || chunk.data.size() > chunk.size - chunk.offset)
    return;
  if (chunk.position.index <= commit_) {
    // Committed here already, so the log (or this node's own snapshot) matches the leader's up to there. (A late
    // chunk of a snapshot installed before: one of a later snapshot being received is kept.)
    if (receiving_ && receiving_->position.index <= commit_) receiving_.reset();
    leader_match_ = std::max(leader_match_, chunk.position.index);
    AppendResponse response;
    response.success = true;
    response.match_index = chunk.position.index;
    send(message.from, response, last_seq_);
    return;
  }
  const bool same = receiving_ && receiving_->position == chunk.position && receiving_->checksum == chunk.checksum &&
                    receiving_->size == chunk.size;
  if (!same) {
    if (chunk.offset != 0) {
      send(message.from, SnapshotAck{chunk.position, chunk.checksum, 0}, hard_state_seq_);
      return;
    }
    receiving_ = Receiving{chunk.position, chunk.size, chunk.checksum, {}, {}, 0};  // replaces any other one
  }
  Receiving& receiving = *receiving_;
  auto& bytes = receiving.bytes;
  if (chunk.offset == bytes.size()) {
    bytes.insert(bytes.end(), chunk.data.begin(), chunk.data.end());
    // The chunks that had come early now follow on (or overlap what is in, after a resend).
    while (!receiving.ahead.empty() && receiving.ahead.begin()->first <= bytes.size()) {
      auto early = receiving.ahead.extract(receiving.ahead.begin());
      receiving.ahead_bytes -= early.mapped().size();
      const std::uint64_t end = early.key() + early.mapped().size();
      if (end > bytes.size())
        bytes.insert(bytes.end(), early.mapped().end() - static_cast<std::ptrdiff_t>(end - bytes.size()),
                     early.mapped().end());
    }
  } else if (chunk.offset > bytes.size() && !chunk.data.empty() && !receiving.ahead.contains(chunk.offset) &&
             receiving.ahead_bytes + chunk.data.size() <= kMaxAheadBytes) {
    receiving.ahead_bytes += chunk.data.size();
    receiving.ahead.emplace(chunk.offset, chunk.data);
  }
  if (bytes.size() == receiving.size) {
    finish_snapshot(message.from);
    return;
  }
  send(message.from, SnapshotAck{chunk.position, chunk.checksum, bytes.size()}, hard_state_seq_);
}

void Raft::finish_snapshot(NodeId leader) {
  Receiving received = std::move(*receiving_);
  receiving_.reset();
  const LogBase position = received.position;
  if (snapshot_checksum(received.bytes) != received.checksum) {
    ready_.notices.push_back(
        fmt::format("the snapshot at index {} received from leader {} is damaged (checksum): "
                    "receiving it again",
                    position.index.value(), leader.value()));
    send(leader, SnapshotAck{position, received.checksum, 0}, hard_state_seq_);
    return;
  }
  if (log_.term_at(position.index) == position.term) {
    // The log holds the snapshot's position: it matches the leader's up to there (Log Matching), and the entries
    // are applied from the log as usual.
    commit_ = std::max(commit_, position.index);
  } else {
    auto snapshot = std::make_shared<Snapshot>(Snapshot{position, received.checksum, std::move(received.bytes)});
    if (installer_ == nullptr) {
      ready_.notices.push_back("a snapshot arrived but this node cannot install one (no installer)");
      return;
    }
    if (std::string problem = installer_->restore(*snapshot); !problem.empty()) {
      // The same bytes would fail again: the leader resends only after a few silent rounds, and an operator sees why.
      ready_.notices.push_back(fmt::format("cannot install the snapshot at index {} from leader {}: {}",
                                           position.index.value(), leader.value(), problem));
      return;
    }
    // Everything in the log is replaced. Entries this node acknowledged to this leader match its log, so the log
    // held the position if it had any; acknowledged entries of earlier leaders that were committed are in the
    // snapshot or in this leader's log after it.
    last_seq_ = log_.install(snapshot);
    commit_ = position.index;
    durable_index_ = std::min(durable_index_, position.index);
    snapshot_ = snapshot;
    ready_.installed = std::move(snapshot);
  }
  leader_match_ = std::max(leader_match_, position.index);
  AppendResponse response;
  response.success = true;
  response.match_index = position.index;
  send(leader, response, planted_bug() == 14 ? hard_state_seq_ : last_seq_);  // after the install is durable
  if (standing_ == Standing::recovering) maybe_rejoin();
}

void Raft::handle_heartbeat(const Message& message, const Heartbeat& heartbeat, Time now) {
  if (role_ == Role::leader) return;  // another leader in our term
  if (role_ != Role::follower || leader_ != message.from) become_follower(term_, message.from, now);
  note_leader_contact(now);
  if (!acknowledges()) return;  // nor keep a leader of an older term in place through its check-quorum
  // The leader sends min(its commit, our match): those entries are in our log, matching its own.
  commit_ = std::max(commit_, std::min(heartbeat.commit, last_index()));
  send(message.from, HeartbeatResponse{}, hard_state_seq_);
}

// --- replication: leader side ---------------------------------------------------------------------------------

Raft::Progress* Raft::progress_of(NodeId id) {
  for (auto& progress : progress_)
    if (progress.id == id) return &progress;
  return nullptr;
}

void Raft::handle_append_response(const Message& message, const AppendResponse& response, Time now) {
  if (role_ != Role::leader) return;
  Progress* progress = progress_of(message.from);
  if (progress == nullptr) return;
  const BootCheck boot = note_boot(*progress, message.boot);
  if (boot == BootCheck::stale) return;
  progress->last_heard = now;
  // The first acknowledgement of a new boot only starts the repair: the progress was just reset, and the probe the
  // restart sets off asks the follower where its log really ends.
  if (response.success && boot == BootCheck::restarted) {
    replicate_to(*progress);
    return;
  }

  if (response.success) {
    if (response.match_index > last_index()) return;  // cannot be from this term's log: ignore
    // The follower installed the snapshot (or held its position already): the log after it follows.
    if (progress->install && response.match_index >= progress->install->snapshot->position.index)
      progress->install.reset();
    auto& inflight = progress->inflight;
    inflight.erase(inflight.begin(), std::upper_bound(inflight.begin(), inflight.end(), response.match_index));
    if (response.match_index > progress->match) {
      progress->match = response.match_index;
      progress->next = std::max(progress->next, progress->match.next());
      maybe_commit();
    }
    if (progress->probing) {
      progress->probing = false;
      progress->inflight.clear();
      progress->next = progress->match.next();
    }
    maybe_finish_transfer(*progress);
    replicate_to(*progress);
    return;
  }

  // A refusal. Stale ones (for a request older than the one outstanding) are ignored, and so are refusals of a
  // request this leader cannot have sent (beyond its log): acting on one would point `next` past the log's end.
  if (response.rejected_prev > last_index() || progress->install) return;
  if (progress->probing ? response.rejected_prev != progress->next.prev() : response.rejected_prev <= progress->match)
    return;
  LogIndex next = response.conflict_index;
  if (response.conflict_term != Term{0}) {
    // If the leader has entries of the follower's conflicting term, the logs may agree up to its last one.
    // (Not before the base, whose terms are gone: the follower then gets the snapshot.)
    LogIndex probe = std::min(response.rejected_prev.prev(), last_index());
    const LogIndex base = log_.base().index;
    if (probe >= base) {
      while (probe > base && term_at(probe) > response.conflict_term) probe = probe.prev();
      if (probe > LogIndex{0} && term_at(probe) == response.conflict_term) next = probe.next();
    }
  }
  next = std::min(next, response.rejected_prev);
  progress->next = std::max(next, progress->match.next());
  progress->probing = true;
  progress->inflight.clear();
  replicate_to(*progress);
}

void Raft::handle_heartbeat_response(const Message& message, Time now) {
  if (role_ != Role::leader) return;
  Progress* progress = progress_of(message.from);
  if (progress == nullptr) return;
  if (note_boot(*progress, message.boot) == BootCheck::stale) return;
  progress->last_heard = now;
  if (progress->install) {
    // Chunks (or the answers to them) lost on the way (a dropped connection): after a few rounds without progress,
    // ask the follower where to resume.
    auto& install = *progress->install;
    if (++install.stalled_rounds >= 3) {
      install.stalled_rounds = 0;
      install.probing = true;
      send_snapshot_probe(*progress);
    }
    return;
  }
  // The follower is alive: a probe or pipelined requests lost on the way must not stall it forever.
  if (progress->probing)
    progress->inflight.clear();
  else if (progress->inflight.size() >= config_.max_inflight_appends)
    progress->inflight.erase(progress->inflight.begin());
  // A transfer target that is caught up but still answers as a follower may have lost its TimeoutNow: send it
  // again, or the transfer would stall (refusing proposals) until it times out.
  maybe_finish_transfer(*progress);
  if (progress->match >= last_index()) return;
  if (!progress->probing && progress->next > last_index()) {
    // Everything was sent, yet the follower lags: the request with the tail may be lost, and an idle leader
    // would never send it again. An empty request at the end of the log makes the follower confirm it, or
    // refuse it and so start the repair (etcd-io/raft does the same on a heartbeat response).
    send_append(*progress, /*send_empty=*/true);
    return;
  }
  replicate_to(*progress);
}

bool Raft::send_append(Progress& progress, bool send_empty) {
  if (progress.install || needs_snapshot(progress)) {
    send_snapshot_chunks(progress);
    return false;
  }
  if (progress.probing ? !progress.inflight.empty() : progress.inflight.size() >= config_.max_inflight_appends)
    return false;
  const LogIndex prev = progress.next.prev();
  AppendRequest request;
  if (!spare_entries_.empty()) {
    request.entries = std::move(spare_entries_.back());
    spare_entries_.pop_back();
  }
  request.prev_index = prev;
  request.prev_term = term_at(prev);
  request.commit = commit_;
  // Room for as many entries as may go, at once: a recycled vector too small for this batch grows once, not by
  // doublings (the byte limit may stop the batch sooner).
  if (progress.next <= last_index())
    request.entries.reserve(
        std::min<std::size_t>(config_.max_append_entries, last_index().value() - progress.next.value() + 1));
  std::size_t bytes = 0;
  for (LogIndex index = progress.next; index <= last_index(); index = index.next()) {
    const Entry& entry = log_.entry(index);
    if (!request.entries.empty() && (request.entries.size() >= config_.max_append_entries ||
                                     bytes + entry.payload.size() > config_.max_append_bytes))
      break;
    bytes += entry.payload.size();
    request.entries.push_back(entry);
  }
  if (request.entries.empty() && !send_empty) return false;
  const LogIndex last_sent{prev.value() + request.entries.size()};
  progress.inflight.push_back(last_sent);
  if (!progress.probing) progress.next = last_sent.next();
  send(progress.id, std::move(request), hard_state_seq_);
  return true;
}

void Raft::recycle(Message&& message) {
  auto* request = std::get_if<AppendRequest>(&message.body);
  if (request == nullptr || request->entries.capacity() == 0 || spare_entries_.size() >= kMaxSpareEntryVectors) return;
  request->entries.clear();  // the payloads go back to their pool now, not when the vector is reused
  spare_entries_.push_back(std::move(request->entries));
}

void Raft::send_snapshot_chunks(Progress& progress) {
  if (!progress.install) {
    // The driver offers a snapshot covering the base before it compacts; without one there is nothing to send.
    if (snapshot_ == nullptr) return;
    progress.install = Progress::Install{snapshot_};
    progress.probing = true;
    progress.inflight.clear();
    // First ask where to resume: the follower may hold part of this snapshot from an earlier leader or connection.
    send_snapshot_probe(progress);
    return;
  }
  auto& install = *progress.install;
  if (install.probing) return;
  const Snapshot& snapshot = *install.snapshot;
  const std::uint64_t size = snapshot.bytes.size();
  const std::uint64_t window = config_.snapshot_chunk_bytes * config_.max_inflight_snapshot_chunks;
  while (install.sent < size && install.sent - install.acked < window) {
    const std::uint64_t length = std::min<std::uint64_t>(config_.snapshot_chunk_bytes, size - install.sent);
    const auto* begin = snapshot.bytes.data() + install.sent;
    send(progress.id,
         SnapshotChunk{snapshot.position, size, snapshot.checksum, install.sent,
                       std::vector<std::byte>(begin, begin + length)},
         hard_state_seq_);
    install.sent += length;
  }
}

void Raft::send_snapshot_probe(Progress& progress) {
  const Snapshot& snapshot = *progress.install->snapshot;
  send(progress.id, SnapshotChunk{snapshot.position, snapshot.bytes.size(), snapshot.checksum, 0, {}}, hard_state_seq_);
}

void Raft::handle_snapshot_ack(const Message& message, const SnapshotAck& ack, Time now) {
  if (role_ != Role::leader) return;
  Progress* progress = progress_of(message.from);
  if (progress == nullptr) return;
  if (note_boot(*progress, message.boot) == BootCheck::stale) return;
  progress->last_heard = now;
  if (!progress->install) return;
  auto& install = *progress->install;
  const Snapshot& snapshot = *install.snapshot;
  if (ack.position != snapshot.position || ack.checksum != snapshot.checksum || ack.received > snapshot.bytes.size())
    return;  // about another snapshot (an earlier install), or malformed
  // Acknowledgements overtake one another on the way. What the follower holds of a snapshot only grows, or drops to
  // 0 when it lets it go (another snapshot, or a damaged one): any other one below what it acknowledged before is
  // stale. Taking it for a drop would send the window again, every chunk of which the follower acknowledges again,
  // some of those overtaking others in turn: a storm. (A loss is resent by the probe after rounds without progress.)
  if (!install.probing && ack.received < install.acked && ack.received != 0) return;
  if (!install.probing && ack.received == install.acked && install.acked < install.sent) {
    // The follower holds no more than before although more was sent: it dropped a chunk that did not start where it
    // stands, so one before it was lost or overtaken, and everything sent after that is gone too. Send again from
    // where it stands, at once rather than after rounds of silence; once per window, so that the answers to the
    // chunks still on the way do not set off more of the same.
    if (install.acked >= install.resent_up_to) {
      install.resent_up_to = install.sent;
      install.sent = install.acked;
      send_snapshot_chunks(*progress);
    }
    return;
  }
  // The answer to a probe says where to go on; so does one that went back (the follower dropped what it had).
  if (install.probing || ack.received < install.acked) install.sent = ack.received;
  install.probing = false;
  install.acked = ack.received;
  install.sent = std::max(install.sent, install.acked);
  install.stalled_rounds = 0;
  send_snapshot_chunks(*progress);
}

void Raft::replicate_to(Progress& progress) {
  if (progress.probing) {
    send_append(progress, /*send_empty=*/true);
    return;
  }
  while (progress.next <= last_index() && send_append(progress, false)) {
  }
}

void Raft::broadcast_appends() {
  for (auto& progress : progress_) replicate_to(progress);
}

void Raft::broadcast_heartbeats() {
  for (const auto& progress : progress_)
    send(progress.id, Heartbeat{std::min(progress.match, commit_)}, hard_state_seq_);
}

void Raft::maybe_commit() {
  // Called on every acknowledgement: reuses one buffer, sized for the membership when the core was made.
  auto& matches = match_scratch_;
  matches.clear();
  matches.push_back(durable_index_);  // the leader counts its own log only once durable
  for (const auto& progress : progress_) matches.push_back(progress.match);
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const LogIndex candidate = matches[quorum() - 1];
  // Figure 8: only an entry of the leader's own term is committed by counting replicas; earlier ones follow.
  if (candidate > commit_ && (planted_bug() == 1 || term_at(candidate) == term_)) commit_ = candidate;
}

void Raft::maybe_finish_transfer(Progress& progress) {
  if (transfer_target_ == progress.id && progress.match == last_index())
    send(progress.id, TimeoutNow{}, hard_state_seq_);
}

// --- standing -------------------------------------------------------------------------------------------------
// docs/consensus.md, "Rejoining after state loss", has the argument; in short: a node that may have forgotten a
// vote or an acknowledged entry asks every other member where the cluster is. It takes the highest term a
// majority of members in good standing report as a term it may have voted in (kForgottenVote), and votes again
// only once its log durably holds what the leader of that term (or of a later one) held after this node restarted:
// every entry this node could have acknowledged in its earlier life, committed or not.

Raft::BootCheck Raft::note_boot(Progress& progress, std::uint64_t boot) {
  if (boot == progress.boot) return BootCheck::same;
  // Sent before the follower restarted, and arriving late: what it claims may be gone. (Boots are ordered: with
  // unordered ones, such a late message seen after the new life's first one would pass for a restart, and the live
  // life's answers would then be dropped as stale for the rest of the term.)
  if (boot < progress.boot) return BootCheck::stale;
  const bool first = progress.boot == 0;
  if (!first && planted_bug() != 8) {
    // The follower restarted: what it acknowledged before may be lost (a replaced or damaged disk). Start over
    // from its real log end; the first probe's refusal says where that is.
    progress.match = LogIndex{0};
    progress.next = last_index().next();
    progress.probing = true;
    progress.inflight.clear();
    progress.install.reset();
  }
  progress.boot = boot;
  return first ? BootCheck::same : BootCheck::restarted;
}

void Raft::query_standing(Time now) {
  next_standing_query_ = now + config_.heartbeat_interval;
  for (const NodeId member : config_.members)
    if (member != config_.id) send(member, StandingQuery{}, hard_state_seq_);
}

void Raft::handle_standing_answer(const Message& message, const StandingAnswer& answer, Time now) {
  if (answer.asker_boot != boot_) return;
  if (standing_ == Standing::member) {
    // A new cluster's member waits for every other member to be one too before it stands promptly.
    if (answer.standing != Standing::member) return;
    const auto it = std::find(unconfirmed_.begin(), unconfirmed_.end(), message.from);
    if (it == unconfirmed_.end()) return;
    unconfirmed_.erase(it);
    if (unconfirmed_.empty() && role_ == Role::follower && !leader_) schedule_prompt_election(now);
    return;
  }
  if (answer.founded_with_asker) {
    // This life was one of the empty members that a member counted when it made the cluster new: it started empty
    // and has forgotten nothing since. (Recovering, it heard of the new cluster's history first: the race that
    // join_new_cluster makes rare.)
    set_standing(Standing::member,
                 fmt::format("node {} made this cluster new counting this node, as it is now, among its empty members",
                             message.from.value()));
    join_new_cluster(now);
    return;
  }
  auto it = std::find_if(answers_.begin(), answers_.end(), [&](const Answer& a) { return a.from == message.from; });
  if (it == answers_.end()) it = answers_.insert(answers_.end(), Answer{message.from, {}, {}, false, {}, 0});
  // A leader's first answer in its term is the catch-up target: anything this node's earlier life acknowledged
  // was in that leader's log by then. A later answer would move the target on with every new entry.
  const bool same_leadership = it->leader && answer.leader && it->term == message.term;
  const LogIndex target = same_leadership ? it->last_index : answer.last_index;
  *it = Answer{message.from, message.term, answer.standing, answer.leader, target, message.boot};
  decide_standing(now);
}

void Raft::decide_standing(Time now) {
  const std::size_t others = config_.members.size() - 1;
  const std::size_t majority_of_others = quorum();  // f + 1 of the 2f others
  if (standing_ == Standing::fresh) {
    const bool history = std::any_of(answers_.begin(), answers_.end(),
                                     [](const Answer& a) { return a.term != Term{0} || a.last_index != LogIndex{0}; });
    if (!history) {
      // A cluster with a history had a majority vote once, in a term above 0; a node that lags may still be empty,
      // but at most a minority forgets. So only when every other member is without history, too, is the cluster
      // new (or lost beyond repair, in which case its survivors will refuse our incarnation).
      if (answers_.size() == others) {
        // Remembered for the others (the fresh ones): one of them may hear from a member of this new cluster only
        // after its first election, see a history, and take itself for a node that lost its state. That node
        // would then wait for every member before voting again, and with the first leader gone, stall the cluster.
        founders_.clear();
        for (const Answer& answer : answers_)
          if (answer.standing == Standing::fresh) founders_.emplace_back(answer.from, answer.boot);
        set_standing(Standing::member,
                     fmt::format("all {} other members are as new as this node: this is a new cluster", others));
        join_new_cluster(now);
      }
      return;
    }
    set_standing(Standing::recovering,
                 "the data directory is empty but the cluster has a history: this node rejoins it as a recovering "
                 "node (it votes again once it has caught up)");
  }
  Term highest = term_;
  std::size_t members = 0;
  for (const Answer& answer : answers_) {
    highest = std::max(highest, answer.term);
    if (answer.standing == Standing::member) ++members;
  }
  // Every other member must have answered: a term this node voted in may be known, besides this node, only to
  // its candidate while that election is still under way (with five nodes or more, f + 1 answers can miss it).
  if (answers_.size() < others) return;
  if (members >= majority_of_others) {
    if (!vote_floor_ || highest > *vote_floor_) {
      // Any term this node voted or acknowledged in, some other member holds durably, unless that member lost
      // its state too, and then the election it stood in died with it.
      vote_floor_ = highest;
      if (term_ < highest) set_term(highest);
      if (!voted_for_) vote_for(kForgottenVote);
    }
    maybe_rejoin();
    return;
  }
  {
    // Every member answered and fewer than a majority are whole: no one can repair anyone. Stand on the logs
    // as they are; Raft's election picks the most complete of a majority.
    if (term_ < highest) set_term(highest);
    if (!voted_for_) vote_for(kForgottenVote);
    set_standing(Standing::member,
                 fmt::format("every member answered and only {} of {} are whole: no quorum can repair this node, "
                             "so it stands on its log as it is; entries acknowledged before may be lost",
                             members, config_.members.size()));
    if (!leader_) schedule_prompt_election(now);
  }
}

void Raft::join_new_cluster(Time now) {
  // No leader yet (every member is new). Standing before every other member knows it is one could elect a leader
  // that a member still fresh hears of first: it would take the history for one it forgot, and rejoin as a recovering
  // node, which votes again only once every member answers. With that first leader gone, the cluster would stall. So
  // it stands promptly (each member after its own random delay) once every other member is a member, or after a
  // whole election timeout if one of them does not say so (down again, or slow).
  unconfirmed_.clear();
  for (const NodeId member : config_.members)
    if (member != config_.id) unconfirmed_.push_back(member);
  reset_election_timer(now);
  if (unconfirmed_.empty()) schedule_prompt_election(now);
  next_standing_query_ = now;
}

void Raft::maybe_rejoin() {
  if (standing_ != Standing::recovering || !vote_floor_ || role_ != Role::follower || !leader_) return;
  if (term_ < *vote_floor_) return;
  const LogIndex held = std::min(leader_match_, durable_index_);
  if (held == LogIndex{0} || held < log_.base().index) return;
  bool caught_up = false;
  if (term_ > *vote_floor_) {
    // A leader elected without this node's vote holds every entry that could be committed, as of its election;
    // an entry of its own term in our log proves we hold all of that.
    caught_up = term_at(held) == term_;
  } else {
    // The leader of the floor's term may still count acknowledgements this node sent before it restarted: hold
    // everything that leader held when it answered this life's query.
    const auto it = std::find_if(answers_.begin(), answers_.end(),
                                 [&](const Answer& a) { return a.from == *leader_ && a.leader && a.term == term_; });
    caught_up = it != answers_.end() && held >= it->last_index;
  }
  if (!caught_up) return;
  set_standing(Standing::member, fmt::format("caught up with leader {} of term {} at index {}: votes again",
                                             leader_->value(), term_.value(), held.value()));
}

void Raft::set_standing(Standing standing, std::string notice) {
  standing_ = standing;
  if (standing == Standing::member) {
    answers_.clear();
    vote_floor_.reset();
  }
  persist_hard_state();
  ready_.notices.push_back(std::move(notice));
}

// --- helpers --------------------------------------------------------------------------------------------------

void Raft::set_term(Term term) {
  COHORT_ASSERT(term > term_);
  term_ = term;
  voted_for_.reset();
  persist_hard_state();
}

void Raft::vote_for(NodeId candidate) {
  COHORT_ASSERT(planted_bug() == 2 || !voted_for_ || *voted_for_ == candidate);  // one vote per term
  voted_for_ = candidate;
  persist_hard_state();
}

void Raft::persist_hard_state() {
  hard_state_seq_ = log_.save_hard_state(HardState{term_, voted_for_, standing_});
  last_seq_ = hard_state_seq_;
}

void Raft::send(NodeId to, Message::Body body, PersistSeq after) {
  ready_.messages.push_back({Message{config_.id, to, term_, std::move(body), boot_}, after});
}

void Raft::reset_election_timer(Time now) {
  const auto span = static_cast<std::uint64_t>((config_.election_timeout_max - config_.election_timeout_min).count());
  election_deadline_ = now + config_.election_timeout_min + Duration(static_cast<Duration::rep>(random_.below(span)));
}

Duration Raft::random_spread() {
  const auto spread =
      static_cast<std::uint64_t>((kPromptElectionSpreadHeartbeats * config_.heartbeat_interval).count());
  return Duration(static_cast<Duration::rep>(random_.below(spread)));
}

void Raft::schedule_prompt_election(Time now) {
  if (!prompt_elections()) {
    reset_election_timer(now);
    return;
  }
  election_deadline_ = now + random_spread();
}

void Raft::note_leader_contact(Time now) {
  last_leader_contact_ = now;
  if (!prompt_elections()) {
    reset_election_timer(now);
    return;
  }
  // Not before election_timeout_min of silence: until then the leader's other followers would not grant a pre-vote
  // (stickiness), and a slow heartbeat must not set off an election. The random delay keeps the followers of a
  // leader that died from standing together.
  election_deadline_ = now + config_.election_timeout_min + random_spread();
}

bool Raft::in_leader_lease(Time now) const {
  if (!config_.check_quorum) return false;
  if (role_ == Role::leader) return true;  // check-quorum steps it down once it loses the majority
  return leader_.has_value() && now - last_leader_contact_ < config_.election_timeout_min;
}

bool Raft::log_up_to_date(LogIndex index, Term term) const {
  const Term mine = last_term();
  return term > mine || (term == mine && index >= last_index());
}

Term Raft::last_term() const { return term_at(last_index()); }

Term Raft::term_at(LogIndex index) const {
  const auto term = log_.term_at(index);
  COHORT_ASSERT(term.has_value());
  return *term;
}

void Raft::check_invariants() const {
  COHORT_ASSERT(commit_ <= last_index());
  COHORT_ASSERT(durable_index_ <= last_index());
  COHORT_ASSERT(role_ != Role::leader || leader_ == config_.id);
  COHORT_ASSERT(role_ != Role::candidate || voted_for_ == config_.id);
  COHORT_ASSERT(standing_ == Standing::member || role_ == Role::follower);
}

}  // namespace cohort::consensus
