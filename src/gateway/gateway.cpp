#include "gateway/gateway.h"

#include <algorithm>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "common/assert.h"
#include "common/planted_bug.h"
#include "protocol/catalogue.h"

// Planted bugs, for the simulator's self-test only (common/planted_bug.h; see consensus/raft.cpp):
//  11: a resume does not resend the first egress of the window the client has not seen: an egress skipped
//  13: (gateway.h, send_frames) a connection that refused a frame still gets its later frames: a hole in its stream

namespace cohort::gateway {

using consensus::Role;

namespace {
std::uint32_t milliseconds(Duration duration) {
  return static_cast<std::uint32_t>(
      std::min<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count(), UINT32_MAX));
}
}  // namespace

const char* to_string(CloseCause cause) noexcept {
  switch (cause) {
    case CloseCause::malformed_frame: return "malformed frame";
    case CloseCause::unexpected_frame: return "unexpected frame";
    case CloseCause::silent: return "silent";
    case CloseCause::send_buffer_full: return "its send buffer is full";
  }
  return "unknown";
}

Gateway::Gateway(GatewayConfig config, host::Replica& replica)
    : config_(std::move(config)),
      replica_(replica),
      role_(replica.raft().role()),
      term_(replica.raft().term()),
      leader_(replica.raft().leader()),
      serving_(replica.serving()) {
  COHORT_ASSERT(config_.client_keepalive_interval > Duration{0});
  COHORT_ASSERT(config_.heartbeat_interval > Duration{0});
  COHORT_ASSERT(config_.activity_interval > Duration{0});
}

void Gateway::set_client_endpoint(NodeId member, std::string endpoint) {
  client_endpoints_[member] = std::move(endpoint);
}

void Gateway::on_connected(ConnectionId id, protocol::PeerRole role) {
  COHORT_ASSERT(role != protocol::PeerRole::node);
  COHORT_ASSERT(!connections_.contains(id));  // the driver never reuses an id
  Connection connection;
  connection.role = role;
  connections_.emplace(id, connection);
}

void Gateway::on_disconnected(ConnectionId id) { forget(id); }

bool Gateway::on_frame(ConnectionId id, const protocol::Frame& frame, Time now) {
  const auto it = connections_.find(id);
  if (it == connections_.end()) return true;  // closed by the gateway while the driver still held its frames
  if (frame.header.type == protocol::MessageType::ping || frame.header.type == protocol::MessageType::status_request)
    return false;
  if (frame.header.type == protocol::MessageType::admin_request) {
    // An operator's command: not for whoever can open a session (the node checks the admin connection's right).
    if (it->second.role == protocol::PeerRole::admin) return false;
    close(id, CloseCause::unexpected_frame, "an admin_request on a client connection");
    return true;
  }
  handle(id, it->second, frame, now);
  return true;
}

void Gateway::send_frames(const FrameSink& send) {
  refused_.clear();
  for (const OutFrame& frame : outputs_.frames) {  // on_send_failed() adds to `closing` only
    if (planted_bug() != 13 && std::find(refused_.begin(), refused_.end(), frame.connection) != refused_.end())
      continue;
    if (send(frame.connection, outputs_.frame(frame))) continue;
    refused_.push_back(frame.connection);
    on_send_failed(frame.connection);
  }
}

void Gateway::on_send_failed(ConnectionId id) {
  if (!connections_.contains(id)) return;  // listed to close already
  close(id, CloseCause::send_buffer_full, {});
}

void Gateway::handle(ConnectionId id, Connection& connection, const protocol::Frame& frame, Time now) {
  const auto malformed = [&](const protocol::DecodeError& error) {
    close(id, CloseCause::malformed_frame, error.describe());
  };
  switch (frame.header.type) {
    case protocol::MessageType::session_open: {
      // An operator's tool is never kept alive nor closed for silence: a session bound to it would never expire.
      if (connection.role != protocol::PeerRole::client)
        return close(id, CloseCause::unexpected_frame, "a session_open on an admin connection");
      auto open = protocol::decode<protocol::SessionOpen>(frame);
      if (!open) return malformed(open.error());
      connection.waiting_open = host::Id128{open->client_id_high, open->client_id_low};
      connection.client = *connection.waiting_open;
      connection.resume = open->session_id;
      connection.last_egress = open->last_egress_seq;
      connection.credential.assign(reinterpret_cast<const char*>(open->credential.data()), open->credential.size());
      try_open(id, connection, now);
      return;
    }
    case protocol::MessageType::ingress: {
      auto ingress = protocol::decode<protocol::Ingress>(frame);
      if (!ingress) return malformed(ingress.error());
      if (connection.session != ingress->session_id) {
        send(id, protocol::IngressRejected{ingress->session_id, ingress->seq, 0,
                                           protocol::IngressRejectReason::unknown_session,
                                           replica_.raft().term().value(), known_leader()});
        return;
      }
      auto appended = replica_.ingress(ingress->session_id, ingress->seq, ingress->payload, now);
      if (appended) {
        ++counters_.ingress_messages;
        counters_.ingress_bytes += ingress->payload.size();
      } else {
        send(id, protocol::IngressRejected{ingress->session_id, ingress->seq, ingress->seq,
                                           protocol::IngressRejectReason::not_leader, replica_.raft().term().value(),
                                           known_leader()});
      }
      return;
    }
    case protocol::MessageType::ingress_withdrawn: {
      auto withdrawn = protocol::decode<protocol::IngressWithdrawn>(frame);
      if (!withdrawn) return malformed(withdrawn.error());
      if (connection.session != withdrawn->session_id) {
        send(id, protocol::IngressRejected{withdrawn->session_id, withdrawn->seq, 0,
                                           protocol::IngressRejectReason::unknown_session,
                                           replica_.raft().term().value(), known_leader()});
        return;
      }
      if (!replica_.withdraw(withdrawn->session_id, withdrawn->seq, now).has_value())
        send(id, protocol::IngressRejected{withdrawn->session_id, withdrawn->seq, withdrawn->seq,
                                           protocol::IngressRejectReason::not_leader, replica_.raft().term().value(),
                                           known_leader()});
      return;
    }
    case protocol::MessageType::keep_alive: {
      // Its only effect is the life it shows (the driver's silence probe saw its bytes); a malformed one still closes
      // the connection.
      auto keep_alive = protocol::decode<protocol::KeepAlive>(frame);
      if (!keep_alive) return malformed(keep_alive.error());
      return;
    }
    case protocol::MessageType::session_close: {
      auto close_request = protocol::decode<protocol::SessionClose>(frame);
      if (!close_request) return malformed(close_request.error());
      if (connection.session == close_request->session_id) (void)replica_.close_session(close_request->session_id, now);
      return;
    }
    default:
      close(id, CloseCause::unexpected_frame,
            std::string("unexpected ") + protocol::to_string(frame.header.type) + " frame");
      return;
  }
}

// A session_open is appended by a leader that is serving (its no-op applied) and not handing over; otherwise
// the client hears of the leader, or waits on this connection until there is one.
void Gateway::try_open(ConnectionId id, Connection& connection, Time now) {
  COHORT_ASSERT(connection.waiting_open.has_value());
  if (!replica_.serving() || stopping_ || replica_.raft().transfer_target()) {
    reply_not_leader(id, stopping_ ? "this node is stopping" : "no leader yet: waiting for an election", now);
    return;
  }
  if (config_.authenticator) {
    // Before the open is appended (never at apply: the decision is this leader's alone and is not replicated), and
    // before it may take over an open appended for another connection of the same client id.
    const auto* bytes = reinterpret_cast<const std::byte*>(connection.credential.data());
    std::optional<std::string> refused;
    try {
      refused = config_.authenticator->refuse(connection.waiting_open->high, connection.waiting_open->low,
                                              std::span(bytes, connection.credential.size()));
    } catch (const std::exception& error) {
      // A user's authenticator must not take the node down: a failure to decide is a refusal.
      refused = fmt::format("the authenticator failed: {}", error.what());
    } catch (...) {
      refused = "the authenticator failed";
    }
    if (refused) {
      connection.waiting_open.reset();
      refuse_open(id, *refused);
      return;
    }
  }
  if (const auto pending = pending_opens_.find(*connection.waiting_open); pending != pending_opens_.end()) {
    // Appended already, maybe for an earlier connection of the same client: the answer goes to this one, and the
    // earlier connection stops waiting (else its next retry would append another open and take the binding back).
    if (pending->second != id)
      if (const auto earlier = connections_.find(pending->second); earlier != connections_.end())
        earlier->second.waiting_open.reset();
    pending->second = id;
    // Heard every keep-alive interval while the open commits, so a slow commit does not pass for a dead node (the
    // client drops a connection silent for its silence limit).
    send(id, protocol::KeepAlive{0});
    return;
  }
  auto appended = replica_.open_session(*connection.waiting_open, now, connection.resume);
  if (!appended) {
    reply_not_leader(id, host::to_string(appended.error()), now);
    return;
  }
  pending_opens_[*connection.waiting_open] = id;
}

void Gateway::reply_not_leader(ConnectionId id, std::string_view why, Time now) {
  const consensus::Raft& raft = replica_.raft();
  protocol::SessionReply reply;
  reply.term = raft.term().value();
  // A leader silent for three heartbeats is probably gone: sending the client there would only cost it a
  // refused connection and a backoff step. It waits here instead and hears of the next leader at once.
  const auto leader = raft.leader();
  const bool leader_alive =
      now - raft.last_leader_contact() < kLeaderPresumedDeadHeartbeats * config_.heartbeat_interval;
  if (leader && *leader != config_.self && leader_alive) {
    reply.status = protocol::SessionStatus::redirect;
    ++counters_.redirects;
    reply.leader_id = leader->value();
    const auto endpoint = client_endpoints_.find(*leader);
    COHORT_ASSERT(endpoint != client_endpoints_.end());  // the driver names every member's
    reply.text = endpoint->second;
  } else {
    reply.status = protocol::SessionStatus::no_leader;
    reply.text = why;
  }
  announce_keepalive(reply);
  send(id, reply);
}

// Every session reply says how often this node keeps a client alive and how long it waits on a silent one, so the
// client adapts before its first session too (a client waiting at a node with no leader must not be dropped).
void Gateway::announce_keepalive(protocol::SessionReply& reply) const {
  reply.keepalive_interval_ms = milliseconds(config_.client_keepalive_interval);
  reply.silence_limit_ms = milliseconds(kClientSilenceKeepAliveIntervals * config_.client_keepalive_interval);
}

void Gateway::refuse_open(ConnectionId id, std::string_view why) {
  protocol::SessionReply reply;
  reply.status = protocol::SessionStatus::rejected;
  reply.term = replica_.raft().term().value();
  reply.leader_id = known_leader();
  reply.text = why.substr(0, protocol::kMaxErrorTextLength);
  announce_keepalive(reply);
  send(id, reply);
}

std::uint32_t Gateway::known_leader() const {
  const auto leader = replica_.raft().leader();
  return leader ? leader->value() : 0;
}

// A session is bound to the connection that opened it last: an older connection of the same client, closing late,
// must not take the binding with it.
void Gateway::unbind(ConnectionId id, Connection& connection) {
  if (!connection.session) return;
  const auto bound = bound_.find(*connection.session);
  if (bound != bound_.end() && bound->second == id) bound_.erase(bound);
  connection.session.reset();
}

// Clients waiting on this node hear of a change of leader at once, instead of at their next backoff step.
void Gateway::answer_waiting_clients(Time now) {
  for (auto& [id, connection] : connections_) {
    if (connection.role != protocol::PeerRole::client) continue;
    if (connection.session && !replica_.serving()) {
      // This node no longer leads: the bound session's client must follow the new leader. It waits here for one
      // (its open is retried) unless it is redirected at once.
      unbind(id, connection);
      connection.waiting_open = connection.client;
      reply_not_leader(id, "leadership moved", now);
      continue;
    }
    if (connection.waiting_open && !pending_opens_.contains(*connection.waiting_open)) try_open(id, connection, now);
  }
}

void Gateway::after_ready(Time now) {
  deliver_host_outputs();
  const consensus::Raft& raft = replica_.raft();
  if (raft.role() != role_ || raft.term() != term_ || raft.leader() != leader_) {
    role_ = raft.role();
    term_ = raft.term();
    leader_ = raft.leader();
    if (role_ != Role::leader) pending_opens_.clear();
    answer_waiting_clients(now);
  }
  if (replica_.serving() != serving_) {
    // A new leader answers session opens only once its no-op is applied: the waiting clients hear now.
    serving_ = replica_.serving();
    answer_waiting_clients(now);
  }
}

void Gateway::deliver_host_outputs() {
  auto& outputs = replica_.host().outputs();
  const bool leading = replica_.raft().role() == Role::leader;
  const std::uint64_t term = replica_.raft().term().value();
  for (auto& output : outputs) {
    std::visit(
        [&](auto& out) {
          using Out = std::decay_t<decltype(out)>;
          if constexpr (std::is_same_v<Out, host::SessionOpened>) {
            answer_open(out);
          } else if constexpr (std::is_same_v<Out, host::SessionRefused>) {
            const auto pending = pending_opens_.find(out.client);
            if (pending == pending_opens_.end()) return;
            const ConnectionId id = pending->second;
            pending_opens_.erase(pending);
            if (const auto in = connections_.find(id); in != connections_.end()) in->second.waiting_open.reset();
            // Retryable: the client keeps its buffer and asks again after a backoff step.
            protocol::SessionReply reply;
            reply.status = protocol::SessionStatus::busy;
            ++counters_.busy_replies;
            reply.term = term;
            reply.leader_id = config_.self.value();
            if (out.replaced) {
              reply.replaced_session = out.replaced->session;
              reply.replaced_last_seq = out.replaced->last_seq;
              reply.replaced_reason = out.replaced->known
                                          ? static_cast<protocol::SessionCloseReason>(out.replaced->reason)
                                          : protocol::SessionCloseReason{};
            }
            reply.text = "the cluster's session limit is reached";
            announce_keepalive(reply);
            send(id, reply);
          } else {
            if constexpr (std::is_same_v<Out, host::SessionEnded>)
              outputs_.sessions_closed.push_back(SessionClosedNote{out.session, out.reason, out.last_seq});
            // Every replica computes these; only the leader's gateway has the client's connection bound.
            const auto bound = bound_.find(out.session);
            if (!leading || bound == bound_.end()) return;
            const ConnectionId id = bound->second;
            if constexpr (std::is_same_v<Out, host::Applied>) {
              gather_ack(out.session, out.seq, out.position);
            } else if constexpr (std::is_same_v<Out, host::Rejected>) {
              send_ack(out.session);  // fates reach the client in seq order: what was applied before, first
              send(id, protocol::IngressRejected{out.session, out.seq, out.expected,
                                                 static_cast<protocol::IngressRejectReason>(out.reason), term,
                                                 config_.self.value()});
            } else if constexpr (std::is_same_v<Out, host::EgressOut>) {
              send(id, protocol::Egress{out.session, out.egress_seq, out.message, term, config_.self.value()});
              ++counters_.egress_messages;
              counters_.egress_bytes += out.message.size();
              if (const auto in = connections_.find(id); in != connections_.end())
                in->second.last_egress = out.egress_seq;
            } else if constexpr (std::is_same_v<Out, host::SessionEnded>) {
              send_ack(out.session);  // what was applied before the close, first
              send(id, protocol::SessionClosed{out.session, out.last_seq,
                                               static_cast<protocol::SessionCloseReason>(out.reason), term,
                                               config_.self.value()});
              const auto in = connections_.find(id);
              if (in != connections_.end()) in->second.session.reset();
              bound_.erase(out.session);
            }
          }
        },
        output);
  }
  outputs.clear();
  send_acks();
}

// The answer to an open appended here: bind the session to the connection that asked last, reply (with the fate of
// a session it asked to resume and that is closed), then resend the egress window the client has not seen, up to
// the open's position; egress applied after the open follows live. All in this order, in one pass.
void Gateway::answer_open(const host::SessionOpened& out) {
  const auto pending = pending_opens_.find(out.client);
  if (pending == pending_opens_.end()) return;
  const ConnectionId id = pending->second;
  pending_opens_.erase(pending);
  const auto in = connections_.find(id);
  if (in == connections_.end()) return;
  Connection& connection = in->second;
  connection.waiting_open.reset();
  // A connection carries one session: one it had before (another client id opened on it) is unbound, or it would
  // stay bound, and noted as active, after this connection is gone.
  if (connection.session && *connection.session != out.session) unbind(id, connection);
  if (const auto old = bound_.find(out.session); old != bound_.end() && old->second != id)
    if (const auto previous = connections_.find(old->second); previous != connections_.end())
      previous->second.session.reset();  // the client moved to this connection
  connection.session = out.session;
  bound_[out.session] = id;
  const std::uint64_t term = replica_.raft().term().value();
  protocol::SessionReply reply;
  reply.status = protocol::SessionStatus::opened;
  reply.leader_id = config_.self.value();
  reply.term = term;
  reply.session_id = out.session;
  reply.last_applied_seq = out.last_seq;
  reply.max_message_size = config_.max_message_size;
  reply.incarnation = protocol::Incarnation{replica_.host().incarnation().high, replica_.host().incarnation().low};
  reply.egress_seq = out.egress_seq;
  if (out.replaced) {
    reply.replaced_session = out.replaced->session;
    reply.replaced_last_seq = out.replaced->last_seq;
    // 0: the tombstone is gone, the fate of what the client had not seen acknowledged cannot be known.
    reply.replaced_reason = out.replaced->known ? static_cast<protocol::SessionCloseReason>(out.replaced->reason)
                                                : protocol::SessionCloseReason{};
  }
  announce_keepalive(reply);
  send(id, reply);
  // The client's last egress counts only for the session it names; a session new to it starts from 1. Above the
  // session's egress seq only if the cluster lost the newest part of its log: the client then takes what follows
  // the cluster's as new, and so must a later reopen on its behalf.
  const std::uint64_t seen = out.session == connection.resume ? std::min(connection.last_egress, out.egress_seq) : 0;
  // From now on the connection resumes this session, from what it was sent, if this node reopens it on the
  // client's behalf (answer_waiting_clients): the connection delivers in order what was sent on it.
  connection.resume = out.session;
  connection.last_egress = seen;
  for (const host::EgressRecord& record : replica_.host().egress_window(out.session)) {
    if (record.seq <= seen) continue;
    if (record.seq > out.egress_seq) break;  // applied after the open: it follows live, from the outputs
    if (planted_bug() == 11 && record.seq == seen + 1 && seen > 0) continue;
    send(id, protocol::Egress{out.session, record.seq, record.message, term, config_.self.value()});
    ++counters_.egress_messages;
    counters_.egress_bytes += record.message.size();
    connection.last_egress = record.seq;
  }
}

void Gateway::gather_ack(SessionId session, std::uint64_t seq, LogIndex position) {
  // Most passes carry one or a few sessions' acks, often in runs: the newest is found from the back.
  for (auto it = acks_.rbegin(); it != acks_.rend(); ++it) {
    if (it->session != session) continue;
    it->seq = std::max(it->seq, seq);
    it->position = std::max(it->position, position);
    return;
  }
  acks_.push_back(PendingAck{session, seq, position});
}

void Gateway::send_ack(SessionId session) {
  const auto pending =
      std::find_if(acks_.begin(), acks_.end(), [&](const PendingAck& a) { return a.session == session; });
  if (pending == acks_.end()) return;
  if (const auto bound = bound_.find(session); bound != bound_.end())
    send(bound->second, protocol::Ack{session, pending->seq, pending->position.value(), replica_.raft().term().value(),
                                      config_.self.value()});
  acks_.erase(pending);
}

void Gateway::send_acks() {
  const std::uint64_t term = replica_.raft().term().value();
  for (const PendingAck& ack : acks_)
    if (const auto bound = bound_.find(ack.session); bound != bound_.end())
      send(bound->second, protocol::Ack{ack.session, ack.seq, ack.position.value(), term, config_.self.value()});
  acks_.clear();
}

void Gateway::note_activity(Time now) {
  if (now < next_activity_ || !replica_.serving()) return;
  next_activity_ = now + config_.activity_interval;
  activity_.clear();
  for (const auto& [session, connection] : bound_) activity_.push_back(session);  // ascending: bound_ is ordered
  if (!activity_.empty()) (void)replica_.note_activity(activity_, now);           // refused only if no longer leading
}

void Gateway::tick(Time now, const SilenceProbe& silent_for) {
  note_activity(now);
  if (now < next_keepalive_) return;
  next_keepalive_ = now + config_.client_keepalive_interval;
  const std::uint64_t term = replica_.raft().term().value();
  silent_.clear();
  for (auto& [id, connection] : connections_) {
    if (connection.role != protocol::PeerRole::client) continue;
    // A client silent for four keep-alive intervals is gone, whatever TCP says. (Closed after the pass, so the
    // pass sees every binding and pending open as they were when it began.)
    if (silent_for(id) > kClientSilenceKeepAliveIntervals * config_.client_keepalive_interval) {
      silent_.push_back(id);
      continue;
    }
    if (connection.session && replica_.serving()) {
      send(id, protocol::Ack{*connection.session, replica_.host().last_seq(*connection.session),
                             replica_.host().applied_index().value(), term, config_.self.value()});
    } else if (connection.waiting_open) {
      try_open(id, connection, now);
    }
  }
  for (const ConnectionId id : silent_) close(id, CloseCause::silent, {});
}

void Gateway::set_stopping(Time now) {
  stopping_ = true;
  answer_waiting_clients(now);
}

void Gateway::close(ConnectionId id, CloseCause cause, std::string detail) {
  forget(id);
  outputs_.closing.push_back(Closing{id, cause, std::move(detail)});
}

void Gateway::forget(ConnectionId id) {
  const auto it = connections_.find(id);
  if (it == connections_.end()) return;
  unbind(id, it->second);
  if (it->second.waiting_open) {
    const auto pending = pending_opens_.find(*it->second.waiting_open);
    if (pending != pending_opens_.end() && pending->second == id) pending_opens_.erase(pending);
  }
  connections_.erase(it);
}

template <typename Message>
void Gateway::send(ConnectionId id, const Message& message) {
  const std::size_t begin = outputs_.bytes.size();
  protocol::append_frame(message, outputs_.bytes);
  outputs_.frames.push_back(OutFrame{id, begin, outputs_.bytes.size()});
}

}  // namespace cohort::gateway
