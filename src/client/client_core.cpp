#include "client/client_core.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "common/assert.h"
#include "common/planted_bug.h"
#include "protocol/catalogue.h"

// Planted bugs, for the simulator's self-test only (common/planted_bug.h; see consensus/raft.cpp):
//  15: data loss hidden: a resumed session below what the client acknowledged goes on from the cluster's position,
//      but the client does not report the lost seqs (no DataLossEvent)
//  16: data loss hidden, as before the event existed: the client keeps its own higher position, and waits on a gap
//      the cluster cannot fill

namespace cohort::client {
namespace {

std::string closed_before_applying(protocol::SessionCloseReason reason) {
  return fmt::format("the cluster closed the session ({}) before applying it", protocol::to_string(reason));
}

std::int64_t milliseconds(Time time) { return std::chrono::duration_cast<std::chrono::milliseconds>(time).count(); }

// The longest chain of redirects followed when the client lists fewer members (one endpoint: a load balancer, a DNS
// name), so a leader that moved on while the client followed the first redirect is still followed.
constexpr std::size_t kMinRedirectChain = 2;

// Spare byte buffers kept for reuse, in capacity: enough for a steady stream of messages in flight; a burst of
// larger ones is given back to the allocator.
constexpr std::size_t kMaxSpareBytes = 4U << 20U;

Reason handshake_reason(protocol::ErrorCode code) {
  switch (code) {
    case protocol::ErrorCode::wrong_cluster: return Reason::another_cluster;
    case protocol::ErrorCode::protocol_version_mismatch: return Reason::incompatible_version;
    case protocol::ErrorCode::wrong_incarnation: return Reason::another_incarnation;
    case protocol::ErrorCode::membership_mismatch: return Reason::node_misconfigured;
    default: return Reason::protocol_error;
  }
}

}  // namespace

ClientCore::ClientCore(ClientOptions options, std::uint64_t client_id_high, std::uint64_t client_id_low,
                       std::uint64_t seed)
    : options_(std::move(options)), client_high_(client_id_high), client_low_(client_id_low), random_(seed) {
  if (auto problems = validate(options_)) {
    state_ = ClientState::closed;
    reason_ = Reason::invalid_options;
    reason_text_ = std::move(*problems);
    return;
  }
  // Only once validated: a duration of centuries would overflow the nanoseconds.
  keepalive_interval_ = options_.keepalive_interval;
  silence_limit_ = options_.silence_limit;
  refused_by_member_.assign(options_.members.size(), false);
  next_member_ = static_cast<std::size_t>(random_.below(options_.members.size()));
}

void ClientCore::set_state(ClientState state, Reason reason, std::string text) {
  if (state_ == state) return;
  if (state_ == ClientState::connected) not_connected_since_ = last_input_;
  state_ = state;
  reason_ = reason;
  reason_text_ = text;
  events_.emplace_back(StateEvent{state, reason, std::move(text)});
}

std::optional<std::string> ClientCore::take_connect() { return std::exchange(connect_, std::nullopt); }
bool ClientCore::take_close() { return std::exchange(close_, false); }

// --- connections ----------------------------------------------------------------------------------------------

void ClientCore::tick(Time now) {
  last_input_ = now;
  if (state_ == ClientState::closed) return;
  if (!started_at_) {
    started_at_ = now;
    not_connected_since_ = now;
  }
  check_deadlines(now);
  if (state_ == ClientState::closed) return;
  if (link_ == Link::none) {
    if (now < retry_at_) return;
    // A chain of redirects as long as the member list goes round in a loop: the next member in turn instead.
    if (redirect_ && redirect_chain_ < std::max(options_.members.size(), kMinRedirectChain)) {
      connect_ = std::move(*redirect_);
      ++redirect_chain_;
    } else {
      // Not the member just left, where there is another: it failed or could not serve (a crashed or deposed leader).
      if (options_.members.size() > 1 && options_.members[next_member_] == endpoint_) advance_member();
      connect_ = options_.members[next_member_];
      advance_member();
      redirect_chain_ = 0;
    }
    redirect_.reset();
    endpoint_ = *connect_;
    link_ = Link::connecting;
    return;
  }
  if (link_ != Link::open) return;  // the transport bounds the handshake
  if (now - last_heard_ > silence_limit_) {
    drop_connection(now, Reason::timed_out,
                    fmt::format("{} went silent for {} ms", endpoint_, milliseconds(now - last_heard_)), false);
    return;
  }
  // A node that keeps answering "no leader" resets the silence timer, so it could hold the client for as long as it
  // is cut off from the quorum: after a bounded wait the client moves on to the other members.
  if (session_ == 0 && now - waiting_since_ > kNoSessionWaitSilenceLimits * silence_limit_) {
    drop_connection(now, Reason::no_leader,
                    fmt::format("no session from {} within {} ms", endpoint_, milliseconds(now - waiting_since_)),
                    false);
    return;
  }
  // Keep-alives also while waiting for a session (session 0): the node keeps a waiting client's connection only
  // while it hears from it.
  if (now - last_sent_ >= keepalive_interval_) {
    protocol::append_frame(protocol::KeepAlive{session_}, out_);
    last_sent_ = now;
  }
}

// The deadlines the options set, and a draining close: each ends the client for good.
void ClientCore::check_deadlines(Time now) {
  if (drain_deadline_ && (unacknowledged() == 0 || now >= *drain_deadline_)) return close(now);
  if (session_ != 0 || !started_at_) return;
  if (!ever_connected_ && options_.connect_timeout.count() > 0 && now - *started_at_ >= options_.connect_timeout) {
    const std::string text = fmt::format("no session within {} ms of the start (connect_timeout); last: {}",
                                         options_.connect_timeout.count(), last_failure_);
    return close_for(Reason::connect_deadline, text, text);
  }
  if (options_.give_up_after.count() > 0 && not_connected_since_ &&
      now - *not_connected_since_ >= options_.give_up_after) {
    const std::string text = fmt::format("not connected for {} ms (give_up_after); last: {}",
                                         milliseconds(now - *not_connected_since_), last_failure_);
    return close_for(Reason::give_up_deadline, text, text);
  }
}

void ClientCore::on_connected(Time now, const protocol::PeerIdentity& node) {
  last_input_ = now;
  if (link_ != Link::connecting) return;  // a connection the client gave up meanwhile (closed, or a deadline)
  link_ = Link::open;
  // The backoff starts over only once a session opens: nodes that answer but cannot serve (misconfigured, redirecting
  // to each other, knowing no leader) must not make the client reconnect at the first backoff step forever.
  last_heard_ = now;
  last_sent_ = now;
  waiting_since_ = now;
  told_no_leader_ = false;
  if (auto why = misconfigured(node)) {
    // Not a reason to give up: the other members may serve. This one is tried again in its turn (its operator
    // may fix it), after the backoff.
    drop_connection(now, Reason::node_misconfigured, std::move(*why), false);
    return;
  }
  if (other_incarnation(node.incarnation)) {
    node_refused(now, Reason::another_incarnation,
                 fmt::format("node {} at {} belongs to incarnation {}, not the one that served this client",
                             node.node_id, endpoint_, protocol::describe(node.incarnation)));
    return;
  }
  // A node of the right cluster, version and incarnation contradicts any refusal from the others.
  std::fill(refused_by_member_.begin(), refused_by_member_.end(), false);
  connected_members_ = node.members;
  send_open();
}

// Names the session to resume (if any) and what of its egress was delivered, so the leader resends only the rest.
void ClientCore::send_open() {
  protocol::append_frame(protocol::SessionOpen{client_high_, client_low_, known_session_,
                                               known_session_ != 0 ? last_egress_ : 0, as_bytes(options_.credential)},
                         out_);
}

std::optional<std::string> ClientCore::misconfigured(const protocol::PeerIdentity& node) const {
  // A client that lists one endpoint (a load balancer, a DNS name for all members) cannot count the members.
  const std::size_t listed = options_.members.size();
  if (listed > 1 && node.members.count != listed)
    return fmt::format("node {} at {} belongs to a {}-member cluster {}, but this client lists {} members",
                       node.node_id, endpoint_, node.members.count, protocol::describe(node.members), listed);
  if (configuration_ != 0 && protocol::configuration_id(node.members) != configuration_)
    return fmt::format("node {} at {} lists members {}, but the nodes that served this client list {}", node.node_id,
                       endpoint_, protocol::describe(node.members), protocol::describe(configuration_members_));
  return std::nullopt;
}

bool ClientCore::other_incarnation(const protocol::Incarnation& incarnation) const noexcept {
  const bool learned = incarnation_high_ != 0 || incarnation_low_ != 0;
  return learned && incarnation.known() &&
         (incarnation.high != incarnation_high_ || incarnation.low != incarnation_low_);
}

void ClientCore::node_refused(Time now, Reason reason, std::string text) {
  const auto listed = std::find(options_.members.begin(), options_.members.end(), endpoint_);
  if (listed != options_.members.end())
    refused_by_member_[static_cast<std::size_t>(listed - options_.members.begin())] = true;
  if (std::all_of(refused_by_member_.begin(), refused_by_member_.end(), [](bool refused) { return refused; })) {
    // Every member says the same, with no node accepting the client in between: it is the cluster's answer.
    close_for(reason, fmt::format("every member refused this client; the last: {}", text),
              "the cluster refused the connection");
    return;
  }
  // Other members may contradict it (a stray process on one port): moved on, and asked again in its turn.
  drop_connection(now, reason, std::move(text), false);
}

void ClientCore::on_disconnected(Time now, Disconnect why) {
  last_input_ = now;
  if (link_ == Link::none) return;
  link_ = Link::none;
  session_ = 0;
  ++attempt_;
  // A refused connection costs nothing and says the node is down, not overloaded: retry soon, so a node that comes
  // back is found within a few hundred milliseconds. Timeouts and resets get the full backoff.
  schedule_retry(now, why.reason == Reason::connection_refused ? options_.refused_backoff_max : options_.backoff_max);
  if (state_ == ClientState::closed) return;
  if (state_ == ClientState::connected)
    set_state(ClientState::reconnecting, why.reason, fmt::format("{}: {}", endpoint_, why.text));
  else
    connect_failed(why.reason, std::move(why.text));
}

void ClientCore::connect_failed(Reason reason, std::string text) {
  last_failure_ = fmt::format("{} ({})", text, to_string(reason));
  // Not connected: the latest failure is why (state_reason() says so between state changes too).
  reason_ = reason;
  reason_text_ = text;
  events_.emplace_back(ConnectFailedEvent{endpoint_, reason, std::move(text)});
}

void ClientCore::on_refused(Time now, protocol::ErrorCode code, std::string_view why) {
  last_input_ = now;
  if (link_ == Link::none || state_ == ClientState::closed) return;
  const Reason reason = handshake_reason(code);
  std::string text = fmt::format("{} refused the handshake: {}", endpoint_, why);
  if (reason == Reason::another_cluster || reason == Reason::incompatible_version ||
      reason == Reason::another_incarnation) {
    node_refused(now, reason, std::move(text));
    return;
  }
  drop_connection(now, reason, std::move(text), false);
}

void ClientCore::settle_buffer(bool definitely_not_applied, Reason reason, std::string_view text) {
  buffer_.drain([&](Buffered message) {
    acked_ = std::max(acked_, message.seq);
    if (message.settled) return;  // told already
    // Never sent whole: the cluster cannot have its bytes.
    if (definitely_not_applied || !message.sent_whole)
      events_.emplace_back(RejectedEvent{message.seq, reason, std::string(text)});
    else
      events_.emplace_back(UnknownEvent{message.seq, reason, std::string(text)});
    acked_ = std::max(acked_, message.seq);
    give_back(std::move(message.message));
  });
  buffered_bytes_ = 0;
  settled_in_buffer_ = 0;
}

void ClientCore::close_for(Reason reason, std::string text, std::string_view fate_text) {
  settle_buffer(false, reason, fate_text);
  set_state(ClientState::closed, reason, std::move(text));
  close_ = link_ != Link::none;
  link_ = Link::none;
  session_ = 0;
  drain_deadline_.reset();
}

// The next session numbers its messages from 1 again; the application's seqs go on.
void ClientCore::start_session_numbering() {
  session_base_ = next_seq_ - 1;
  lost_reported_.clear();
  acked_ = session_base_;
  last_egress_ = 0;
}

void ClientCore::drop_connection(Time now, Reason reason, std::string text, bool follow_redirect) {
  close_ = link_ != Link::none;
  link_ = Link::none;
  session_ = 0;
  if (follow_redirect && !redirected_this_round_) {
    redirected_this_round_ = true;
    retry_at_ = now;  // a redirect is followed at once
  } else {
    ++attempt_;
    schedule_retry(now, options_.backoff_max);
  }
  if (state_ == ClientState::connected)
    set_state(ClientState::reconnecting, reason, std::move(text));
  else if (reason == Reason::no_leader && told_no_leader_)
    // The application heard of this connection's "no leader" already (once per connection is enough to alert on).
    last_failure_ = fmt::format("{} ({})", text, to_string(reason));
  else if (reason != Reason::redirected)  // following a redirect is how a client finds the leader, not a failure
    connect_failed(reason, std::move(text));
}

void ClientCore::advance_member() {
  next_member_ = (next_member_ + 1) % options_.members.size();
  if (next_member_ == 0) redirected_this_round_ = false;
}

// Exponential backoff with full jitter: uniformly in [0, min(ceiling, initial * 2^attempt)].
void ClientCore::schedule_retry(Time now, Time ceiling) {
  const auto initial = std::chrono::duration_cast<Time>(options_.backoff_initial).count();
  const std::uint32_t shift = std::min<std::uint32_t>(attempt_, 20);
  const auto bound = std::min<std::int64_t>(
      {ceiling.count(), initial << shift, std::chrono::duration_cast<Time>(options_.backoff_max).count()});
  retry_at_ = now + Time(static_cast<std::int64_t>(random_.below(static_cast<std::uint64_t>(bound) + 1)));
}

// --- messages -------------------------------------------------------------------------------------------------

std::vector<std::byte> ClientCore::spare_buffer(ByteSpan bytes) {
  std::vector<std::byte> buffer;
  if (!spare_.empty()) {
    buffer = std::move(spare_.back());
    spare_.pop_back();
    spare_bytes_ -= buffer.capacity();
  }
  buffer.assign(bytes.begin(), bytes.end());
  return buffer;
}

void ClientCore::give_back(std::vector<std::byte> buffer) {
  if (buffer.capacity() == 0 || spare_bytes_ + buffer.capacity() > kMaxSpareBytes) return;
  spare_bytes_ += buffer.capacity();
  spare_.push_back(std::move(buffer));
}

void ClientCore::recycle(std::vector<Event>& events) {
  for (Event& event : events)
    if (auto* egress = std::get_if<EgressEvent>(&event)) give_back(std::move(egress->message));
  events.clear();
}

Offer ClientCore::offer(ByteSpan message, Time now) {
  last_input_ = now;
  if (state_ == ClientState::closed || drain_deadline_) return Offer{OfferStatus::closed, 0};
  if (message.size() > options_.max_message_size ||
      (cluster_max_message_ != 0 && message.size() > cluster_max_message_))
    return Offer{OfferStatus::too_large, 0};
  if (buffer_.size() >= options_.max_buffered_messages ||
      buffered_bytes_ + message.size() > options_.max_buffered_bytes)
    return Offer{OfferStatus::back_pressured, 0};
  buffer_.push_back(Buffered{next_seq_++, spare_buffer(message)});
  buffered_bytes_ += message.size();
  if (session_ != 0) send_ingress(buffer_.back());
  return Offer{OfferStatus::accepted, buffer_.back().seq};
}

void ClientCore::send_ingress(Buffered& message) {
  // A message buffered before the cluster said its limit, and above it, is withdrawn instead: the leader records
  // its seq as refused (a definite fate, and no gap for the messages after it), whatever any node's limit.
  if (message.settled || (cluster_max_message_ != 0 && message.message.size() > cluster_max_message_)) {
    message.withdrawn = true;
    protocol::append_frame(protocol::IngressWithdrawn{session_, message.seq - session_base_}, out_);
    return;
  }
  message.sent_whole = true;
  protocol::append_frame(protocol::Ingress{session_, message.seq - session_base_, message.message}, out_);
}

// Seqs from `seq` up to acked_ have their fates, yet the cluster asks for them: it lost them (a data loss). They are
// withdrawn, which the cluster records as refused, so its next seq is the buffer's first and no seq is reused.
void ClientCore::resend_from(std::uint64_t seq) {
  for (std::uint64_t lost = std::max(seq, session_base_ + 1); lost <= acked_ && planted_bug() != 16; ++lost)
    protocol::append_frame(protocol::IngressWithdrawn{session_, lost - session_base_}, out_);
  for (std::size_t index = 0; index < buffer_.size(); ++index)
    if (buffer_[index].seq >= seq) send_ingress(buffer_[index]);
}

void ClientCore::acknowledge(std::uint64_t seq, std::uint64_t position) {
  while (!buffer_.empty() && buffer_.front().seq <= seq) {
    Buffered message = buffer_.pop_front();
    if (message.settled) {
      --settled_in_buffer_;
      continue;
    }
    // A withdrawn message's seq is covered by "applied up to" too, but the cluster only recorded it as refused.
    if (message.surely_refused())
      events_.emplace_back(RejectedEvent{message.seq, Reason::too_large, "larger than the cluster's message limit"});
    else if (message.withdrawn)
      // Sent whole, then withdrawn (the cluster's limit fell while it was in flight): the seq was applied or refused,
      // and "applied up to" cannot tell which. Only nodes configured with different limits get here.
      events_.emplace_back(UnknownEvent{message.seq, Reason::too_large,
                                        "the cluster's message limit changed while it was in flight: applied or "
                                        "refused, the cluster's acknowledgement cannot tell"});
    else
      events_.emplace_back(AppliedEvent{message.seq, position});
    buffered_bytes_ -= message.message.size();
    give_back(std::move(message.message));
  }
  acked_ = std::max(acked_, seq);
  applied_position_ = std::max(applied_position_, position);
}

void ClientCore::note_leader(std::uint32_t leader, std::uint64_t term) {
  // A frame without a leader (a node that knows none) says nothing about which leader is current, and its term
  // may be a partitioned node's, inflated by elections it could not win.
  if (leader == 0 || term == 0) return;
  if (term < term_ || (term == term_ && leader == leader_)) return;
  term_ = term;
  leader_ = leader;
  events_.emplace_back(LeaderEvent{leader, term});
}

bool ClientCore::heard_from_leader(std::uint64_t term, std::uint32_t leader, Time now) {
  // Not even counted as hearing from the node: a deposed leader that goes on sending must not keep the client
  // there; the silence limit moves it on.
  if (stale(term)) return false;
  last_heard_ = now;
  note_leader(leader, term);
  return true;
}

// The leader sends egress in seq order on one connection (after a resume: what it still holds past the seq the
// open named, then live egress), so a seq at or below the last delivered is a resend, and one further on means the
// seqs between are gone for good (beyond the cluster's window): the application hears of them before the next.
void ClientCore::deliver_egress(std::uint64_t seq, ByteSpan message) {
  if (seq <= last_egress_) return;
  if (seq > last_egress_ + 1) events_.emplace_back(EgressGapEvent{last_egress_ + 1, seq - 1});
  last_egress_ = seq;
  events_.emplace_back(EgressEvent{seq, spare_buffer(message)});
}

void ClientCore::on_frame(const protocol::Frame& frame, Time now) {
  last_input_ = now;
  if (link_ != Link::open || state_ == ClientState::closed) return;
  handle_frame(frame, now);
  // A draining close ends as soon as the last fate is known.
  if (drain_deadline_ && unacknowledged() == 0 && state_ != ClientState::closed) close(now);
}

void ClientCore::handle_frame(const protocol::Frame& frame, Time now) {
  switch (frame.header.type) {
    case protocol::MessageType::session_reply: return handle_reply(frame, now);
    case protocol::MessageType::ack: {
      auto ack = protocol::decode<protocol::Ack>(frame);
      if (!ack) break;
      if (!heard_from_leader(ack->term, ack->leader_id, now) || ack->session_id != session_) return;
      acknowledge(ack->applied_seq + session_base_, ack->log_position);
      return;
    }
    case protocol::MessageType::egress: {
      auto egress = protocol::decode<protocol::Egress>(frame);
      if (!egress) break;
      if (!heard_from_leader(egress->term, egress->leader_id, now) || egress->session_id != session_) return;
      deliver_egress(egress->egress_seq, egress->payload);
      return;
    }
    case protocol::MessageType::ingress_rejected: {
      auto rejected = protocol::decode<protocol::IngressRejected>(frame);
      if (!rejected) break;
      if (!heard_from_leader(rejected->term, rejected->leader_id, now) || rejected->session_id != session_) return;
      switch (rejected->reason) {
        case protocol::IngressRejectReason::gap:
          // A message before it was lost on the way (not a fate). Every message after the lost one reports the
          // same gap: one resend answers them all.
          if (resent_from_ != rejected->expected_seq + session_base_) {
            resent_from_ = rejected->expected_seq + session_base_;
            resend_from(resent_from_);
          }
          return;
        case protocol::IngressRejectReason::too_large:
          // Its seq was consumed by the cluster: a definite fate, and the messages after it go on.
          for (std::size_t index = 0; index < buffer_.size(); ++index) {
            Buffered& message = buffer_[index];
            if (message.seq != rejected->seq + session_base_ || message.settled) continue;
            events_.emplace_back(
                RejectedEvent{message.seq, Reason::too_large, "larger than the cluster's message limit"});
            buffered_bytes_ -= message.message.size();
            give_back(std::move(message.message));
            message.message = {};
            message.settled = true;
            ++settled_in_buffer_;
            break;
          }
          return;
        case protocol::IngressRejectReason::not_leader:
        case protocol::IngressRejectReason::unknown_session:
          drop_connection(now, Reason::leader_lost, fmt::format("{} is no longer the leader", endpoint_), false);
          return;
      }
      return;
    }
    case protocol::MessageType::session_closed: {
      auto closed = protocol::decode<protocol::SessionClosed>(frame);
      if (!closed) break;
      if (!heard_from_leader(closed->term, closed->leader_id, now) || closed->session_id != session_) return;
      acknowledge(closed->last_applied_seq + session_base_, 0);
      // The cluster applied nothing after last_applied_seq in that session, and never will: every message still
      // buffered (sent or not) is definitely not applied. Then a new session, on the same connection; with every
      // fate known there is nothing to resume, and the new session is reported as replacing this one.
      settle_buffer(true, Reason::session_replaced, closed_before_applying(closed->reason));
      session_ = 0;
      waiting_since_ = now;
      known_session_ = 0;
      replaced_pending_ = true;
      start_session_numbering();
      send_open();
      return;
    }
    default: break;
  }
  // Any other frame, or one that does not decode, still shows the node is there.
  last_heard_ = now;
}

void ClientCore::handle_reply(const protocol::Frame& frame, Time now) {
  auto reply = protocol::decode<protocol::SessionReply>(frame);
  if (!reply) {
    drop_connection(now, Reason::protocol_error,
                    fmt::format("malformed session reply from {}: {}", endpoint_, reply.error().describe()), false);
    return;
  }
  if (reply->status == protocol::SessionStatus::opened || reply->status == protocol::SessionStatus::rejected ||
      reply->status == protocol::SessionStatus::busy) {
    // From a leader: a lower term than known is a deposed one's (a minority leader that has not noticed yet), whose
    // answer must neither open a session nor close the client for good.
    if (stale(reply->term)) return;
  }
  last_heard_ = now;
  adopt_keepalive(*reply);
  switch (reply->status) {
    case protocol::SessionStatus::redirect:
      note_leader(reply->leader_id, reply->term);
      redirect_ = std::string(reply->text);
      drop_connection(now, Reason::redirected,
                      fmt::format("{} redirected to node {} at {}", endpoint_, reply->leader_id, reply->text), true);
      return;
    case protocol::SessionStatus::no_leader:
      // Keep the connection: the node says as soon as a leader is elected. Its term is not learned (note_leader
      // takes none without a leader): a partitioned node's may be above the real leader's.
      if (session_ != 0) {
        // The node serving this session lost its leadership and knows no successor: most likely it is cut off from
        // the majority (check-quorum stepped it down), where the next leader is elected and known first. The other
        // members are tried at once; waiting here could last as long as the partition.
        drop_connection(now, Reason::no_leader, fmt::format("{} lost its leadership: {}", endpoint_, reply->text),
                        true);
      } else if (!told_no_leader_) {
        told_no_leader_ = true;
        connect_failed(Reason::no_leader, fmt::format("{} knows no leader: {}", endpoint_, reply->text));
      }
      return;
    case protocol::SessionStatus::rejected:
      // The leader's decision, for the whole cluster.
      close_for(Reason::authentication_refused, fmt::format("{} refused the session: {}", endpoint_, reply->text),
                "the cluster refused the session");
      return;
    case protocol::SessionStatus::busy: return handle_busy(reply->text, now);
    case protocol::SessionStatus::opened: return session_opened(*reply, now);
  }
}

void ClientCore::session_opened(const protocol::SessionReply& reply, Time now) {
  if (incarnation_high_ != 0 || incarnation_low_ != 0) {
    if (reply.incarnation.high != incarnation_high_ || reply.incarnation.low != incarnation_low_) {
      // A leader's answer, so the cluster's: it was wiped and re-created. Whether it applied these messages before
      // it went cannot be known.
      close_for(Reason::another_incarnation,
                fmt::format("the cluster was re-created: {} answers for incarnation {}", endpoint_,
                            protocol::describe(reply.incarnation)),
                "the cluster was re-created before acknowledging it");
      return;
    }
  } else {
    incarnation_high_ = reply.incarnation.high;
    incarnation_low_ = reply.incarnation.low;
  }
  if (configuration_ == 0) {
    // The first node to serve this client fixes its configuration; on_connected checked it against the count.
    configuration_members_ = connected_members_;
    configuration_ = protocol::configuration_id(connected_members_);
  }
  note_leader(reply.leader_id, reply.term);
  cluster_max_message_ = reply.max_message_size;
  SessionChange change = SessionChange::opened;
  if (known_session_ == 0) {
    if (replaced_pending_) change = SessionChange::replaced;
  } else if (reply.session_id == known_session_) {
    change = SessionChange::resumed;
    if (reply.last_applied_seq + session_base_ < acked_) adopt_cluster_position(reply);
    // Its egress went back (a layout 3 reply says where to: keepalive_interval_ms marks it): what follows is new.
    // Also when its ingress did not: the lost entries may be other sessions' whose egress came to this one.
    if (reply.keepalive_interval_ms != 0 && reply.egress_seq < last_egress_) {
      events_.emplace_back(EgressLostEvent{reply.egress_seq + 1, last_egress_});
      last_egress_ = reply.egress_seq;
    }
  } else {
    settle_replaced_session(reply);
    start_session_numbering();
    change = SessionChange::replaced;
  }
  replaced_pending_ = false;
  busy_replies_ = 0;
  session_ = reply.session_id;
  known_session_ = reply.session_id;
  ever_connected_ = true;
  not_connected_since_.reset();
  attempt_ = 0;
  redirected_this_round_ = false;
  redirect_chain_ = 0;
  events_.emplace_back(SessionEvent{session_, change});
  set_state(ClientState::connected, Reason::none,
            fmt::format("session {} {} by node {}", session_, to_string(change), reply.leader_id));
  acknowledge(reply.last_applied_seq + session_base_, 0);
  // From the cluster's position: after a data loss that is below acked_, and the lost seqs are withdrawn first.
  resent_from_ = std::min(acked_, reply.last_applied_seq + session_base_) + 1;
  if (planted_bug() == 16) resent_from_ = acked_ + 1;
  resend_from(resent_from_);
  last_sent_ = now;
}

// The cluster reports a lower last applied seq than it acknowledged before: it lost the newest part of its log
// (sync policy none, every node lost power). Those messages were reported applied already, so this is not a second
// fate but news the application needs. The session goes on from the cluster's position: resend_from() withdraws the
// lost seqs (the cluster records them refused) before the buffer, so no wire seq ever names two messages. Were the
// client to renumber its buffer onto the lost seqs instead, a second power loss that brought the old history back
// (a node that kept it winning an election) would apply the old message under a seq the client gave a new one.
void ClientCore::adopt_cluster_position(const protocol::SessionReply& reply) {
  if (planted_bug() == 16) return;
  // Report each lost seq once, also across several losses in one session.
  std::uint64_t from = reply.last_applied_seq + session_base_ + 1;
  const std::uint64_t to = acked_;
  for (const auto& [first, last] : lost_reported_) {
    if (last < from || first > to) continue;
    if (first > from && planted_bug() != 15) events_.emplace_back(DataLossEvent{from, first - 1});
    from = std::max(from, last + 1);
  }
  if (from <= to && planted_bug() != 15) events_.emplace_back(DataLossEvent{from, to});
  lost_reported_.emplace_back(reply.last_applied_seq + session_base_ + 1, to);
  std::sort(lost_reported_.begin(), lost_reported_.end());
  // Merged, so the list stays as short as the number of separate losses.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> merged;
  for (const auto& range : lost_reported_) {
    if (!merged.empty() && range.first <= merged.back().second + 1)
      merged.back().second = std::max(merged.back().second, range.second);
    else
      merged.push_back(range);
  }
  lost_reported_ = std::move(merged);
}

// The node's keep-alive needs, from any reply (also while waiting at a node with no leader): keep alive at least as
// often as it does, and wait at least as long as it waits. Bounded, so a node cannot make the client flood it nor
// wait on a dead connection for days.
void ClientCore::adopt_keepalive(const protocol::SessionReply& reply) {
  constexpr Time kFastestKeepAlive = std::chrono::milliseconds(10);
  constexpr Time kLongestSilence = std::chrono::seconds(60);
  if (reply.keepalive_interval_ms != 0)
    keepalive_interval_ =
        std::min<Time>(options_.keepalive_interval,
                       std::max<Time>(kFastestKeepAlive, std::chrono::milliseconds(reply.keepalive_interval_ms)));
  if (reply.silence_limit_ms != 0)
    silence_limit_ = std::max<Time>(options_.silence_limit,
                                    std::min<Time>(kLongestSilence, std::chrono::milliseconds(reply.silence_limit_ms)));
}

void ClientCore::handle_busy(std::string_view text, Time now) {
  // Not permanent: the buffer waits (no session was opened, so nothing in it has a new fate), and the client asks
  // again. A busy cluster answers, so on_connected starts the backoff over every time: count the busy answers in
  // a row instead, or every waiting client would ask again within the first backoff step, forever.
  attempt_ = ++busy_replies_;
  drop_connection(now, Reason::cluster_busy, fmt::format("the cluster is busy: {}", text), false);
}

void ClientCore::settle_replaced_session(const protocol::SessionReply& reply) {
  if (reply.replaced_session == known_session_ && reply.replaced_reason != protocol::SessionCloseReason{}) {
    // The old session's tombstone: up to its last applied seq, applied; after it, never (the session is closed).
    acknowledge(reply.replaced_last_seq + session_base_, 0);
    settle_buffer(true, Reason::session_replaced, closed_before_applying(reply.replaced_reason));
    return;
  }
  // The session is gone and so is its tombstone (or the node could not say which session it replaced): what it
  // had not acknowledged may or may not have been applied.
  settle_buffer(false, Reason::session_replaced,
                "the cluster closed the session and its record was evicted: whether it was applied is unknown");
}

void ClientCore::close(Time now) {
  last_input_ = now;
  if (state_ == ClientState::closed) return;
  if (session_ != 0) protocol::append_frame(protocol::SessionClose{session_}, out_);
  close_for(Reason::closed_by_application, "closed by the application", "the client closed before it was acknowledged");
}

void ClientCore::close_after_drain(Time now, Time deadline) {
  last_input_ = now;
  if (state_ == ClientState::closed) return;
  drain_deadline_ = deadline;
  check_deadlines(now);
}

}  // namespace cohort::client

namespace cohort {

const char* to_string(ClientState state) noexcept {
  switch (state) {
    case ClientState::connecting: return "connecting";
    case ClientState::connected: return "connected";
    case ClientState::reconnecting: return "reconnecting";
    case ClientState::closed: return "closed";
  }
  return "unknown";
}

const char* to_string(Reason reason) noexcept {
  // The enumerator's own name: stable, for scripts and logs (the text beside it is for people).
  switch (reason) {
    case Reason::none: return "none";
    case Reason::connection_refused: return "connection_refused";
    case Reason::unreachable: return "unreachable";
    case Reason::timed_out: return "timed_out";
    case Reason::connection_reset: return "connection_reset";
    case Reason::protocol_error: return "protocol_error";
    case Reason::no_leader: return "no_leader";
    case Reason::redirected: return "redirected";
    case Reason::leader_lost: return "leader_lost";
    case Reason::cluster_busy: return "cluster_busy";
    case Reason::node_misconfigured: return "node_misconfigured";
    case Reason::closed_by_application: return "closed_by_application";
    case Reason::give_up_deadline: return "give_up_deadline";
    case Reason::connect_deadline: return "connect_deadline";
    case Reason::authentication_refused: return "authentication_refused";
    case Reason::another_cluster: return "another_cluster";
    case Reason::another_incarnation: return "another_incarnation";
    case Reason::incompatible_version: return "incompatible_version";
    case Reason::invalid_options: return "invalid_options";
    case Reason::too_large: return "too_large";
    case Reason::session_replaced: return "session_replaced";
  }
  return "unknown";
}

namespace {

// "host:port" or "[v6]:port" with a port in 1..65535; the transport resolves the host when it connects.
bool plausible_endpoint(std::string_view endpoint) {
  const auto colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == endpoint.size()) return false;
  const std::string_view port = endpoint.substr(colon + 1);
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  return error == std::errc{} && end == port.data() + port.size() && value >= 1 && value <= 65535;
}

}  // namespace

std::optional<std::string> validate(const ClientOptions& options) {
  std::string problems;
  const auto problem = [&](const std::string& text) {
    if (!problems.empty()) problems += '\n';
    problems += text;
  };
  if (options.members.empty()) problem("members: at least one endpoint is needed");
  for (std::size_t i = 0; i < options.members.size(); ++i) {
    const std::string& member = options.members[i];
    if (!plausible_endpoint(member)) problem(fmt::format("members: '{}' is not host:port", member));
    if (std::find(options.members.begin(), options.members.begin() + static_cast<std::ptrdiff_t>(i), member) !=
        options.members.begin() + static_cast<std::ptrdiff_t>(i))
      problem(fmt::format("members: '{}' is listed twice", member));
  }
  // Durations are turned into nanoseconds and added to the clock: bounded, so no sum overflows (0 means never for
  // the two deadlines; "never" is not a huge value).
  const auto at_most = [&](std::string_view name, std::chrono::milliseconds value, std::chrono::hours limit) {
    if (value > limit) problem(fmt::format("{}: {} ms is above {} h", name, value.count(), limit.count()));
  };
  at_most("keepalive_interval", options.keepalive_interval, std::chrono::hours(1));
  at_most("silence_limit", options.silence_limit, std::chrono::hours(1));
  at_most("backoff_initial", options.backoff_initial, std::chrono::hours(1));
  at_most("backoff_max", options.backoff_max, std::chrono::hours(1));
  at_most("refused_backoff_max", options.refused_backoff_max, std::chrono::hours(1));
  at_most("give_up_after", options.give_up_after, std::chrono::hours(24 * 365));
  at_most("connect_timeout", options.connect_timeout, std::chrono::hours(24 * 365));
  if (options.max_buffered_messages > (std::size_t{1} << 30U))
    problem(fmt::format("max_buffered_messages: {} is above 2^30", options.max_buffered_messages));
  if (options.max_buffered_bytes > (std::size_t{1} << 40U))
    problem(fmt::format("max_buffered_bytes: {} is above 1 TiB", options.max_buffered_bytes));
  if (options.keepalive_interval.count() <= 0) problem("keepalive_interval: must be above 0");
  if (options.silence_limit <= options.keepalive_interval)
    problem(fmt::format("silence_limit: {} ms must be above keepalive_interval ({} ms)", options.silence_limit.count(),
                        options.keepalive_interval.count()));
  if (options.backoff_initial.count() <= 0) problem("backoff_initial: must be above 0");
  if (options.backoff_max < options.backoff_initial)
    problem(fmt::format("backoff_max: {} ms is below backoff_initial ({} ms)", options.backoff_max.count(),
                        options.backoff_initial.count()));
  if (options.refused_backoff_max.count() <= 0) problem("refused_backoff_max: must be above 0");
  if (options.give_up_after.count() < 0) problem("give_up_after: must be 0 (never) or above");
  if (options.connect_timeout.count() < 0) problem("connect_timeout: must be 0 (never) or above");
  if (options.max_buffered_messages == 0) problem("max_buffered_messages: must be above 0");
  if (options.max_message_size == 0) problem("max_message_size: must be above 0");
  if (options.max_message_size > protocol::kMaxFrameLengthCeiling / 2)
    problem(fmt::format("max_message_size: {} is above the protocol's limit of {}", options.max_message_size,
                        protocol::kMaxFrameLengthCeiling / 2));
  if (options.max_buffered_bytes < options.max_message_size)
    problem(fmt::format("max_buffered_bytes: {} cannot hold one message of max_message_size ({})",
                        options.max_buffered_bytes, options.max_message_size));
  if (options.log_level > LogLevel::off) problem("log_level: not one of debug, info, warn, error, off");
  if (options.credential.size() > protocol::kMaxCredentialLength)
    problem(fmt::format("credential: {} bytes, at most {}", options.credential.size(), protocol::kMaxCredentialLength));
  if (problems.empty()) return std::nullopt;
  return problems;
}

const char* to_string(SessionChange change) noexcept {
  switch (change) {
    case SessionChange::opened: return "opened";
    case SessionChange::resumed: return "resumed";
    case SessionChange::replaced: return "replaced";
  }
  return "unknown";
}

const char* to_string(OfferStatus status) noexcept {
  switch (status) {
    case OfferStatus::accepted: return "accepted";
    case OfferStatus::back_pressured: return "back-pressured";
    case OfferStatus::too_large: return "too large";
    case OfferStatus::closed: return "closed";
  }
  return "unknown";
}

}  // namespace cohort
