#include "sim/workload.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <variant>

#include "common/assert.h"
#include "host/replica.h"
#include "sim/cluster.h"

namespace cohort::sim {

using consensus::Role;
using namespace std::chrono_literals;

Workload::Workload(const FaultMix& mix, const Phase& phase, Random& random, EventQueue& events, const Trace& trace,
                   Stats& stats, Checker& checker)
    : mix_(mix), phase_(phase), random_(random), events_(events), trace_(trace), stats_(stats), checker_(checker) {
  for (std::uint64_t c = 1; c <= 3; ++c) {
    clients_.emplace_back();
    clients_.back().id = host::Id128{0xC11E, c};
  }
}

// Requests usually go to the leader, sometimes to a random node, which must refuse them unless it leads.
void Workload::act(SimCluster& cluster) {
  const bool safety = phase_ == Phase::safety;
  const Time now = events_.now();
  Event next;
  next.kind = EventKind::client;
  events_.schedule(around(random_, safety ? mix_.client_every : Duration(100ms)), next);
  SimClient& client = clients_[random_.below(clients_.size())];
  const auto current = cluster.leader();
  // In the liveness phase a client talks to the leader it knows, as the real one does once redirected.
  const bool to_random = !current || (safety && random_.chance(1, 10));
  const std::uint32_t index = to_random ? cluster.random_node() : *current;
  SimNode& node = cluster.node(index);
  if (!node.up()) return;
  const bool leading = node.raft->role() == Role::leader;
  Result<LogIndex, host::ClientError> result = unexpected(host::ClientError::not_leader);
  std::string what;
  if (client.session == 0 || (leading && client.leader_term != node.raft->term())) {
    // A new session, or the real client's reconnect to a new leader: the same client id resumes its session,
    // and the answer (SessionOpened) says from which seq to resend.
    result = node.replica->open_session(client.id, now);
    if (result.has_value()) {
      client.leader_term = node.raft->term();
      client.awaiting_open = true;
    }
    what = fmt::format("session open of client {}", client.id.low);
  } else if (!client.unacked.empty() && now - client.last_progress > 3s) {
    // No progress with messages outstanding: resend them (a bounded window, so a slow pipeline is not flooded).
    what = fmt::format("resend of session {} from seq {}", client.session, client.unacked.front().first);
    for (const auto& [seq, message] : client.unacked) {
      result = node.replica->ingress(client.session, seq, message, now);
      if (!result.has_value()) break;
    }
    if (result.has_value()) client.last_progress = now;  // a refused resend is no progress: retry soon
  } else if (safety && client.unacked.size() < 16) {     // a full buffer back-pressures the application
    const std::uint64_t seq = client.next_seq++;
    client.unacked.emplace_back(seq, kv_request(seq));
    result = node.replica->ingress(client.session, seq, client.unacked.back().second, now);
    client.last_progress = now;
    what = fmt::format("session {} seq {}", client.session, seq);
  } else {
    return;
  }
  if (result.has_value()) {
    if (!leading)
      checker_.fail(
          fmt::format("node {} accepts a proposal as {}", node.id.value(), consensus::to_string(node.raft->role())));
    ++stats_.proposals;
    trace_.line(index, "client: {} at index {}", what, result.value().value());
  } else {
    if (leading && result.error() != host::ClientError::transferring)
      checker_.fail(fmt::format("leader {} refuses a proposal", node.id.value()));
    ++stats_.refusals;
    trace_.line(index, "refuses client: {}", what);
  }
  cluster.flush(index);
}

// A random KV request on a small key space, so that requests collide; about one in five has a short TTL, so
// timers are armed, superseded and fired all through the run.
std::vector<std::byte> Workload::kv_request(std::uint64_t seq) {
  services::KvRequest request;
  request.request_id = seq;
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

void Workload::on_leader_output(SimCluster& cluster, const host::HostOutput& output) {
  if (const auto* opened = std::get_if<host::SessionOpened>(&output)) {
    for (SimClient& client : clients_) {
      if (client.id != opened->client) continue;
      if (client.session != 0 && client.session != opened->session)
        checker_.fail(fmt::format("client {} had session {} and is given session {}", client.id.low, client.session,
                                  opened->session));
      client.session = opened->session;
      // Each leader term's reopen is applied once; only the answer to the open in flight resends (the real
      // client hears only the answer on its current connection).
      if (!client.awaiting_open) continue;
      client.awaiting_open = false;
      client.resent_from = opened->last_seq + 1;
      resend(cluster, client, opened->last_seq + 1);
    }
  } else if (const auto* applied = std::get_if<host::Applied>(&output)) {
    for (SimClient& client : clients_) {
      if (client.session != applied->session) continue;
      if (applied->seq >= client.next_seq)
        checker_.fail(fmt::format("session {} acknowledges seq {} never sent", applied->session, applied->seq));
      while (!client.unacked.empty() && client.unacked.front().first <= applied->seq) client.unacked.pop_front();
      client.last_progress = events_.now();
    }
  } else if (const auto* rejected = std::get_if<host::Rejected>(&output)) {
    // Every message after a lost one reports the same gap; one resend answers them all.
    for (SimClient& client : clients_)
      if (client.session == rejected->session && rejected->reason == host::RejectReason::gap &&
          client.resent_from != rejected->expected) {
        client.resent_from = rejected->expected;
        resend(cluster, client, rejected->expected);
      }
    if (rejected->reason != host::RejectReason::gap)
      checker_.fail(fmt::format("session {} seq {} rejected ({})", rejected->session, rejected->seq,
                                static_cast<int>(rejected->reason)));
  }
}

// Re-sends a client's unacknowledged messages from `seq` on, to the current leader.
void Workload::resend(SimCluster& cluster, SimClient& client, std::uint64_t seq) {
  const auto current = cluster.leader();
  if (!current || client.session == 0) return;
  host::Replica& replica = *cluster.node(*current).replica;
  std::size_t sent = 0;
  for (const auto& [message_seq, message] : client.unacked) {
    if (message_seq < seq) continue;
    if (!replica.ingress(client.session, message_seq, message, events_.now()).has_value()) break;
    ++sent;
  }
  trace_.line(*current, "client: resend of session {} from seq {}: {} messages", client.session, seq, sent);
  client.last_progress = events_.now();
}

bool Workload::settled() const {
  return std::none_of(clients_.begin(), clients_.end(),
                      [](const SimClient& c) { return c.session == 0 || !c.unacked.empty(); });
}

}  // namespace cohort::sim
