#include "host/service_host.h"

#include <algorithm>
#include <array>
#include <exception>
#include <new>
#include <utility>

#include <fmt/format.h>
#include <xxhash.h>

#include "common/assert.h"
#include "common/planted_bug.h"

// Planted bugs, for the simulator's self-test only (common/planted_bug.h; see consensus/raft.cpp):
//   9: a new leader's first entry does not renew the sessions' activity (an expiry during the no-op window)
//  10: the duplicate check lets a resent copy of the last applied seq through: an ingress applied twice

namespace cohort::host {

ServiceHost::ServiceHost(Service& service, HostLimits limits) : service_(service), limits_(limits) {}

void ServiceHost::start() {
  COHORT_ASSERT(!started_);
  started_ = true;
  service_.on_start(*this, std::nullopt);
}

void ServiceHost::set_role(ClusterRole role) {
  if (role == role_) return;
  role_ = role;
  service_.on_role_change(*this, role);
}

template <typename Call>
void ServiceHost::call_service(const char* callback, Call&& call) {
  // Whatever the callback did through Cluster before it threw (egress, timers, closes) stands, and so does
  // whatever it did to its own state: the host cannot undo either. Every replica is left alike as long as the
  // service is deterministic, throwing too (service.h).
  try {
    std::forward<Call>(call)();
  } catch (const std::bad_alloc&) {
    // This process's condition, not the entry's: skipped here and applied elsewhere, the replicas would part
    // silently. The message is formatted without allocating.
    std::array<char, 256> message{};
    const auto written = fmt::format_to_n(message.data(), message.size(),
                                          "out of memory in Service::{} while applying committed entry {} (term {}); "
                                          "a replica cannot skip what the others apply, so it stops (a restart "
                                          "replays the entry)",
                                          callback, applied_.value(), applied_term_.value());
    fatal_error(std::string_view(message.data(), std::min(written.size, message.size())));
  } catch (const std::exception& error) {
    if (entry_failures_++ == 0) entry_failure_ = fmt::format("Service::{} threw: {}", callback, error.what());
  } catch (...) {
    if (entry_failures_++ == 0)
      entry_failure_ = fmt::format("Service::{} threw an exception not derived from std::exception", callback);
  }
}

void ServiceHost::record_fault(const consensus::Entry& entry, EntryFault fault, std::string detail) {
  switch (fault) {
    case EntryFault::undecodable: ++fault_counts_.undecodable; break;
    case EntryFault::stamp_went_back: ++fault_counts_.stamp_went_back; break;
    case EntryFault::service_threw: ++fault_counts_.service_threw; break;
  }
  last_fault_ = EntryFaultReport{entry.index, entry.term, fault, std::move(detail)};
  if (fault_reports_.size() < kMaxPendingFaultReports)
    fault_reports_.push_back(*last_fault_);
  else
    ++fault_reports_dropped_;
}

void ServiceHost::apply(const consensus::Entry& entry) {
  COHORT_ASSERT(started_);
  COHORT_ASSERT(entry.index == applied_.next());
  COHORT_ASSERT(entry.term >= applied_term_);
  applied_ = entry.index;
  applied_term_ = entry.term;
  if (entry.type == consensus::EntryType::command) apply_command(entry);
}

void ServiceHost::apply_command(const consensus::Entry& entry) {
  auto decoded = decode_entry(entry.payload);
  if (!decoded) {
    // It passed every checksum, so every replica holds these bytes and, running the same build, fails here alike
    // (a bug, or damage before the leader computed the checksum). Skipped: nothing in it can be trusted, its stamp
    // included. Replicas of builds that disagree on what decodes would part here, so a new entry kind must wait
    // until every member's build knows it.
    record_fault(entry, EntryFault::undecodable, fmt::format("not a valid cluster entry: {}", decoded.error()));
    return;
  }
  const DecodedEntry& e = *decoded;
  // Every leader stamps from max(last stamp in its log, its clock) onwards, so stamps never decrease; if one does
  // (a bug, a damaged leader clock), the entry applies at the last stamp: cluster time never goes back, which
  // services rely on, and the entry's own effect (a message, an open, a firing) is not lost.
  if (e.stamp < stamp_)
    record_fault(entry, EntryFault::stamp_went_back,
                 fmt::format("stamp {} ns is {} ns below the last stamp {} ns; applied at the last stamp",
                             e.stamp.count(), (stamp_ - e.stamp).count(), stamp_.count()));
  else
    stamp_ = e.stamp;
  // A new leader's first stamped entry (it appends one right after its no-op): every session's activity is renewed
  // before the entry's own effect, so a close by timeout decided from before it finds the session no longer idle.
  // A cluster outage thus never expires the sessions whose clients are on their way back.
  if (entry.term > renewed_term_) {
    renewed_term_ = entry.term;
    if (planted_bug() != 9) renew_all(stamp_);
  }
  evict_tombstones();
  switch (e.kind) {
    case EntryKind::bootstrap:
      if (!incarnation_.known()) {
        incarnation_ = e.id;
        initial_members_ = member_ids(e);
      }
      break;
    case EntryKind::session_open: apply_open(entry, e); break;
    case EntryKind::activity: apply_activity(e); break;
    case EntryKind::session_close: {
      const auto it = sessions_.find(e.session);
      if (it == sessions_.end()) break;  // closed already (a decision appended twice, or a late client close)
      // A timeout is decided from the leader's applied state, which may lag its log: applied only if the session
      // is still idle since the activity the decision saw.
      if (e.reason == CloseReason::timeout && it->second.last_activity != e.idle_since) break;
      close(e.session, e.reason);
      break;
    }
    case EntryKind::ingress:
    case EntryKind::ingress_refused: {
      const auto it = sessions_.find(e.session);
      if (it == sessions_.end()) {
        outputs_.emplace_back(Rejected{e.session, e.seq, 0, RejectReason::unknown_session});
        break;
      }
      Session& session = it->second;
      const bool duplicate = planted_bug() == 10 ? e.seq < session.last_seq : e.seq <= session.last_seq;
      if (duplicate) {  // a duplicate (a resend after a lost ack): applied once already
        outputs_.emplace_back(Applied{e.session, session.last_seq, entry.index});
        break;
      }
      if (e.seq > session.last_seq + 1) {  // a message before it never reached the log: not a fate
        outputs_.emplace_back(Rejected{e.session, e.seq, session.last_seq + 1, RejectReason::gap});
        break;
      }
      session.last_seq = e.seq;
      // The leader's choice is in the log (a message, or a refusal in its place), so every replica decides alike
      // whatever its own configured limit.
      if (e.kind == EntryKind::ingress_refused) {
        // The seq is consumed with a definite fate: rejected, never applied.
        outputs_.emplace_back(Rejected{e.session, e.seq, e.seq + 1, RejectReason::too_large});
        break;
      }
      call_service("on_message", [&] { service_.on_message(*this, e.session, stamp_, e.message); });
      // Also if on_message threw: the service was handed the message once and its seq is consumed (a resend
      // would be a duplicate), so "applied" is the fate; "rejected" would promise it had no effect.
      outputs_.emplace_back(Applied{e.session, e.seq, entry.index});
      break;
    }
    case EntryKind::timer: {
      const auto it = timers_.find(e.timer);
      // Fired, cancelled or re-armed since the leader decided: the firing was appended twice, or too late.
      if (it == timers_.end() || it->second.generation != e.seq) break;
      by_deadline_.erase({it->second.deadline, it->first});
      timers_.erase(it);
      ++timers_fired_;
      call_service("on_timer", [&] { service_.on_timer(*this, e.timer, stamp_); });
      break;
    }
  }
  run_deferred_closes();
  if (entry_failures_ > 0) {
    std::string detail = std::move(*entry_failure_);
    if (entry_failures_ > 1)
      detail += fmt::format(" (and {} more callbacks threw for this entry)", entry_failures_ - 1);
    entry_failure_.reset();
    entry_failures_ = 0;
    record_fault(entry, EntryFault::service_threw, std::move(detail));
  }
}

void ServiceHost::close(SessionId session, CloseReason reason) {
  const auto it = sessions_.find(session);
  COHORT_ASSERT(it != sessions_.end());
  const std::uint64_t last = it->second.last_seq;
  session_by_client_.erase(it->second.client);
  by_activity_.erase({it->second.last_activity, session});
  if (limits_.max_tombstones > 0) {
    tombstones_.emplace(session, Tombstone{it->second.client, last, reason, stamp_});
    tombstone_order_.push_back(session);
    evict_tombstones();
  }
  sessions_.erase(it);
  outputs_.emplace_back(SessionEnded{session, reason, last});
  call_service("on_session_close", [&] { service_.on_session_close(*this, session, reason); });
}

void ServiceHost::apply_open(const consensus::Entry& entry, const DecodedEntry& e) {
  // The session the client asked to resume, if it is closed: its tombstone settles the client's buffer (applied up
  // to last_seq, the rest never), or, evicted, leaves it unknown. Only the client that owned it may read it.
  std::optional<ReplacedSession> replaced;
  const auto existing = session_by_client_.find(e.id);
  const bool resuming_open = existing != session_by_client_.end() && existing->second == e.session;
  if (e.session != 0 && !resuming_open) {
    replaced = ReplacedSession{e.session};
    if (const auto tomb = tombstones_.find(e.session); tomb != tombstones_.end() && tomb->second.client == e.id)
      replaced = ReplacedSession{e.session, true, tomb->second.last_seq, tomb->second.reason};
  }
  if (existing != session_by_client_.end()) {
    // The same client again (its reply was lost, or it follows a new leader): the same session. A resume renews its
    // activity: the client is plainly alive.
    Session& session = sessions_.at(existing->second);
    set_activity(existing->second, session, stamp_);
    outputs_.emplace_back(SessionOpened{e.id, existing->second, session.last_seq, session.egress_seq,
                                        existing->second == e.session, replaced});
    return;
  }
  if (sessions_.size() >= limits_.max_sessions) {
    outputs_.emplace_back(SessionRefused{e.id, replaced});
    return;
  }
  const SessionId id = entry.index.value();
  Session& session = sessions_[id];
  session.client = e.id;
  session.last_activity = stamp_;
  by_activity_.emplace(stamp_, id);
  session_by_client_.emplace(e.id, id);
  outputs_.emplace_back(SessionOpened{e.id, id, 0, 0, false, replaced});
  call_service("on_session_open", [&] { service_.on_session_open(*this, id); });
}

void ServiceHost::apply_activity(const DecodedEntry& e) {
  const std::size_t count = e.sessions.size() / 8;
  for (std::size_t i = 0; i < count; ++i) {
    const SessionId id = activity_session(e, i);
    // A session closed since the leader noted it is simply gone.
    if (const auto it = sessions_.find(id); it != sessions_.end()) set_activity(id, it->second, stamp_);
  }
}

void ServiceHost::set_activity(SessionId id, Session& session, ClusterTime stamp) {
  if (session.last_activity == stamp) return;
  // The index's node is reused: renewing every bound session each second allocates nothing.
  auto node = by_activity_.extract({session.last_activity, id});
  COHORT_ASSERT(!node.empty());
  node.value().first = stamp;
  by_activity_.insert(std::move(node));
  session.last_activity = stamp;
}

void ServiceHost::renew_all(ClusterTime stamp) {
  by_activity_.clear();
  for (auto& [id, session] : sessions_) {
    session.last_activity = stamp;
    by_activity_.emplace_hint(by_activity_.end(), stamp, id);
  }
}

void ServiceHost::evict_tombstones() {
  // Closed in log order with stamps that never go back: the oldest are at the front.
  while (!tombstone_order_.empty()) {
    const auto oldest = tombstones_.find(tombstone_order_.front());
    COHORT_ASSERT(oldest != tombstones_.end());
    const bool too_many = tombstones_.size() > limits_.max_tombstones;
    const bool too_old = stamp_ - oldest->second.closed_at > limits_.tombstone_max_age;
    if (!too_many && !too_old) break;
    tombstones_.erase(oldest);
    tombstone_order_.pop_front();
  }
}

void ServiceHost::idle_sessions(ClusterTime idle_limit, std::vector<std::pair<SessionId, ClusterTime>>& out,
                                std::size_t limit) const {
  out.clear();
  for (auto it = by_activity_.begin(); it != by_activity_.end() && it->first <= idle_limit && out.size() < limit; ++it)
    out.emplace_back(it->second, it->first);
}

const std::deque<EgressRecord>& ServiceHost::egress_window(SessionId session) const {
  static const std::deque<EgressRecord> kNone;
  const auto it = sessions_.find(session);
  return it == sessions_.end() ? kNone : it->second.window;
}

void ServiceHost::run_deferred_closes() {
  // A close can defer another (on_session_close may close more), so loop until none is left.
  while (!deferred_closes_.empty()) {
    const SessionId session = deferred_closes_.back();
    deferred_closes_.pop_back();
    if (sessions_.contains(session)) close(session, CloseReason::service);
  }
}

void ServiceHost::due_timers(ClusterTime now, std::vector<std::pair<TimerId, std::uint64_t>>& out,
                             std::size_t limit) const {
  out.clear();
  // Earliest deadline first (ties by id): the leader appends firings in the order they fell due. Only the due
  // ones are visited, so a tick costs nothing for timers far in the future.
  for (auto it = by_deadline_.begin(); it != by_deadline_.end() && it->first <= now && out.size() < limit; ++it)
    out.emplace_back(it->second, timers_.at(it->second).generation);
}

void ServiceHost::schedule_timer(TimerId id, ClusterTime deadline) {
  if (const auto it = timers_.find(id); it != timers_.end()) by_deadline_.erase({it->second.deadline, id});
  timers_[id] = Timer{deadline, next_generation_++};
  by_deadline_.emplace(deadline, id);
}

bool ServiceHost::cancel_timer(TimerId id) {
  const auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  by_deadline_.erase({it->second.deadline, id});
  timers_.erase(it);
  return true;
}

bool ServiceHost::send(SessionId session, Bytes message) {
  const auto it = sessions_.find(session);
  if (it == sessions_.end() || message.size() > limits_.max_message_size) return false;
  Session& open = it->second;
  const std::uint64_t seq = ++open.egress_seq;
  // Kept by every replica, so that whichever leads after a failover resends what the client has not seen.
  open.window.push_back(EgressRecord{seq, std::vector<std::byte>(message.begin(), message.end())});
  open.window_bytes += message.size();
  while (open.window.size() > 1 &&
         (open.window.size() > limits_.egress_window_messages || open.window_bytes > limits_.egress_window_bytes)) {
    open.window_bytes -= open.window.front().message.size();
    open.window.pop_front();
  }
  outputs_.emplace_back(EgressOut{session, seq, std::vector<std::byte>(message.begin(), message.end())});
  return true;
}

bool ServiceHost::close_session(SessionId session) {
  if (!sessions_.contains(session)) return false;
  deferred_closes_.push_back(session);
  return true;
}

std::uint64_t ServiceHost::state_hash() {
  std::vector<std::byte>& out = hash_scratch_;
  out.clear();
  const auto put = [&out](std::uint64_t value) {
    const std::size_t at = out.size();
    out.resize(at + 8);
    store_le<std::uint64_t>(out.data() + at, value);
  };
  put(incarnation_.high);
  put(incarnation_.low);
  put(initial_members_.size());
  for (const std::uint32_t id : initial_members_) put(id);
  put(static_cast<std::uint64_t>(stamp_.count()));
  put(sessions_.size());
  for (const auto& [id, session] : sessions_) {
    put(id);
    put(session.client.high);
    put(session.client.low);
    put(session.last_seq);
    put(session.egress_seq);
    put(static_cast<std::uint64_t>(session.last_activity.count()));
    put(session.window.size());
    for (const EgressRecord& record : session.window) {
      put(record.seq);
      put(record.message.size());
      out.insert(out.end(), record.message.begin(), record.message.end());
    }
  }
  put(renewed_term_.value());
  put(tombstones_.size());
  for (const SessionId id : tombstone_order_) {
    const Tombstone& tomb = tombstones_.at(id);
    put(id);
    put(tomb.client.high);
    put(tomb.client.low);
    put(tomb.last_seq);
    put(static_cast<std::uint64_t>(tomb.reason));
    put(static_cast<std::uint64_t>(tomb.closed_at.count()));
  }
  put(timers_.size());
  for (const auto& [id, timer] : timers_) {
    put(id);
    put(static_cast<std::uint64_t>(timer.deadline.count()));
    put(timer.generation);
  }
  put(next_generation_);
  // Every replica meets the same faults at the same indexes (they are a function of the committed entries), so
  // the counts are hashed: a replica that handled an entry differently (another build, a service that threw on
  // one replica only) shows here even if the rest of its state happens to match. The detail text is not hashed.
  put(fault_counts_.undecodable);
  put(fault_counts_.stamp_went_back);
  put(fault_counts_.service_threw);
  put(last_fault_ ? last_fault_->index.value() : 0);
  put(last_fault_ ? static_cast<std::uint64_t>(last_fault_->fault) : 0);
  service_.on_take_snapshot(*this, out);
  return XXH3_64bits(out.data(), out.size());
}

const char* to_string(EntryFault fault) noexcept {
  switch (fault) {
    case EntryFault::undecodable: return "undecodable entry skipped";
    case EntryFault::stamp_went_back: return "stamp went back";
    case EntryFault::service_threw: return "service threw";
  }
  return "unknown";
}

}  // namespace cohort::host

namespace cohort {

const char* to_string(CloseReason reason) noexcept {
  switch (reason) {
    case CloseReason::client_closed: return "client closed";
    case CloseReason::timeout: return "timeout";
    case CloseReason::service: return "closed by the service";
  }
  return "unknown";
}

const char* to_string(ClusterRole role) noexcept {
  switch (role) {
    case ClusterRole::follower: return "follower";
    case ClusterRole::candidate: return "candidate";
    case ClusterRole::leader: return "leader";
  }
  return "unknown";
}

}  // namespace cohort
