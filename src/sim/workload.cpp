#include "sim/workload.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <string>
#include <type_traits>
#include <variant>

#include <fmt/format.h>

#include "cohort/services/kv_codec.h"
#include "common/assert.h"

namespace cohort::sim {

using namespace std::chrono_literals;

// --- the service ------------------------------------------------------------------------------------------------

void ProbeService::on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) {
  const RequestId request = RequestId::decode(services::peek_kv_request_id(message));
  std::vector<std::uint64_t>& seqs = applied_[request.instance];
  if (!seqs.empty() && request.seq <= seqs.back()) {
    const bool twice = std::binary_search(seqs.begin(), seqs.end(), request.seq);
    checker_.fail(fmt::format("node {} applies seq {} of client {} after seq {}: {}", node_.value(), request.seq,
                              request.instance, seqs.back(),
                              twice ? "an ingress applied twice" : "an ingress applied out of order"));
  }
  // Within a session the client numbers its messages consecutively, and the host delivers only the next one.
  // After a power loss its client goes on from the cluster's last seq in the session, past the ones it heard lost.
  const auto [last, first] = last_in_session_.try_emplace(session, request.seq);
  if (!first && request.seq != last->second + 1 &&
      !(request.seq > last->second + 1 && clients_.reported_lost(request.instance, last->second + 1, request.seq - 1)))
    checker_.fail(
        fmt::format("node {} applies seq {} of client {} in session {} right after seq {}: a gap in a session{}",
                    node_.value(), request.seq, request.instance, session, last->second,
                    request.seq > last->second + 1 ? ", and its client heard none of them lost" : ""));
  last->second = request.seq;
  seqs.push_back(request.seq);
  clients_.on_applied(node_, request);
  kv_.on_message(cluster, session, timestamp, message);
}

void ProbeService::on_session_close(Cluster& cluster, SessionId session, CloseReason reason) {
  if (reason == CloseReason::timeout) {
    // The close entry is being applied: its term names the leader that decided it.
    const auto term = log_.term_at(LogIndex{cluster.log_position()});
    COHORT_ASSERT(term.has_value());
    clients_.on_timeout_close(node_, session, *term, clock_.now());
  }
  kv_.on_session_close(cluster, session, reason);
}

void ProbeService::on_timer(Cluster& cluster, TimerId id, ClusterTime timestamp) {
  if (!fired_.insert(id).second) checker_.fail(fmt::format("node {} fires timer {} twice", node_.value(), id));
  kv_.on_timer(cluster, id, timestamp);
}

void ProbeService::on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) {
  const auto put = [&out](std::uint64_t value) {
    const std::size_t at = out.size();
    out.resize(at + 8);
    store_le<std::uint64_t>(out.data() + at, value);
  };
  const std::size_t length_at = out.size();
  put(0);
  kv_.on_take_snapshot(cluster, out);
  store_le<std::uint64_t>(out.data() + length_at, out.size() - length_at - 8);
  put(applied_.size());
  for (const auto& [instance, seqs] : applied_) {
    put(instance);
    put(seqs.size());
    for (const std::uint64_t seq : seqs) put(seq);
  }
}

void ProbeService::restore(Cluster& cluster, Bytes snapshot, bool running) {
  // The host wrote this snapshot and checked its bytes: a snapshot that does not read back is a bug here.
  std::size_t at = 0;
  const auto get = [&]() -> std::uint64_t {
    COHORT_ASSERT(snapshot.size() - at >= 8);
    const auto value = load_le<std::uint64_t>(snapshot.data() + at);
    at += 8;
    return value;
  };
  const std::uint64_t kv_length = get();
  COHORT_ASSERT(kv_length <= snapshot.size() - at);
  const Bytes kv = snapshot.subspan(at, kv_length);
  at += kv_length;
  if (running)
    kv_.on_restore(cluster, kv);
  else
    kv_.on_start(cluster, kv);
  applied_.clear();
  for (std::uint64_t instances = get(); instances > 0; --instances) {
    std::vector<std::uint64_t>& seqs = applied_[get()];
    for (std::uint64_t count = get(); count > 0; --count) seqs.push_back(get());
  }
  COHORT_ASSERT(at == snapshot.size());
  // What this incarnation checks per session and per timer starts again from the snapshot's position.
  last_in_session_.clear();
  fired_.clear();
}

bool ProbeService::applied(RequestId request) const {
  const auto it = applied_.find(request.instance);
  return it != applied_.end() && std::binary_search(it->second.begin(), it->second.end(), request.seq);
}

// --- the clients ------------------------------------------------------------------------------------------------

// host:port, as the client's options must be (client::validate).
std::string Workload::endpoint(std::uint32_t node) { return fmt::format("node-{}:7000", node + 1); }

std::optional<std::uint32_t> Workload::node_of(std::string_view endpoint, std::size_t nodes) {
  static constexpr std::string_view kPrefix = "node-";
  static constexpr std::string_view kSuffix = ":7000";
  if (!endpoint.starts_with(kPrefix) || !endpoint.ends_with(kSuffix)) return std::nullopt;
  std::uint32_t id = 0;
  const char* end = endpoint.data() + endpoint.size() - kSuffix.size();
  const auto parsed = std::from_chars(endpoint.data() + kPrefix.size(), end, id);
  if (parsed.ec != std::errc{} || parsed.ptr != end || id == 0 || id > nodes) return std::nullopt;
  return id - 1;
}

Workload::Workload(const FaultMix& mix, const Phase& phase, Random& random, EventQueue& events, const Trace& trace,
                   Stats& stats, Fingerprint& fingerprint, ClientNetwork& network, ClientChecker& checker)
    : mix_(mix),
      phase_(phase),
      random_(random),
      events_(events),
      trace_(trace),
      stats_(stats),
      fingerprint_(fingerprint),
      network_(network),
      checker_(checker),
      clients_(mix.clients) {
  for (std::uint32_t node = 0; node < mix.nodes; ++node) options_.members.push_back(endpoint(node));
  options_.keepalive_interval = 250ms;
  options_.silence_limit = 1000ms;
  // Shorter than the defaults, so that clients find a new leader within a few hundred milliseconds.
  options_.backoff_initial = 50ms;
  options_.backoff_max = 500ms;
  // Small, so that a client away for a while back-pressures its application.
  options_.max_buffered_messages = 32;
  options_.max_buffered_bytes = 4096;
  options_.max_message_size = 1024;  // a KV request is far smaller; the bytes bound must hold one of this size
  COHORT_ASSERT(!validate(options_).has_value());
}

void Workload::start() {
  for (std::uint32_t slot = 0; slot < clients_.size(); ++slot) {
    start_client(slot);
    Event tick;
    tick.kind = EventKind::client_tick;
    tick.client = slot;
    events_.schedule(micros(random_.between(1, 10'000)), std::move(tick));
  }
  Event offer;
  offer.kind = EventKind::client;
  events_.schedule(around(random_, mix_.client_every), std::move(offer));
  schedule_fault(Fault::cutoff, mix_.client_cutoff_every);
  schedule_fault(Fault::restart, mix_.client_restart_every);
  schedule_fault(Fault::reset, mix_.connection_reset_every);
  schedule_fault(Fault::stall, mix_.connection_stall_every);
  schedule_fault(Fault::close, mix_.client_close_every);
}

void Workload::start_client(std::uint32_t slot) {
  SimClient& client = clients_[slot];
  client.instance = next_instance_++;
  client.connection = 0;
  client.accepted = 0;
  client.draining = false;
  const host::Id128 id{random_.next() | 1U, random_.next()};
  // The application's deadlines, drawn only where the mix has them (so other seeds keep their draws).
  ClientOptions options = options_;
  ClientChecker::ClientSettings settings;
  if (mix_.client_give_up_per_mille != 0 && random_.chance(mix_.client_give_up_per_mille, 1000))
    options.give_up_after = std::chrono::milliseconds(random_.between(2'000, 20'000));
  if (mix_.client_connect_timeout_per_mille != 0 && random_.chance(mix_.client_connect_timeout_per_mille, 1000))
    options.connect_timeout = std::chrono::milliseconds(random_.between(1'000, 10'000));
  settings.give_up_after = options.give_up_after;
  settings.connect_timeout = options.connect_timeout;
  client.core = std::make_unique<client::ClientCore>(options, id.high, id.low, random_.next());
  checker_.on_client_started(client.instance, id, slot, settings, events_.now());
  trace_.client(slot, "starts as client {} (id {:016x}{:016x}; give up after {} ms, connect deadline {} ms)",
                client.instance, id.high, id.low, options.give_up_after.count(), options.connect_timeout.count());
}

void Workload::schedule_fault(Fault fault, Duration mean) {
  if (mean <= Duration{0}) return;
  Event event;
  event.kind = EventKind::client_fault;
  event.detail = static_cast<std::uint8_t>(fault);
  events_.schedule(around(random_, mean), std::move(event));
}

void Workload::on_tick(const Event& event) {
  clients_[event.client].core->tick(events_.now());
  pump(event.client);
  Event next;
  next.kind = EventKind::client_tick;
  next.client = event.client;
  events_.schedule(micros(random_.between(5'000, 10'000)), std::move(next));
}

void Workload::on_offer() {
  if (phase_ != Phase::safety) return;  // the liveness phase only drains what was offered
  Event next;
  next.kind = EventKind::client;
  events_.schedule(around(random_, mix_.client_every), std::move(next));
  const auto slot = static_cast<std::uint32_t>(random_.below(clients_.size()));
  SimClient& client = clients_[slot];
  // The seq the client gives the next message it accepts: offers are numbered in order from 1.
  const std::uint64_t seq = client.accepted + 1;
  const std::vector<std::byte> request = kv_request(RequestId{client.instance, seq}.encode(), seq);
  const Offer offer = client.core->offer(request, events_.now());
  if (client.draining) {
    // Its application is closing it: it takes nothing new.
    if (offer.status != OfferStatus::closed)
      checker_.fail(fmt::format("client {} is draining for a close, but answers an offer {}", client.instance,
                                to_string(offer.status)));
    return pump(slot);
  }
  switch (offer.status) {
    case OfferStatus::accepted:
      ++client.accepted;
      ++stats_.offers;
      checker_.on_accepted(client.instance, offer.seq);
      trace_.client(slot, "offers seq {}", offer.seq);
      break;
    case OfferStatus::back_pressured:
      ++stats_.back_pressured;
      trace_.client(slot, "offer back-pressured ({} unacknowledged)", client.core->unacknowledged());
      break;
    case OfferStatus::too_large:
    case OfferStatus::closed:
      checker_.fail(fmt::format("client {} refuses an offer: {}", client.instance, to_string(offer.status)));
      break;
  }
  pump(slot);
}

// A random KV request on a small key space, so that requests collide; about one in five has a short TTL, so
// timers are armed, superseded and fired all through the run.
std::vector<std::byte> Workload::kv_request(std::uint64_t request_id, std::uint64_t seq) {
  services::KvRequest request;
  request.request_id = request_id;
  request.key = fmt::format("k{}", random_.below(8));
  switch (random_.below(10)) {
    case 0: request.op = services::KvOp::get; break;
    case 1: request.op = services::KvOp::remove; break;
    case 2:
      request.op = services::KvOp::compare_and_set;
      request.value = fmt::format("v{}", seq);
      if (random_.chance(1, 2)) request.expected = fmt::format("v{}", seq - 1);
      break;
    case 3:
    case 4:
      request.op = services::KvOp::put_with_ttl;
      request.value = fmt::format("v{}", seq);
      request.ttl_ms = random_.between(1, 500);
      break;
    default:
      request.op = services::KvOp::put;
      request.value = fmt::format("v{}", seq);
      break;
  }
  auto bytes = services::encode_kv_request(request);
  COHORT_ASSERT(bytes.has_value());
  return std::move(*bytes);
}

void Workload::on_fault(const Event& event) {
  if (phase_ != Phase::safety) return;
  const Time now = events_.now();
  switch (static_cast<Fault>(event.detail)) {
    case Fault::cutoff: {
      schedule_fault(Fault::cutoff, mix_.client_cutoff_every);
      const auto slot = static_cast<std::uint32_t>(random_.below(clients_.size()));
      if (network_.cut_off(slot)) return;
      const auto length = std::chrono::duration_cast<Duration>(mix_.session_timeout *
                                                               static_cast<double>(random_.between(1000, 2500)) / 1000);
      network_.set_cut_off(slot, true);
      checker_.on_cut_off(slot, true, now);
      ++stats_.cutoffs;
      trace_.client(slot, "cut off for {} ms", as_micros(length) / 1000);
      Event heal;
      heal.kind = EventKind::client_fault;
      heal.detail = static_cast<std::uint8_t>(Fault::heal);
      heal.client = slot;
      events_.schedule(length, std::move(heal));
      return;
    }
    case Fault::heal:
      network_.set_cut_off(event.client, false);
      checker_.on_cut_off(event.client, false, now);
      trace_.client(event.client, "no longer cut off");
      return;
    case Fault::restart: {
      schedule_fault(Fault::restart, mix_.client_restart_every);
      const auto slot = static_cast<std::uint32_t>(random_.below(clients_.size()));
      ++stats_.client_restarts;
      trace_.client(slot, "restarts: client {} and what it buffered are gone", clients_[slot].instance);
      checker_.on_client_gone(clients_[slot].instance, now);
      network_.client_gone(slot);
      start_client(slot);
      return;
    }
    case Fault::reset: {
      schedule_fault(Fault::reset, mix_.connection_reset_every);
      if (const auto connection = network_.random_open_connection()) network_.reset(*connection);
      return;
    }
    case Fault::stall: {
      schedule_fault(Fault::stall, mix_.connection_stall_every);
      if (const auto connection = network_.random_open_connection())
        network_.stall(*connection, now + micros(random_.between(200'000, 1'500'000)));
      return;
    }
    case Fault::close: {
      // The application closes a client: at once, or once its buffer drained (with a deadline). A new client takes
      // the slot once it is closed (pump).
      schedule_fault(Fault::close, mix_.client_close_every);
      const auto slot = static_cast<std::uint32_t>(random_.below(clients_.size()));
      SimClient& client = clients_[slot];
      if (client.draining) return;
      checker_.on_close_requested(client.instance);
      if (random_.chance(1, 2)) {
        trace_.client(slot, "the application closes client {} ({} unacknowledged)", client.instance,
                      client.core->unacknowledged());
        client.core->close(now);
      } else {
        const Duration deadline = micros(random_.between(0, 3'000'000));
        trace_.client(slot, "the application closes client {} once drained, within {} ms ({} unacknowledged)",
                      client.instance, as_micros(deadline) / 1000, client.core->unacknowledged());
        client.draining = true;
        client.core->close_after_drain(now, now + deadline);
      }
      return pump(slot);
    }
  }
}

// --- driving a client core (as client.cpp does with real sockets) ------------------------------------------------

Workload::SimClient* Workload::current(std::uint32_t slot, std::uint64_t connection) {
  SimClient& client = clients_[slot];
  // Only the connection last asked for concerns the core; an older one's news is stale.
  return client.connection == connection ? &client : nullptr;
}

void Workload::on_connected(std::uint32_t slot, std::uint64_t connection, const protocol::PeerIdentity& node) {
  SimClient* client = current(slot, connection);
  if (client == nullptr) return;
  client->core->on_connected(events_.now(), node);
  pump(slot);
}

void Workload::on_frame(std::uint32_t slot, std::uint64_t connection, const protocol::Frame& frame) {
  SimClient* client = current(slot, connection);
  if (client == nullptr) return;
  client->core->on_frame(frame, events_.now());
  pump(slot);
}

void Workload::on_disconnected(std::uint32_t slot, std::uint64_t connection, std::string_view why) {
  SimClient* client = current(slot, connection);
  if (client == nullptr) return;
  client->connection = 0;
  // The virtual network's "connection refused" is a node that is down; every other end is a reset.
  const Reason reason = why == "connection refused" ? Reason::connection_refused : Reason::connection_reset;
  client->core->on_disconnected(events_.now(), client::Disconnect{reason, std::string(why)});
  pump(slot);
}

void Workload::pump(std::uint32_t slot) {
  SimClient& client = clients_[slot];
  client::ClientCore& core = *client.core;
  // The core's outgoing bytes are whole frames back to back, each starting with its length.
  const auto send_outgoing = [&] {
    const std::vector<std::byte>& out = core.outgoing();
    for (std::size_t at = 0; at < out.size();) {
      const auto length = load_le<std::uint32_t>(out.data() + at);
      network_.send_to_node(client.connection, ByteSpan(out.data() + at, length));
      at += length;
    }
  };
  if (core.take_close() && client.connection != 0) {
    send_outgoing();
    network_.close_by_client(client.connection);
    client.connection = 0;
  }
  if (client.connection != 0) send_outgoing();
  core.outgoing().clear();
  if (auto endpoint = core.take_connect()) {
    if (client.connection != 0) network_.close_by_client(client.connection);
    const auto node = node_of(*endpoint, options_.members.size());
    COHORT_ASSERT(node.has_value());  // the members and the redirects name only "node-<id>:7000"
    client.connection = network_.connect(slot, *node);
  }
  for (const client::Event& event : core.events()) record(slot, event);
  core.events().clear();
  const bool closed = core.state() == ClientState::closed;
  checker_.after_events(client.instance, closed, events_.now());
  if (!closed) return;
  // Closed by its application or a deadline: a new client takes its place, and the workload goes on.
  ++stats_.client_closes;
  trace_.client(slot, "client {} is closed ({}): a new client replaces it", client.instance, to_string(core.reason()));
  if (client.connection != 0) network_.close_by_client(client.connection);
  network_.client_gone(slot);
  start_client(slot);
}

void Workload::record(std::uint32_t slot, const client::Event& event) {
  const SimClient& client = clients_[slot];
  checker_.on_client_event(client.instance, event, events_.now());
  fingerprint_.mix(client.instance);
  fingerprint_.mix(event.index());
  std::visit(
      [&](const auto& e) {
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, client::StateEvent>) {
          trace_.client(slot, "is {}: {} ({})", to_string(e.state), e.text, to_string(e.reason));
        } else if constexpr (std::is_same_v<E, client::LeaderEvent>) {
          trace_.client(slot, "hears of leader n{} in term {}", e.leader, e.term);
        } else if constexpr (std::is_same_v<E, client::SessionEvent>) {
          trace_.client(slot, "session {} {}", e.session, to_string(e.change));
        } else if constexpr (std::is_same_v<E, client::AppliedEvent>) {
          ++stats_.applied;
          trace_.client(slot, "seq {} applied (position {})", e.seq, e.position);
        } else if constexpr (std::is_same_v<E, client::RejectedEvent>) {
          ++stats_.rejected;
          trace_.client(slot, "seq {} rejected: {}", e.seq, e.text);
        } else if constexpr (std::is_same_v<E, client::UnknownEvent>) {
          ++stats_.unknown;
          trace_.client(slot, "seq {} unknown: {}", e.seq, e.text);
        } else if constexpr (std::is_same_v<E, client::EgressEvent>) {
          ++stats_.egress;
          trace_.client(slot, "egress {}", e.egress_seq);
        } else if constexpr (std::is_same_v<E, client::EgressGapEvent>) {
          trace_.client(slot, "egress {}-{} lost", e.from, e.to);
        } else if constexpr (std::is_same_v<E, client::ConnectFailedEvent>) {
          trace_.client(slot, "attempt at {} failed: {} ({})", e.endpoint, e.text, to_string(e.reason));
        } else if constexpr (std::is_same_v<E, client::DataLossEvent>) {
          trace_.client(slot, "seqs {}-{} lost by the cluster", e.from, e.to);
        } else if constexpr (std::is_same_v<E, client::EgressLostEvent>) {
          trace_.client(slot, "egress {}-{} lost by the cluster: to come again", e.from, e.to);
        }
      },
      event);
}

std::optional<std::string> Workload::unsettled() const {
  for (std::uint32_t slot = 0; slot < clients_.size(); ++slot) {
    const client::ClientCore& core = *clients_[slot].core;
    if (core.state() != ClientState::connected)
      return fmt::format("client {} (c{}) is {}", clients_[slot].instance, slot + 1, to_string(core.state()));
    if (core.unacknowledged() > 0)
      return fmt::format("client {} (c{}) has {} messages unacknowledged", clients_[slot].instance, slot + 1,
                         core.unacknowledged());
  }
  return std::nullopt;
}

}  // namespace cohort::sim
