#include "host/service_host.h"

#include <algorithm>

#include <fmt/format.h>
#include <xxhash.h>

#include "common/assert.h"

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
  if (!decoded)
    fatal_error(fmt::format("committed entry {} (term {}) is not a valid cluster entry: {}", entry.index.value(),
                            entry.term.value(), decoded.error()));
  const DecodedEntry& e = *decoded;
  // Every leader stamps from max(last stamp in its log, its clock) onwards, so stamps never decrease.
  COHORT_ASSERT(e.stamp >= stamp_);
  stamp_ = e.stamp;
  switch (e.kind) {
    case EntryKind::bootstrap:
      if (!incarnation_.known()) {
        incarnation_ = e.id;
        initial_members_ = member_ids(e);
      }
      break;
    case EntryKind::session_open: {
      if (const auto it = session_by_client_.find(e.id); it != session_by_client_.end()) {
        // A second open by the same client (its reply was lost, or it follows a new leader): the same session.
        outputs_.emplace_back(SessionOpened{e.id, it->second, sessions_.at(it->second).last_seq, true});
        break;
      }
      const SessionId id = entry.index.value();
      sessions_.emplace(id, Session{e.id, 0, 0});
      session_by_client_.emplace(e.id, id);
      outputs_.emplace_back(SessionOpened{e.id, id, 0, false});
      service_.on_session_open(*this, id);
      break;
    }
    case EntryKind::session_close:
      if (sessions_.contains(e.session)) close(e.session, e.reason);
      break;
    case EntryKind::ingress:
    case EntryKind::ingress_refused: {
      const auto it = sessions_.find(e.session);
      if (it == sessions_.end()) {
        outputs_.emplace_back(Rejected{e.session, e.seq, 0, RejectReason::unknown_session});
        break;
      }
      Session& session = it->second;
      if (e.seq <= session.last_seq) {  // a duplicate (a resend after a lost ack): applied once already
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
      service_.on_message(*this, e.session, e.stamp, e.message);
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
      service_.on_timer(*this, e.timer, e.stamp);
      break;
    }
  }
  run_deferred_closes();
}

void ServiceHost::close(SessionId session, CloseReason reason) {
  const auto it = sessions_.find(session);
  COHORT_ASSERT(it != sessions_.end());
  const std::uint64_t last = it->second.last_seq;
  session_by_client_.erase(it->second.client);
  sessions_.erase(it);
  outputs_.emplace_back(SessionEnded{session, reason, last});
  service_.on_session_close(*this, session, reason);
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
  outputs_.emplace_back(
      EgressOut{session, ++it->second.egress_seq, std::vector<std::byte>(message.begin(), message.end())});
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
  }
  put(timers_.size());
  for (const auto& [id, timer] : timers_) {
    put(id);
    put(static_cast<std::uint64_t>(timer.deadline.count()));
    put(timer.generation);
  }
  put(next_generation_);
  service_.on_take_snapshot(*this, out);
  return XXH3_64bits(out.data(), out.size());
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
