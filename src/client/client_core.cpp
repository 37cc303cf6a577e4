#include "client/client_core.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/assert.h"
#include "protocol/catalogue.h"

namespace cohort::client {
namespace {

std::string closed_before_applying(protocol::SessionCloseReason reason) {
  return fmt::format("the cluster closed the session ({}) before applying it", protocol::to_string(reason));
}

}  // namespace

ClientCore::ClientCore(ClientOptions options, std::uint64_t client_id_high, std::uint64_t client_id_low,
                       std::uint64_t seed)
    : options_(std::move(options)), client_high_(client_id_high), client_low_(client_id_low), random_(seed) {
  COHORT_ASSERT(!options_.members.empty());
  COHORT_ASSERT(options_.credential.size() <= protocol::kMaxCredentialLength);
  next_member_ = static_cast<std::size_t>(random_.below(options_.members.size()));
}

void ClientCore::set_state(ClientState state, std::string reason) {
  if (state_ == state) return;
  state_ = state;
  events_.emplace_back(StateEvent{state, std::move(reason)});
}

std::optional<std::string> ClientCore::take_connect() { return std::exchange(connect_, std::nullopt); }
bool ClientCore::take_close() { return std::exchange(close_, false); }

// --- connections ----------------------------------------------------------------------------------------------

void ClientCore::tick(Time now) {
  if (state_ == ClientState::closed) return;
  if (link_ == Link::none) {
    if (now < retry_at_) return;
    if (redirect_) {
      connect_ = std::move(*redirect_);
      redirect_.reset();
    } else {
      connect_ = options_.members[next_member_];
      next_member_ = (next_member_ + 1) % options_.members.size();
      if (next_member_ == 0) redirected_this_round_ = false;
    }
    endpoint_ = *connect_;
    link_ = Link::connecting;
    return;
  }
  if (link_ != Link::open) return;  // the transport bounds the handshake
  if (now - last_heard_ > options_.silence_limit) {
    drop_connection(now, "the node went silent", false);
    return;
  }
  // A node that keeps answering "no leader" resets the silence timer, so it could hold the client for as long as it
  // is cut off from the quorum: after a bounded wait the client moves on to the other members.
  if (session_ == 0 && now - waiting_since_ > kNoSessionWaitSilenceLimits * options_.silence_limit) {
    drop_connection(now,
                    fmt::format("no session from {} within {} ms", endpoint_,
                                std::chrono::duration_cast<std::chrono::milliseconds>(now - waiting_since_).count()),
                    false);
    return;
  }
  // Keep-alives also while waiting for a session (session 0): the node keeps a waiting client's connection only
  // while it hears from it.
  if (now - last_sent_ >= options_.keepalive_interval) {
    protocol::append_frame(protocol::KeepAlive{session_}, out_);
    last_sent_ = now;
  }
}

void ClientCore::on_connected(Time now, const protocol::PeerIdentity& node) {
  COHORT_ASSERT(link_ == Link::connecting);
  link_ = Link::open;
  // A node answered: the cluster is reachable, so the backoff starts over (a dead node it then redirects to costs
  // one short step, not a growing one).
  attempt_ = 0;
  last_heard_ = now;
  last_sent_ = now;
  waiting_since_ = now;
  if (auto why = misconfigured(node)) {
    // Not a reason to give up: the other members may serve. This one is tried again in its turn (its operator
    // may fix it), after the backoff.
    events_.emplace_back(NodeRefusedEvent{endpoint_, *why});
    drop_connection(now, std::move(*why), false);
    return;
  }
  if (other_incarnation(node.incarnation)) {
    close_for_other_incarnation();
    return;
  }
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

void ClientCore::close_for_other_incarnation() {
  // The cluster these messages went to is gone: whether it applied them before it went cannot be known.
  settle_buffer(false, "the cluster was re-created before acknowledging it");
  set_state(ClientState::closed, "the cluster was re-created (another incarnation)");
  close_ = true;
  link_ = Link::none;
  session_ = 0;
}

void ClientCore::on_disconnected(Time now, std::string_view why) {
  if (link_ == Link::none) return;
  link_ = Link::none;
  session_ = 0;
  ++attempt_;
  schedule_retry(now);
  if (state_ != ClientState::closed)
    set_state(state_ == ClientState::connecting ? ClientState::connecting : ClientState::reconnecting,
              std::string(why));
}

void ClientCore::settle_buffer(bool definitely_not_applied, std::string_view reason) {
  for (const Buffered& message : buffer_) {
    if (definitely_not_applied)
      events_.emplace_back(RejectedEvent{message.seq, std::string(reason)});
    else
      events_.emplace_back(UnknownEvent{message.seq, std::string(reason)});
  }
  buffer_.clear();
  buffered_bytes_ = 0;
}

// The next session numbers its messages from 1 again; the application's seqs go on.
void ClientCore::start_session_numbering() {
  session_base_ = next_seq_ - 1;
  acked_ = session_base_;
  last_egress_ = 0;
}

void ClientCore::on_refused(std::string_view why) {
  link_ = Link::none;
  session_ = 0;
  // A handshake refusal comes before any session on this connection; messages of an earlier session, though,
  // may have been applied.
  settle_buffer(known_session_ == 0, "the cluster refused the connection");
  set_state(ClientState::closed, fmt::format("refused: {}", why));
}

void ClientCore::drop_connection(Time now, std::string reason, bool follow_redirect) {
  close_ = link_ != Link::none;
  link_ = Link::none;
  session_ = 0;
  if (follow_redirect && !redirected_this_round_) {
    redirected_this_round_ = true;
    retry_at_ = now;  // a redirect is followed at once
  } else {
    ++attempt_;
    schedule_retry(now);
  }
  if (state_ == ClientState::connected) set_state(ClientState::reconnecting, std::move(reason));
}

// Exponential backoff with full jitter: uniformly in [0, min(max, initial * 2^attempt)].
void ClientCore::schedule_retry(Time now) {
  const auto initial = std::chrono::duration_cast<Time>(options_.backoff_initial).count();
  const auto ceiling = std::chrono::duration_cast<Time>(options_.backoff_max).count();
  const std::uint32_t shift = std::min<std::uint32_t>(attempt_, 20);
  const auto bound = std::min<std::int64_t>(ceiling, initial << shift);
  retry_at_ = now + Time(static_cast<std::int64_t>(random_.below(static_cast<std::uint64_t>(bound) + 1)));
}

// --- messages -------------------------------------------------------------------------------------------------

Offer ClientCore::offer(ByteSpan message, Time now) {
  (void)now;
  if (state_ == ClientState::closed) return Offer{OfferStatus::closed, 0};
  if (message.size() > options_.max_message_size ||
      (cluster_max_message_ != 0 && message.size() > cluster_max_message_))
    return Offer{OfferStatus::too_large, 0};
  if (buffer_.size() >= options_.max_buffered_messages ||
      buffered_bytes_ + message.size() > options_.max_buffered_bytes)
    return Offer{OfferStatus::back_pressured, 0};
  buffer_.push_back(Buffered{next_seq_++, std::vector<std::byte>(message.begin(), message.end())});
  buffered_bytes_ += message.size();
  if (session_ != 0) send_ingress(buffer_.back());
  return Offer{OfferStatus::accepted, buffer_.back().seq};
}

void ClientCore::send_ingress(Buffered& message) {
  // A message buffered before the cluster said its limit, and above it, is withdrawn instead: the leader records
  // its seq as refused (a definite fate, and no gap for the messages after it), whatever any node's limit.
  if (cluster_max_message_ != 0 && message.message.size() > cluster_max_message_) {
    message.withdrawn = true;
    protocol::append_frame(protocol::IngressWithdrawn{session_, message.seq - session_base_}, out_);
    return;
  }
  message.sent_whole = true;
  protocol::append_frame(protocol::Ingress{session_, message.seq - session_base_, message.message}, out_);
}

void ClientCore::resend_from(std::uint64_t seq) {
  for (Buffered& message : buffer_)
    if (message.seq >= seq) send_ingress(message);
}

void ClientCore::acknowledge(std::uint64_t seq, std::uint64_t position) {
  while (!buffer_.empty() && buffer_.front().seq <= seq) {
    // A withdrawn message's seq is covered by "applied up to" too, but the cluster only recorded it as refused.
    if (buffer_.front().surely_refused())
      events_.emplace_back(RejectedEvent{buffer_.front().seq, "larger than the cluster's message limit"});
    else
      events_.emplace_back(AppliedEvent{buffer_.front().seq, position});
    buffered_bytes_ -= buffer_.front().message.size();
    buffer_.pop_front();
  }
  acked_ = std::max(acked_, seq);
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
  events_.emplace_back(EgressEvent{seq, std::vector<std::byte>(message.begin(), message.end())});
}

void ClientCore::on_frame(const protocol::Frame& frame, Time now) {
  if (link_ != Link::open || state_ == ClientState::closed) return;
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
          for (auto it = buffer_.begin(); it != buffer_.end(); ++it) {
            if (it->seq != rejected->seq + session_base_) continue;
            events_.emplace_back(RejectedEvent{it->seq, "larger than the cluster's message limit"});
            buffered_bytes_ -= it->message.size();
            buffer_.erase(it);
            break;
          }
          return;
        case protocol::IngressRejectReason::not_leader:
        case protocol::IngressRejectReason::unknown_session:
          drop_connection(now, "the node is no longer the leader", false);
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
      settle_buffer(true, closed_before_applying(closed->reason));
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
    drop_connection(now, fmt::format("malformed session reply: {}", reply.error().describe()), false);
    return;
  }
  if (reply->status == protocol::SessionStatus::opened || reply->status == protocol::SessionStatus::rejected ||
      reply->status == protocol::SessionStatus::busy) {
    // From a leader: a lower term than known is a deposed one's (a minority leader that has not noticed yet), whose
    // answer must neither open a session nor close the client for good.
    if (stale(reply->term)) return;
  }
  last_heard_ = now;
  switch (reply->status) {
    case protocol::SessionStatus::redirect:
      note_leader(reply->leader_id, reply->term);
      redirect_ = std::string(reply->text);
      drop_connection(now, fmt::format("redirected to node {} at {}", reply->leader_id, reply->text), true);
      return;
    case protocol::SessionStatus::no_leader:
      // Keep the connection: the node says as soon as a leader is elected. Its term is not learned (note_leader
      // takes none without a leader): a partitioned node's may be above the real leader's.
      if (session_ != 0) {
        session_ = 0;
        waiting_since_ = now;
        set_state(ClientState::reconnecting, std::string(reply->text));
      }
      return;
    case protocol::SessionStatus::rejected:
      // Messages of an earlier session may have been applied before the refusal; of none, none were.
      settle_buffer(known_session_ == 0, "the cluster refused the session");
      set_state(ClientState::closed, fmt::format("refused by the cluster: {}", reply->text));
      close_ = true;
      link_ = Link::none;
      return;
    case protocol::SessionStatus::busy: return handle_busy(reply->text, now);
    case protocol::SessionStatus::opened: break;
  }
  if (incarnation_high_ != 0 || incarnation_low_ != 0) {
    if (reply->incarnation.high != incarnation_high_ || reply->incarnation.low != incarnation_low_) {
      close_for_other_incarnation();
      return;
    }
  } else {
    incarnation_high_ = reply->incarnation.high;
    incarnation_low_ = reply->incarnation.low;
  }
  if (configuration_ == 0) {
    // The first node to serve this client fixes its configuration; on_connected checked it against the count.
    configuration_members_ = connected_members_;
    configuration_ = protocol::configuration_id(connected_members_);
  }
  note_leader(reply->leader_id, reply->term);
  cluster_max_message_ = reply->max_message_size;
  SessionChange change = SessionChange::opened;
  if (known_session_ == 0) {
    if (replaced_pending_) change = SessionChange::replaced;
  } else if (reply->session_id == known_session_) {
    change = SessionChange::resumed;
  } else {
    settle_replaced_session(*reply);
    start_session_numbering();
    change = SessionChange::replaced;
  }
  replaced_pending_ = false;
  busy_replies_ = 0;
  session_ = reply->session_id;
  known_session_ = reply->session_id;
  attempt_ = 0;
  redirected_this_round_ = false;
  events_.emplace_back(SessionEvent{session_, change});
  set_state(ClientState::connected, fmt::format("session {}", to_string(change)));
  acknowledge(reply->last_applied_seq + session_base_, 0);
  resent_from_ = acked_ + 1;
  resend_from(acked_ + 1);
  last_sent_ = now;
}

void ClientCore::handle_busy(std::string_view text, Time now) {
  // Not permanent: the buffer waits (no session was opened, so nothing in it has a new fate), and the client asks
  // again. A busy cluster answers, so on_connected starts the backoff over every time: count the busy answers in
  // a row instead, or every waiting client would ask again within the first backoff step, forever.
  attempt_ = ++busy_replies_;
  const ClientState before = state_;
  std::string reason = fmt::format("the cluster is busy: {}", text);
  drop_connection(now, reason, false);
  // Not a state change unless the client was connected, but the application should know why it is waiting.
  if (state_ == before) events_.emplace_back(StateEvent{state_, std::move(reason)});
}

void ClientCore::settle_replaced_session(const protocol::SessionReply& reply) {
  if (reply.replaced_session == known_session_ && reply.replaced_reason != protocol::SessionCloseReason{}) {
    // The old session's tombstone: up to its last applied seq, applied; after it, never (the session is closed).
    acknowledge(reply.replaced_last_seq + session_base_, 0);
    settle_buffer(true, closed_before_applying(reply.replaced_reason));
    return;
  }
  // The session is gone and so is its tombstone (or the node could not say which session it replaced): what it
  // had not acknowledged may or may not have been applied.
  settle_buffer(false, "the cluster closed the session and its record was evicted: whether it was applied is unknown");
}

void ClientCore::close(Time now) {
  (void)now;
  if (state_ == ClientState::closed) return;
  if (session_ != 0) protocol::append_frame(protocol::SessionClose{session_}, out_);
  settle_buffer(false, "the client closed before it was acknowledged");
  set_state(ClientState::closed, "closed by the application");
  close_ = link_ != Link::none;
  link_ = Link::none;
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
