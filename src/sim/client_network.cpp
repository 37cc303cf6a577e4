#include "sim/client_network.h"

#include <algorithm>

#include "common/assert.h"

namespace cohort::sim {

ClientNetwork::ClientNetwork(std::size_t clients, const FaultMix& mix, const Phase& phase, Random& random,
                             EventQueue& events, const Trace& trace, Stats& stats)
    : mix_(mix), phase_(phase), random_(random), events_(events), trace_(trace), stats_(stats), cut_(clients, false) {}

void ClientNetwork::attach(ClientNetworkNodes& nodes, ClientNetworkClients& clients) {
  nodes_ = &nodes;
  clients_ = &clients;
}

ClientNetwork::Link* ClientNetwork::find(std::uint64_t connection) {
  const auto it = links_.find(connection);
  return it == links_.end() ? nullptr : &it->second;
}

// Loopback: tens of microseconds to a couple of milliseconds; a slow frame (a stalled sender, a full socket buffer
// draining) up to 800 ms, below the clients' and gateways' silence limits so that it delays without killing.
Duration ClientNetwork::delay() {
  if (phase_ == Phase::safety && random_.chance(mix_.client_long_delay_per_mille, 1000))
    return micros(random_.between(50'000, 800'000));
  return micros(random_.between(50, 2'000));
}

void ClientNetwork::schedule_link(LinkEvent what, std::uint64_t connection, Duration after) {
  Event event;
  event.kind = EventKind::client_link;
  event.connection = connection;
  event.detail = static_cast<std::uint8_t>(what);
  events_.schedule(after, std::move(event));
}

bool ClientNetwork::node_side_live(const Link& link) const {
  return link.node_holds && nodes_->incarnation(link.node) == link.incarnation;
}

// A link both sides are done with, and whose connect has resolved, is forgotten: events still in flight for it find
// nothing and are dropped.
void ClientNetwork::forget_if_done(std::uint64_t connection, const Link& link) {
  if (!link.node_holds && !link.client_holds && (link.accepted || link.broken)) links_.erase(connection);
}

// --- connecting -------------------------------------------------------------------------------------------------

std::uint64_t ClientNetwork::connect(std::uint32_t client, std::uint32_t node) {
  const std::uint64_t id = next_id_++;
  Link link;
  link.client = client;
  link.node = node;
  link.started = events_.now();
  links_.emplace(id, link);
  ++stats_.client_connects;
  trace_.client(client, "connects to n{} (connection {})", node + 1, id);
  schedule_link(LinkEvent::resolve, id, micros(random_.between(100, 2'000)));
  return id;
}

void ClientNetwork::resolve(std::uint64_t connection, Link& link) {
  if (!link.client_holds) {  // the client gave it up (or is gone) before it resolved
    link.broken = true;
    forget_if_done(connection, link);
    return;
  }
  const Time now = events_.now();
  if (cut_[link.client]) {
    // No answer reaches a client that is cut off: its transport gives up after the handshake timeout, unless the
    // cut heals first and the handshake goes through.
    if (now - link.started < kConnectTimeout) {
      schedule_link(LinkEvent::resolve, connection, link.started + kConnectTimeout - now);
      return;
    }
    link.broken = true;
    tell_client_end(connection, link, "the handshake timed out", now);
    return;
  }
  const auto incarnation = nodes_->incarnation(link.node);
  if (!incarnation) {
    link.broken = true;
    tell_client_end(connection, link, "connection refused", now);
    return;
  }
  link.accepted = true;
  link.incarnation = *incarnation;
  link.node_holds = true;
  link.heard_at = now;
  link.to_node_at = link.to_client_at = now;
  trace_.client(link.client, "connected to n{} (connection {})", link.node + 1, connection);
  const std::uint32_t client = link.client;
  const std::uint32_t node = link.node;
  nodes_->on_connected(node, connection);
  clients_->on_connected(client, connection, nodes_->identity(node));
}

// --- frames -----------------------------------------------------------------------------------------------------

void ClientNetwork::send_to_node(std::uint64_t connection, ByteSpan frame) {
  Link* link = find(connection);
  if (link == nullptr || !link->client_holds) return;
  send(connection, *link, Toward::node, frame);
}

bool ClientNetwork::send_to_client(std::uint64_t connection, ByteSpan frame) {
  Link* link = find(connection);
  if (link == nullptr || !link->node_holds) return true;
  // As the transport's send buffer: one frame always fits into an empty one.
  if (mix_.client_send_buffer != 0 && link->to_client_bytes != 0 &&
      link->to_client_bytes + frame.size() > mix_.client_send_buffer) {
    ++stats_.client_sends_refused;
    trace_.line(link->node, "send buffer of connection {} full ({} bytes waiting)", connection, link->to_client_bytes);
    return false;
  }
  link->to_client_bytes += frame.size();
  send(connection, *link, Toward::client, frame);
  return true;
}

void ClientNetwork::send(std::uint64_t connection, Link& link, Toward toward, ByteSpan frame) {
  if (!link.accepted || link.broken || cut_[link.client]) {
    ++stats_.client_frames_lost;
    return;
  }
  Time& last = toward == Toward::node ? link.to_node_at : link.to_client_at;
  const Time at = std::max({events_.now() + delay(), last, link.stalled_until});
  last = at;
  Event event;
  event.kind = EventKind::client_frame;
  event.connection = connection;
  event.detail = static_cast<std::uint8_t>(toward);
  event.bytes.assign(frame.begin(), frame.end());
  events_.schedule(at - events_.now(), std::move(event));
}

void ClientNetwork::on_frame_event(const Event& event) {
  Link* link = find(event.connection);
  if (link != nullptr && static_cast<Toward>(event.detail) == Toward::client)
    link->to_client_bytes -= event.bytes.size();
  // Lost with a reset or a cut that came while it was on its way.
  if (link == nullptr || link->broken || cut_[link->client]) {
    ++stats_.client_frames_lost;
    return;
  }
  const protocol::FrameScan scan = protocol::scan_frame(event.bytes, protocol::kMaxFrameLengthCeiling);
  COHORT_ASSERT(scan.status == protocol::FrameScan::Status::complete);  // both ends send whole, valid frames
  COHORT_ASSERT(scan.consumed == event.bytes.size());
  ++stats_.client_frames;
  if (static_cast<Toward>(event.detail) == Toward::node) {
    if (!node_side_live(*link)) return;
    link->heard_at = events_.now();
    trace_.line(link->node, "gateway recv {} from c{} (connection {})", protocol::to_string(scan.frame.header.type),
                link->client + 1, event.connection);
    nodes_->on_frame(link->node, event.connection, scan.frame);
  } else {
    if (!link->client_holds) return;
    trace_.client(link->client, "recv {} from n{} (connection {})", protocol::to_string(scan.frame.header.type),
                  link->node + 1, event.connection);
    clients_->on_frame(link->client, event.connection, scan.frame);
  }
}

// --- ends -------------------------------------------------------------------------------------------------------

void ClientNetwork::tell_node_end(std::uint64_t connection, Link& link, Time not_before) {
  if (!link.node_holds) return;
  const Time at = std::max(events_.now() + micros(random_.between(50, 2'000)), not_before);
  schedule_link(LinkEvent::node_hears_end, connection, at - events_.now());
}

void ClientNetwork::tell_client_end(std::uint64_t connection, Link& link, const char* why, Time not_before) {
  if (!link.client_holds) return;
  link.why = why;
  const Time at = std::max(events_.now() + micros(random_.between(50, 2'000)), not_before);
  schedule_link(LinkEvent::client_hears_end, connection, at - events_.now());
}

void ClientNetwork::close_by_client(std::uint64_t connection) {
  Link* link = find(connection);
  if (link == nullptr || !link->client_holds) return;
  link->client_holds = false;
  trace_.client(link->client, "closes connection {}", connection);
  // The FIN follows the data; to a client cut off, nothing travels: the node finds out by silence.
  if (link->accepted && !link->broken && !cut_[link->client]) tell_node_end(connection, *link, link->to_node_at);
  forget_if_done(connection, *link);
}

void ClientNetwork::close_by_node(std::uint64_t connection) {
  Link* link = find(connection);
  if (link == nullptr || !link->node_holds) return;
  link->node_holds = false;
  trace_.line(link->node, "gateway closes connection {} of c{}", connection, link->client + 1);
  if (!link->broken && !cut_[link->client])
    tell_client_end(connection, *link, "closed by the node", link->to_client_at);
  forget_if_done(connection, *link);
}

void ClientNetwork::reset(std::uint64_t connection) {
  Link* link = find(connection);
  if (link == nullptr || link->broken) return;
  link->broken = true;
  ++stats_.connection_resets;
  trace_.client(link->client, "connection {} to n{} resets", connection, link->node + 1);
  tell_node_end(connection, *link, events_.now());
  tell_client_end(connection, *link, "connection reset", events_.now());
}

void ClientNetwork::stall(std::uint64_t connection, Time until) {
  Link* link = find(connection);
  if (link == nullptr || link->broken) return;
  link->stalled_until = std::max(link->stalled_until, until);
  ++stats_.connection_stalls;
  trace_.client(link->client, "connection {} to n{} stalls for {} ms", connection, link->node + 1,
                as_micros(until - events_.now()) / 1000);
}

void ClientNetwork::node_down(std::uint32_t node) {
  scratch_.clear();
  for (auto& [id, link] : links_) {
    if (link.node != node || !link.accepted || link.broken) continue;
    // The crashed process's kernel resets its sockets; a client cut off hears nothing and finds out by silence.
    link.broken = true;
    link.node_holds = false;
    if (!cut_[link.client]) tell_client_end(id, link, "connection reset (the node went down)", events_.now());
    if (!link.client_holds) scratch_.push_back(id);
  }
  for (const std::uint64_t id : scratch_) links_.erase(id);
}

void ClientNetwork::client_gone(std::uint32_t client) {
  scratch_.clear();
  for (auto& [id, link] : links_) {
    if (link.client != client || !link.client_holds) continue;
    link.client_holds = false;
    if (link.accepted && !link.broken && !cut_[client]) tell_node_end(id, link, events_.now());
    link.broken = true;
    if (!link.node_holds) scratch_.push_back(id);
  }
  for (const std::uint64_t id : scratch_) links_.erase(id);
}

void ClientNetwork::on_link_event(const Event& event) {
  Link* link = find(event.connection);
  if (link == nullptr) return;
  switch (static_cast<LinkEvent>(event.detail)) {
    case LinkEvent::resolve: return resolve(event.connection, *link);
    case LinkEvent::node_hears_end: {
      if (!node_side_live(*link)) return;
      link->node_holds = false;
      const std::uint32_t node = link->node;
      trace_.line(node, "gateway hears connection {} of c{} end", event.connection, link->client + 1);
      forget_if_done(event.connection, *link);
      nodes_->on_disconnected(node, event.connection);
      return;
    }
    case LinkEvent::client_hears_end: {
      if (!link->client_holds) return;
      link->client_holds = false;
      link->broken = true;  // nothing more reaches either side
      const std::uint32_t client = link->client;
      const char* why = link->why;
      trace_.client(client, "hears connection {} end: {}", event.connection, why);
      forget_if_done(event.connection, *link);
      clients_->on_disconnected(client, event.connection, why);
      return;
    }
  }
}

// --- cut-offs ---------------------------------------------------------------------------------------------------

void ClientNetwork::set_cut_off(std::uint32_t client, bool cut) {
  cut_[client] = cut;
  if (!cut) return;
  // TCP never delivers a frame after losing the one before it: a connection that lost frames is dead for good, on
  // both sides, even once the cut heals. Neither side hears of it: each finds out by silence.
  for (auto& [id, link] : links_)
    if (link.client == client) link.broken = true;
}

void ClientNetwork::heal() { std::fill(cut_.begin(), cut_.end(), false); }

Duration ClientNetwork::silent_for(std::uint64_t connection) const {
  const auto it = links_.find(connection);
  COHORT_ASSERT(it != links_.end());  // the gateway asks only about connections it holds
  return events_.now() - it->second.heard_at;
}

std::optional<std::uint64_t> ClientNetwork::random_open_connection() {
  scratch_.clear();
  for (const auto& [id, link] : links_)
    if (link.accepted && !link.broken && link.node_holds && link.client_holds) scratch_.push_back(id);
  if (scratch_.empty()) return std::nullopt;
  return scratch_[random_.below(scratch_.size())];
}

}  // namespace cohort::sim
