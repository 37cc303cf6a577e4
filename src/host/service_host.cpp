#include "host/service_host.h"

#include <algorithm>
#include <array>
#include <exception>
#include <limits>
#include <new>
#include <utility>

#include <fmt/format.h>
#include <xxhash.h>

#include "common/assert.h"
#include "common/planted_bug.h"

// Planted bugs, for the simulator's self-test only (common/planted_bug.h; see consensus/raft.cpp):
//   9: a new leader's first entry does not renew the sessions' activity (an expiry during the no-op window)
//  10: the duplicate check lets a resent copy of the last applied seq through: an ingress applied twice
//  12: a replica restored from a snapshot loses its sessions' egress windows

namespace cohort::host {

namespace {
constexpr SessionId kRenumberedSessionBit = SessionId{1} << 63U;  // apply_open
}  // namespace

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
  if (reason == CloseReason::timeout) ++sessions_expired_;
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
  // A new session's id is its open's log index, except when that is the very session this client asks to resume:
  // possible only once a power loss under sync policy `none` has cut the log back below the old session's open. The
  // client would take the new session for its old one ("resumed", with none of its old messages or egress), so the
  // id gets the top bit, which no log index reaches: still unique, and never one the client had.
  SessionId id = entry.index.value();
  if (id == e.session) id |= kRenumberedSessionBit;
  Session& session = sessions_[id];
  ++sessions_opened_;
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

const Ring<EgressRecord>& ServiceHost::egress_window(SessionId session) const {
  static const Ring<EgressRecord> kNone;
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
  Payload bytes(message);  // one copy, shared by the window and the output
  open.window.push_back(EgressRecord{seq, bytes});
  open.window_bytes += message.size();
  while (open.window.size() > 1 &&
         (open.window.size() > limits_.egress_window_messages || open.window_bytes > limits_.egress_window_bytes)) {
    open.window_bytes -= open.window.front().message.size();
    open.window.pop_front();
  }
  outputs_.emplace_back(EgressOut{session, seq, std::move(bytes)});
  return true;
}

bool ServiceHost::close_session(SessionId session) {
  if (!sessions_.contains(session)) return false;
  deferred_closes_.push_back(session);
  return true;
}

namespace {

// The host's part of a snapshot starts with this; a snapshot of another layout is refused, never misread.
constexpr std::uint64_t kHostSnapshotMagic = 0x3174'736f'4874'7243ULL;  // "CrtHost1"

// Reads a snapshot's host part, bounds-checked: a read past the end, or a count beyond what the bytes left could
// hold, fails the reader, and every later read returns zero. The caller checks ok() once, at the end.
class SnapshotReader {
 public:
  explicit SnapshotReader(ByteSpan bytes) noexcept : bytes_(bytes) {}

  std::uint64_t u64() noexcept {
    if (!ok() || bytes_.size() - position_ < 8) return fail("the snapshot ends inside a field");
    const auto value = load_le<std::uint64_t>(bytes_.data() + position_);
    position_ += 8;
    return value;
  }
  /// A count of items that take at least `item_size` bytes each.
  std::uint64_t count(std::size_t item_size) noexcept {
    const std::uint64_t n = u64();
    if (ok() && n > (bytes_.size() - position_) / item_size) return fail("a count exceeds the snapshot's size");
    return n;
  }
  ByteSpan bytes(std::uint64_t size) noexcept {
    if (!ok() || bytes_.size() - position_ < size) {
      fail("the snapshot ends inside a message or the service's part");
      return {};
    }
    const ByteSpan out = bytes_.subspan(position_, static_cast<std::size_t>(size));
    position_ += static_cast<std::size_t>(size);
    return out;
  }
  ByteSpan rest() const noexcept { return bytes_.subspan(position_); }
  std::uint64_t fail(const char* why) noexcept {
    if (error_ == nullptr) error_ = why;
    return 0;
  }
  bool ok() const noexcept { return error_ == nullptr; }
  const char* error() const noexcept { return error_; }

 private:
  ByteSpan bytes_;
  std::size_t position_ = 0;
  const char* error_ = nullptr;
};

ClusterTime as_time(std::uint64_t value) noexcept { return ClusterTime{static_cast<ClusterTime::rep>(value)}; }

}  // namespace

void ServiceHost::write_snapshot(std::vector<std::byte>& out) {
  const auto put = [&out](std::uint64_t value) {
    const std::size_t at = out.size();
    out.resize(at + 8);
    store_le<std::uint64_t>(out.data() + at, value);
  };
  put(kHostSnapshotMagic);
  put(applied_.value());
  put(applied_term_.value());
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
  put(timers_fired_);
  // Every replica meets the same faults at the same indexes (they are a function of the committed entries), so
  // the counts are in the snapshot and its hash: a replica that handled an entry differently (another build, a
  // service that threw on one replica only) shows here even if the rest of its state happens to match. The
  // detail text is for people, and stays out.
  put(fault_counts_.undecodable);
  put(fault_counts_.stamp_went_back);
  put(fault_counts_.service_threw);
  put(last_fault_ ? last_fault_->index.value() : 0);
  put(last_fault_ ? last_fault_->term.value() : 0);
  put(last_fault_ ? static_cast<std::uint64_t>(last_fault_->fault) : 0);
  // The service's part, after its length (filled in once written: on_take_snapshot writes straight into `out`).
  const std::size_t length_at = out.size();
  put(0);
  service_.on_take_snapshot(*this, out);
  store_le<std::uint64_t>(out.data() + length_at, out.size() - length_at - 8);
}

Status<std::string> ServiceHost::restore(ByteSpan snapshot) {
  SnapshotReader in(snapshot);
  if (in.u64() != kHostSnapshotMagic) return unexpected(std::string("not a snapshot of this host's layout"));
  // Decoded into a fresh state first, so a snapshot that does not decode changes nothing.
  State state;
  state.applied = LogIndex{in.u64()};
  state.applied_term = Term{in.u64()};
  state.incarnation.high = in.u64();
  state.incarnation.low = in.u64();
  const std::uint64_t members = in.count(8);
  for (std::uint64_t i = 0; i < members; ++i) {
    const std::uint64_t id = in.u64();
    if (id > std::numeric_limits<std::uint32_t>::max()) in.fail("a member id is out of range");
    state.initial_members.push_back(static_cast<std::uint32_t>(id));
  }
  state.stamp = as_time(in.u64());
  const std::uint64_t sessions = in.count(7 * sizeof(std::uint64_t));
  for (std::uint64_t i = 0; i < sessions && in.ok(); ++i) {
    const SessionId id = in.u64();
    Session session;
    session.client.high = in.u64();
    session.client.low = in.u64();
    session.last_seq = in.u64();
    session.egress_seq = in.u64();
    session.last_activity = as_time(in.u64());
    const std::uint64_t window = in.count(2 * sizeof(std::uint64_t));
    for (std::uint64_t w = 0; w < window && in.ok(); ++w) {
      EgressRecord record;
      record.seq = in.u64();
      const ByteSpan message = in.bytes(in.u64());
      record.message = Payload(message);
      session.window_bytes += record.message.size();
      session.window.push_back(std::move(record));
    }
    if (planted_bug() == 12) {
      session.window.clear();
      session.window_bytes = 0;
    }
    if (!state.sessions.empty() && id <= state.sessions.rbegin()->first) in.fail("sessions are not in ascending order");
    if (!state.session_by_client.emplace(session.client, id).second) in.fail("two sessions have the same client");
    state.by_activity.emplace(session.last_activity, id);
    state.sessions.emplace_hint(state.sessions.end(), id, std::move(session));
  }
  state.renewed_term = Term{in.u64()};
  const std::uint64_t tombstones = in.count(6 * sizeof(std::uint64_t));
  for (std::uint64_t i = 0; i < tombstones && in.ok(); ++i) {
    const SessionId id = in.u64();
    Tombstone tomb;
    tomb.client.high = in.u64();
    tomb.client.low = in.u64();
    tomb.last_seq = in.u64();
    const std::uint64_t reason = in.u64();
    if (reason < 1 || reason > 3) in.fail("a tombstone's close reason is unknown");
    tomb.reason = static_cast<CloseReason>(reason);
    tomb.closed_at = as_time(in.u64());
    if (!state.tombstone_order.empty() && tomb.closed_at < state.tombstones.at(state.tombstone_order.back()).closed_at)
      in.fail("tombstones are not in the order they were closed");
    if (!state.tombstones.emplace(id, tomb).second) in.fail("two tombstones have the same session");
    state.tombstone_order.push_back(id);
  }
  const std::uint64_t timers = in.count(3 * sizeof(std::uint64_t));
  for (std::uint64_t i = 0; i < timers && in.ok(); ++i) {
    const TimerId id = in.u64();
    Timer timer;
    timer.deadline = as_time(in.u64());
    timer.generation = in.u64();
    if (!state.timers.emplace(id, timer).second) in.fail("two timers have the same id");
    state.by_deadline.emplace(timer.deadline, id);
  }
  state.next_generation = in.u64();
  state.timers_fired = in.u64();
  state.fault_counts.undecodable = in.u64();
  state.fault_counts.stamp_went_back = in.u64();
  state.fault_counts.service_threw = in.u64();
  const LogIndex fault_index{in.u64()};
  const Term fault_term{in.u64()};
  const std::uint64_t fault = in.u64();
  if (fault > 3) in.fail("the last entry fault is unknown");
  if (fault != 0)
    state.last_fault = EntryFaultReport{fault_index, fault_term, static_cast<EntryFault>(fault), "(from a snapshot)"};
  const ByteSpan service_part = in.bytes(in.u64());
  if (in.ok() && !in.rest().empty()) in.fail("bytes follow the service's part");
  if (!in.ok()) return unexpected(fmt::format("the snapshot does not decode: {}", in.error()));

  applied_ = state.applied;
  applied_term_ = state.applied_term;
  incarnation_ = state.incarnation;
  initial_members_ = std::move(state.initial_members);
  stamp_ = state.stamp;
  sessions_ = std::move(state.sessions);
  session_by_client_ = std::move(state.session_by_client);
  by_activity_ = std::move(state.by_activity);
  renewed_term_ = state.renewed_term;
  tombstones_ = std::move(state.tombstones);
  tombstone_order_ = std::move(state.tombstone_order);
  timers_ = std::move(state.timers);
  by_deadline_ = std::move(state.by_deadline);
  next_generation_ = state.next_generation;
  timers_fired_ = state.timers_fired;
  fault_counts_ = state.fault_counts;
  last_fault_ = std::move(state.last_fault);
  deferred_closes_.clear();
  outputs_.clear();
  // The service's part: the first restore is the service's start; a later one (a follower that installed the
  // leader's snapshot) replaces the state it had.
  if (!started_) {
    started_ = true;
    service_.on_start(*this, service_part);
  } else {
    service_.on_restore(*this, service_part);
  }
  return {};
}

std::optional<std::pair<LogIndex, Term>> ServiceHost::snapshot_position(ByteSpan snapshot) noexcept {
  SnapshotReader in(snapshot);
  const std::uint64_t magic = in.u64();
  const LogIndex index{in.u64()};
  const Term term{in.u64()};
  if (!in.ok() || magic != kHostSnapshotMagic || index == LogIndex{} || term == Term{}) return std::nullopt;
  return std::pair{index, term};
}

std::uint64_t ServiceHost::state_hash() {
  hash_scratch_.clear();
  write_snapshot(hash_scratch_);
  // Past the magic and the position (applied index and term): what a state is, not where it was reached, so an
  // entry that changes nothing (a no-op) leaves the hash as it was.
  constexpr std::size_t kPositionEnd = 3 * sizeof(std::uint64_t);
  return XXH3_64bits(hash_scratch_.data() + kPositionEnd, hash_scratch_.size() - kPositionEnd);
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
