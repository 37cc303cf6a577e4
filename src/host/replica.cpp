#include "host/replica.h"

#include <algorithm>

#include "common/assert.h"

namespace cohort::host {

const char* to_string(ClientError error) noexcept {
  switch (error) {
    case ClientError::not_leader: return "not the leader";
    case ClientError::transferring: return "leadership transfer under way";
  }
  return "unknown";
}

namespace {

// The snapshot's applied index, if it is one the log holds with the snapshot's term: then Raft starts knowing it is
// committed (the host applied it), and the host restores it.
LogIndex usable_snapshot_index(const consensus::LogStore& log, const std::optional<ByteSpan>& snapshot) {
  if (!snapshot) return LogIndex{};
  const auto position = ServiceHost::snapshot_position(*snapshot);
  if (!position || position->first > log.last_index() || log.term_at(position->first) != position->second)
    return LogIndex{};
  return position->first;
}

}  // namespace

const char* to_string(StartPath path) noexcept {
  switch (path) {
    case StartPath::replay: return "replay";
    case StartPath::restore: return "restore";
    case StartPath::adopt: return "adopt";
    case StartPath::repair: return "repair";
  }
  return "unknown";
}

StartPath prepare_start(consensus::LogStore& log, std::optional<consensus::LogBase> snapshot) {
  const consensus::LogBase base = log.base();
  if (snapshot && snapshot->index >= base.index) {
    if (snapshot->index > log.last_index()) {
      // The current term never runs behind the log's last entry: a node elected in an older term would append after
      // the snapshot's position entries of a lower term. (The metadata that said so was lost with the tail, or the
      // directory holds a snapshot file and nothing else.) A new term with no vote in it is always safe to take.
      // Raised first: a crash between the two writes then leaves a higher term and the old log, never a log whose
      // last term is above the metadata's (which recovery refuses as damaged metadata).
      if (consensus::HardState state = log.hard_state(); state.term < snapshot->term) {
        state.term = snapshot->term;
        state.voted_for.reset();
        (void)log.save_hard_state(state);
      }
      (void)log.reset(snapshot->index, snapshot->term);
      return StartPath::adopt;
    }
    if (log.term_at(snapshot->index) == snapshot->term) return StartPath::restore;
  }
  if (base.index == LogIndex{0}) return StartPath::replay;
  consensus::HardState state = log.hard_state();
  state.standing = consensus::Standing::recovering;
  (void)log.save_hard_state(state);
  (void)log.reset(LogIndex{0}, Term{0});
  return StartPath::repair;
}

Replica::Replica(ReplicaConfig config, consensus::LogStore& log, Service& service, std::uint64_t seed, Time mono,
                 ClusterTime wall, std::optional<ByteSpan> snapshot)
    : config_(std::move(config)),
      log_(log),
      raft_(config_.raft, log, seed, mono, usable_snapshot_index(log, snapshot)),
      host_(service, config_.limits),
      random_(seed ^ 0x494E4341524E4154ULL),
      wall_(wall),
      wall_mono_(mono),
      role_(raft_.role()),
      term_(raft_.term()) {
  raft_.set_installer(this);
  if (snapshot) {
    if (usable_snapshot_index(log_, snapshot) == LogIndex{}) {
      snapshot_problem_ = "the log does not hold the snapshot's position with its term";
    } else if (auto restored = host_.restore(*snapshot); !restored) {
      snapshot_problem_ = restored.error();
    } else {
      return;
    }
  }
  // Entries up to a base are gone: only a snapshot can stand for them. (prepare_start sees to it, unless the
  // snapshot it was given passed its checksum and still does not decode, say after a change of layout.)
  if (log_.base().index != LogIndex{0}) {
    usable_ = false;
    return;
  }
  host_.start();
}

std::string Replica::restore(const consensus::Snapshot& snapshot) {
  const auto position = ServiceHost::snapshot_position(snapshot.bytes);
  if (!position || position->first != snapshot.position.index || position->second != snapshot.position.term)
    return "the snapshot's contents are not at the position it was sent for";
  if (auto restored = host_.restore(snapshot.bytes); !restored) return restored.error();
  return {};
}

void Replica::tick(Time mono, ClusterTime wall) {
  wall_ = wall;
  wall_mono_ = mono;
  raft_.tick(mono);
  after_input(mono);
  leader_duties(mono);
}

void Replica::step(const consensus::Message& message, Time mono) {
  raft_.step(message, mono);
  after_input(mono);
}

void Replica::on_persisted(const consensus::PersistCompletion& completion, Time mono) {
  raft_.on_persisted(completion, mono);
  after_input(mono);
}

void Replica::after_input(Time mono) {
  if (raft_.role() == role_ && raft_.term() == term_) return;
  const bool new_leadership =
      raft_.role() == consensus::Role::leader && (role_ != consensus::Role::leader || raft_.term() != term_);
  role_ = raft_.role();
  term_ = raft_.term();
  firings_in_flight_.clear();
  expiries_in_flight_.clear();
  bootstrap_proposed_ = false;
  renewal_proposed_ = false;
  if (new_leadership) clock_.lead(std::max(last_stamp_in_log(), host_.last_stamp()), wall_ + (mono - wall_mono_), mono);
  switch (role_) {
    case consensus::Role::leader: host_.set_role(ClusterRole::leader); break;
    case consensus::Role::follower: host_.set_role(ClusterRole::follower); break;
    case consensus::Role::pre_candidate:
    case consensus::Role::candidate: host_.set_role(ClusterRole::candidate); break;
  }
}

ClusterTime Replica::last_stamp_in_log() const {
  // The newest stamped entry: only no-ops (one per term without commands) lie after it. An entry that does not
  // decode is skipped when applied, its stamp with it, so it does not set the floor either.
  for (LogIndex i = log_.last_index(); i >= log_.first_index() && i.value() > 0; i = i.prev()) {
    const consensus::Entry& entry = log_.entry(i);
    if (entry.type != consensus::EntryType::command) continue;
    if (const auto decoded = decode_entry(entry.payload)) return decoded->stamp;
  }
  return host_.last_stamp();
}

ClusterTime Replica::stamp(Time mono) {
  // The applied state ahead of this leader's clock means an entry was stamped ahead of it (only a bug or a
  // damaged clock writes one; the host applied it as written). The clock moves up to it, so that what this leader
  // appends next does not go back: each such entry would be a stamp_went_back fault, applied at the last stamp.
  if (host_.last_stamp() > clock_.now(mono)) clock_.lead(host_.last_stamp(), ClusterTime{0}, mono);
  return clock_.now(mono);
}

void Replica::leader_duties(Time mono) {
  if (raft_.role() != consensus::Role::leader) return;
  if (!renewal_proposed_) {
    // Right after the no-op, a stamped entry of this term: applying it renews every session (service_host.cpp).
    encode_activity(scratch_, stamp(mono), {});
    if (propose(mono).has_value()) renewal_proposed_ = true;
  }
  if (!leading_current()) return;
  if (!host_.incarnation().known() && !bootstrap_proposed_) {
    const Id128 incarnation{random_.next() | 1U, random_.next()};
    // The initial configuration goes with it, so a later change of membership can be judged against the log.
    std::vector<std::uint32_t> members;
    members.reserve(config_.raft.members.size());
    for (const NodeId id : config_.raft.members) members.push_back(id.value());
    std::sort(members.begin(), members.end());
    encode_bootstrap(scratch_, stamp(mono), incarnation, members);
    if (propose(mono).has_value()) bootstrap_proposed_ = true;
  }
  host_.due_timers(stamp(mono), due_, config_.max_timer_firings_per_tick);
  // Firings already applied, or no longer pending, leave the in-flight set.
  std::erase_if(firings_in_flight_,
                [&](const auto& firing) { return std::find(due_.begin(), due_.end(), firing) == due_.end(); });
  for (const auto& firing : due_) {
    if (firings_in_flight_.contains(firing)) continue;
    encode_timer(scratch_, stamp(mono), firing.first, firing.second);
    if (!propose(mono).has_value()) break;
    firings_in_flight_.insert(firing);
  }
  expire_idle_sessions(mono);
}

void Replica::hold_expiry_until(Time mono) { expiry_held_until_ = std::max(expiry_held_until_, mono); }

void Replica::expire_idle_sessions(Time mono) {
  if (mono < expiry_held_until_) return;
  // Only from a state that holds this term's renewal: before it, every session's activity is from before the
  // election, and a client on its way back would be expired for the cluster's own outage. (Applying re-checks.)
  if (host_.renewed_term() != raft_.term()) return;
  const ClusterTime now = stamp(mono);
  const auto timeout = std::chrono::duration_cast<ClusterTime>(config_.session_timeout);
  if (now < ClusterTime{0} + timeout) return;
  host_.idle_sessions(now - timeout, idle_, config_.max_expiries_per_tick);
  std::erase_if(expiries_in_flight_,
                [&](const auto& expiry) { return std::find(idle_.begin(), idle_.end(), expiry) == idle_.end(); });
  for (const auto& [session, idle_since] : idle_) {
    if (expiries_in_flight_.contains({session, idle_since})) continue;
    encode_session_close(scratch_, now, session, CloseReason::timeout, idle_since);
    if (!propose(mono).has_value()) break;
    expiries_in_flight_.emplace(session, idle_since);
  }
}

// Raft refuses a proposal at a non-leader (not_leader) or during a transfer: the client requests below rely on it.
Result<LogIndex, ClientError> Replica::propose(Time mono) {
  auto index = raft_.propose(consensus::EntryType::command, scratch_, mono);
  if (index.has_value()) return *index;
  return unexpected(index.error() == consensus::ProposeError::transferring ? ClientError::transferring
                                                                           : ClientError::not_leader);
}

Result<LogIndex, ClientError> Replica::open_session(Id128 client, Time mono, SessionId resume) {
  encode_session_open(scratch_, stamp(mono), client, resume);
  return propose(mono);
}

Result<LogIndex, ClientError> Replica::note_activity(std::span<const SessionId> sessions, Time mono) {
  Result<LogIndex, ClientError> last = unexpected(ClientError::not_leader);
  do {
    const std::size_t count = std::min(sessions.size(), kMaxActivitySessions);
    encode_activity(scratch_, stamp(mono), sessions.first(count));
    last = propose(mono);
    if (!last.has_value()) return last;
    sessions = sessions.subspan(count);
  } while (!sessions.empty());
  return last;
}

Result<LogIndex, ClientError> Replica::ingress(SessionId session, std::uint64_t seq, ByteSpan message, Time mono) {
  // An oversized message is not appended (it could outgrow the peers' frames); a marker in its place consumes
  // its seq with the fate "rejected", so the messages after it do not find a gap.
  if (message.size() > config_.limits.max_message_size)
    encode_ingress_refused(scratch_, stamp(mono), session, seq);
  else
    encode_ingress(scratch_, stamp(mono), session, seq, message);
  return propose(mono);
}

Result<LogIndex, ClientError> Replica::withdraw(SessionId session, std::uint64_t seq, Time mono) {
  encode_ingress_refused(scratch_, stamp(mono), session, seq);
  return propose(mono);
}

Result<LogIndex, ClientError> Replica::close_session(SessionId session, Time mono) {
  encode_session_close(scratch_, stamp(mono), session, CloseReason::client_closed);
  return propose(mono);
}

void Replica::take_ready(consensus::Ready& ready) {
  raft_.take_ready(ready);
  COHORT_ASSERT(ready.commit <= log_.last_index());
  // Bounded per call: the driver calls again (the next loop turn) while applied_index() < commit_index(). A call also
  // ends after an entry that opened (or resumed) a session: its gateway resends the session's egress window as of
  // that entry, so no later entry of the same call may evict from the window what the client has not seen.
  for (std::size_t n = 0; n < config_.max_apply_per_ready && host_.applied_index() < ready.commit; ++n) {
    host_.apply(log_.entry(host_.applied_index().next()));
    if (!host_.outputs().empty() && std::holds_alternative<SessionOpened>(host_.outputs().back())) break;
  }
}

}  // namespace cohort::host
