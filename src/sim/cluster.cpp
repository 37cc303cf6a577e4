#include "sim/cluster.h"

#include <algorithm>
#include <type_traits>

#include <fmt/format.h>

#include "common/assert.h"

namespace cohort::sim {

using consensus::Role;

static_assert(std::is_same_v<Time, consensus::Time>, "the cores run on the simulator's virtual time");

SimCluster::SimCluster(const FaultMix& mix, std::uint64_t cluster_id, const Phase& phase, Random& random,
                       EventQueue& events, const Trace& trace, Fingerprint& fingerprint, Stats& stats, Checker& checker,
                       Network& network, ClientNetwork& client_network, ClientChecker& client_checker)
    : mix_(mix),
      phase_(phase),
      random_(random),
      events_(events),
      trace_(trace),
      fingerprint_(fingerprint),
      stats_(stats),
      checker_(checker),
      network_(network),
      client_network_(client_network),
      client_checker_(client_checker) {
  std::vector<std::uint32_t> ids;
  for (std::uint32_t i = 0; i < mix.nodes; ++i) {
    members_.push_back(NodeId{i + 1});
    ids.push_back(i + 1);
  }
  member_ids_ = protocol::MemberIds::of(ids);
  for (std::uint32_t i = 0; i < mix.nodes; ++i) {
    nodes_.push_back(std::make_unique<SimNode>(i, members_[i], cluster_id, mix, phase, random, trace, stats, checker));
    models_.push_back(&nodes_.back()->storage.model());
  }
  for (auto& node : nodes_) node->clock_skew = micros(random_.between(0, 4'000'000)) - std::chrono::seconds(2);
}

std::optional<std::uint32_t> SimCluster::leader() const {
  std::optional<std::uint32_t> found;
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) {
    const SimNode& node = *nodes_[i];
    if (!node.up() || node.raft->role() != Role::leader) continue;
    if (!found || node.raft->term() > nodes_[*found]->raft->term()) found = i;
  }
  return found;
}

Event SimCluster::event_for(EventKind kind, std::uint32_t index) const {
  Event event;
  event.kind = kind;
  event.node = index;
  event.incarnation = nodes_[index]->incarnation;
  return event;
}

bool SimCluster::live(const Event& event) const {
  const SimNode& node = *nodes_[event.node];
  return node.up() && node.incarnation == event.incarnation;
}

ClusterTime SimCluster::wall(const SimNode& node) const {
  // A plausible epoch, so stamps look like times; each node's clock is off by its own skew.
  return std::chrono::seconds(1'700'000'000) + events_.now() + node.clock_skew;
}

// --- lifecycle --------------------------------------------------------------------------------------------------

void SimCluster::start(std::uint32_t index) {
  SimNode& node = *nodes_[index];
  const Time now = events_.now();
  consensus::Config config;
  config.id = node.id;
  config.members = members_;
  config.max_append_entries = mix_.max_append_entries;
  config.max_inflight_appends = mix_.max_inflight_appends;
  config.snapshot_chunk_bytes = mix_.snapshot_chunk_bytes;
  config.max_inflight_snapshot_chunks = mix_.max_inflight_snapshot_chunks;
  ++node.incarnation;
  config.boot = node.incarnation;  // grows with every start, wiped disks included
  node.storage.open(now);
  node.service = std::make_unique<ProbeService>(checker_, client_checker_, node.id, node.storage.log(), events_);
  host::ReplicaConfig replica_config;
  replica_config.raft = config;
  replica_config.session_timeout = mix_.session_timeout;
  const std::optional<std::vector<std::byte>> snapshot = node.storage.load_snapshot();
  std::optional<consensus::LogBase> position;
  if (snapshot)
    if (const auto at = host::ServiceHost::snapshot_position(*snapshot))
      position = consensus::LogBase{at->first, at->second};
  // As the runtime's start: a log whose base no snapshot covers is repaired (emptied, the node recovering), one that
  // ends before the snapshot restarts at it; what the start wrote is durable before the replica is built.
  const host::StartPath path = host::prepare_start(node.storage.log(), position);
  node.storage.persist_start_writes();
  if (path == host::StartPath::adopt) ++stats_.snapshots_adopted;
  if (path == host::StartPath::repair) ++stats_.start_repairs;
  node.replica =
      std::make_unique<host::Replica>(replica_config, node.storage.log(), *node.service, random_.next(), now,
                                      wall(node), snapshot ? std::optional<ByteSpan>(*snapshot) : std::nullopt);
  // Every snapshot the simulator writes decodes: prepare_start was given a usable one, or none.
  COHORT_ASSERT(node.replica->usable());
  node.snapshot = node.replica->host().applied_index();
  if (snapshot) {
    // A snapshot the log does not reach with its term while the log starts at index 1 is left unused, and the whole
    // log replays.
    const bool used = node.replica->snapshot_problem().empty();
    trace_.line(index, "start: snapshot at index {} ({}){}", position ? position->index.value() : 0,
                host::to_string(path), used ? "" : " not used: " + node.replica->snapshot_problem());
    if (used) {
      ++stats_.snapshots_restored;
      // The leader's copy for followers that need entries before the log's first.
      node.replica->raft().offer_snapshot(std::make_shared<consensus::Snapshot>(
          consensus::Snapshot{*position, consensus::snapshot_checksum(*snapshot), *snapshot}));
    }
  }
  gateway::GatewayConfig gateway_config;
  gateway_config.self = node.id;
  gateway_config.heartbeat_interval = config.heartbeat_interval;
  gateway_config.client_keepalive_interval = std::chrono::milliseconds(250);
  gateway_config.activity_interval = gateway::activity_interval_for(mix_.session_timeout);
  gateway_config.max_message_size = static_cast<std::uint32_t>(replica_config.limits.max_message_size);
  node.gateway = std::make_unique<gateway::Gateway>(gateway_config, *node.replica);
  for (std::uint32_t member = 0; member < nodes_.size(); ++member)
    node.gateway->set_client_endpoint(members_[member], Workload::endpoint(member));
  node.raft = &node.replica->raft();
  node.hashed = LogIndex{0};
  node.storage.attach(node.raft);
  node.outbox.clear();
  node.commit = LogIndex{0};
  node.role = node.raft->role();
  node.term = node.raft->term();
  trace_.line(index, "start: term {} log {} (incarnation {})", node.term.value(),
              node.storage.model().last_index().value(), node.incarnation);
  events_.schedule(micros(random_.between(1, 10'000)), event_for(EventKind::tick, index));
}

void SimCluster::stop(std::uint32_t index, const char* why, StateLoss loss) {
  SimNode& node = *nodes_[index];
  node.storage.crash(why, loss);
  node.gateway.reset();  // it refers to the replica
  client_network_.node_down(index);
  node.replica.reset();
  node.raft = nullptr;
  node.service.reset();
  node.storage.attach(nullptr);
  node.outbox.clear();
  ++node.incarnation;  // events of the old incarnation are ignored from now on
  checker_.check_committed_durable(models_);
  client_checker_.on_node_stopped(events_.now());
}

StateLoss SimCluster::choose_loss(std::uint32_t index) {
  if (phase_ != Phase::safety || mix_.state_loss_per_mille == 0 || nodes_.size() < 3) return StateLoss::none;
  if (!random_.chance(mix_.state_loss_per_mille, 1000)) return StateLoss::none;
  const std::size_t lost = static_cast<std::size_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [](const auto& node) { return node->storage.lost_state(); }));
  if (nodes_[index]->storage.lost_state() || lost + 1 > (nodes_.size() - 1) / 2) return StateLoss::none;
  const std::uint64_t kinds = mix_.real_storage && mix_.sync_none ? 3 : 2;
  ++stats_.state_losses;
  switch (random_.below(kinds)) {
    case 0: return StateLoss::wipe;
    case 1: return StateLoss::damage;
    default: return StateLoss::machine;
  }
}

void SimCluster::crash(std::uint32_t index, const char* why) {
  ++stats_.crashes;
  stop(index, why, choose_loss(index));
  events_.schedule(micros(random_.between(50'000, 5'000'000)), event_for(EventKind::restart, index));
}

void SimCluster::stop_after_failed_sync(std::uint32_t index) {
  ++stats_.fsync_failures;
  stop(index, "fsync fails, node stops");
  events_.schedule(micros(random_.between(1'000'000, 5'000'000)), event_for(EventKind::restart, index));
}

void SimCluster::outage() {
  ++stats_.outages;
  trace_.line(kCluster, "outage: every node stops");
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->up()) continue;
    stop(i, "outage");
    const auto down = std::chrono::duration_cast<Duration>(mix_.session_timeout *
                                                           static_cast<double>(random_.between(1200, 1600)) / 1000);
    events_.schedule(down, event_for(EventKind::restart, i));
  }
}

LogIndex SimCluster::power_loss() {
  trace_.line(kCluster, "power loss: every machine goes down with its page cache");
  network_.power_loss();
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) {
    SimNode& node = *nodes_[i];
    if (node.up()) {
      stop(i, "power loss", StateLoss::machine);
    } else {
      // Down already (its process crashed), but its machine loses the page cache too; its pending restart is off.
      node.storage.crash("power loss while down", StateLoss::machine);
      ++node.incarnation;
    }
    events_.schedule(micros(random_.between(50'000, 2'000'000)), event_for(EventKind::restart, i));
  }
  // What a majority still holds is what every leader from now on holds; the rest may be lost (Checker).
  const LogIndex kept = checker_.forget_lost_commits(models_);
  state_hashes_.erase(state_hashes_.upper_bound(kept.value()), state_hashes_.end());
  trace_.line(kCluster, "power loss: the log a majority kept ends at {}", kept.value());
  return kept;
}

Time SimCluster::blackout(Duration length) {
  const Time now = events_.now();
  trace_.line(kCluster, "blackout: every node stops for {:.0f} s", std::chrono::duration<double>(length).count());
  std::vector<Time> restarts;
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->up())
      stop(i, "blackout");
    else
      ++nodes_[i]->incarnation;  // its pending restart is off: it comes back with the others
    restarts.push_back(now + length + micros(random_.between(0, 2'000'000)));
    events_.schedule(restarts.back() - now, event_for(EventKind::restart, i));
  }
  blackout_until_ = *std::min_element(restarts.begin(), restarts.end());
  std::sort(restarts.begin(), restarts.end());
  return restarts[nodes_.size() / 2];
}

void SimCluster::start_stopped() {
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->up()) continue;
    start(i);
    flush(i);
  }
}

// --- the driver contract ----------------------------------------------------------------------------------------

void SimCluster::flush(std::uint32_t index) {
  SimNode& node = *nodes_[index];
  node.replica->take_ready(node.ready);
  if (node.ready.installed != nullptr) {
    // The core installed its leader's snapshot (the host restored it): the node's newest snapshot from now on.
    const consensus::Snapshot& installed = *node.ready.installed;
    ++stats_.snapshots_installed;
    trace_.line(index, "installs the snapshot at index {} (term {}, {} bytes)", installed.position.index.value(),
                installed.position.term.value(), installed.bytes.size());
    node.snapshot = installed.position.index;
    node.storage.on_installed(installed);
    node.ready.installed = nullptr;
    // A crash while the install is not durable yet (real storage: also between its write and its sync).
    if (phase_ == Phase::safety && random_.chance(mix_.crash_in_snapshot_per_mille, 1000))
      events_.schedule(micros(random_.between(0, 5'000)), event_for(EventKind::crash_node, index));
  }
  observe_outputs(index);
  node.gateway->after_ready(events_.now());
  send_gateway_outputs(index);
  for (auto& out : node.ready.messages) node.outbox.push_back(std::move(out));
  node.ready.messages.clear();
  release(index);
  if (const auto work = node.storage.after_step(events_.now())) schedule_storage(index, *work);

  const Role role = node.raft->role();
  const Term term = node.raft->term();
  const bool became_leader = role == Role::leader && (node.role != Role::leader || node.term != term);
  if (became_leader) client_checker_.on_leader(term, events_.now());
  if (role != node.role || term != node.term) {
    trace_.line(index, "becomes {} in term {}", consensus::to_string(role), term.value());
    if (phase_ == Phase::safety && random_.chance(mix_.crash_after_role_change_per_mille, 1000)) {
      events_.schedule(micros(random_.between(0, 5'000)), event_for(EventKind::crash_node, index));
    }
  }
  if (node.ready.commit > node.commit) {
    trace_.line(index, "commits up to {}", node.ready.commit.value());
    if (role == Role::leader && phase_ == Phase::safety && random_.chance(mix_.crash_after_commit_per_mille, 1000))
      events_.schedule(micros(random_.between(0, 5'000)), event_for(EventKind::crash_node, index));
  }
  checker_.on_step(node.id, role, term, became_leader, node.commit, node.ready.commit, node.storage.log(), models_);
  checker_.check_durable_claim(node.id, node.raft->durable_index(), node.storage.model());
  node.role = role;
  node.term = term;
  node.commit = node.ready.commit;
  observe_state(index);
  maybe_snapshot(index);
  fingerprint_.mix(index);
  fingerprint_.mix(term.value());
  fingerprint_.mix(node.commit.value());
  fingerprint_.mix(node.storage.model().last_index().value());
}

void SimCluster::maybe_snapshot(std::uint32_t index) {
  SimNode& node = *nodes_[index];
  const host::ServiceHost& host = node.replica->host();
  if (mix_.snapshot_every == 0 || host.applied_index().value() < node.snapshot.value() + mix_.snapshot_every) return;
  const LogIndex previous = node.snapshot;
  node.snapshot = host.applied_index();
  snapshot_scratch_.clear();
  node.replica->host().write_snapshot(snapshot_scratch_);
  ++stats_.snapshots_taken;
  switch (node.storage.save_snapshot(host.applied_index(), host.applied_term(), snapshot_scratch_)) {
    case NodeStorage::Saved::crashed: events_.schedule(Duration{0}, event_for(EventKind::crash_node, index)); return;
    case NodeStorage::Saved::failed: node.snapshot = previous; return;  // the disk holds what it held before
    case NodeStorage::Saved::saved: break;
  }
  // Durable now (written and synced at once): the leader's copy for followers that need entries before the log's
  // first. Then, as the runtime does, the log goes up to the previous snapshot, which the disk keeps too: a damaged
  // newest one falls back to it and replays the log after it.
  consensus::Raft& raft = node.replica->raft();
  raft.offer_snapshot(std::make_shared<consensus::Snapshot>(
      consensus::Snapshot{consensus::LogBase{host.applied_index(), host.applied_term()},
                          consensus::snapshot_checksum(snapshot_scratch_), snapshot_scratch_}));
  if (previous <= node.storage.log().base().index) return;
  raft.compact(previous);
  ++stats_.compactions;
  trace_.line(index, "compacts its log up to {} (base now {})", previous.value(),
              node.storage.log().base().index.value());
  if (const auto work = node.storage.after_step(events_.now())) schedule_storage(index, *work);
  // A crash while the compaction is not durable yet (real storage: also between its write and its sync).
  if (phase_ == Phase::safety && random_.chance(mix_.crash_in_snapshot_per_mille, 1000))
    events_.schedule(micros(random_.between(0, 5'000)), event_for(EventKind::crash_node, index));
}

void SimCluster::schedule_storage(std::uint32_t index, const StorageEvent& work) {
  Event event = event_for(work.kind, index);
  event.seq = work.seq;
  events_.schedule(work.delay, std::move(event));
}

// Sends what storage has made safe to send (raft.h, driver contract 2).
void SimCluster::release(std::uint32_t index) {
  SimNode& node = *nodes_[index];
  const consensus::PersistSeq durable = node.storage.durable_seq();
  auto keep = node.outbox.begin();
  for (auto it = node.outbox.begin(); it != node.outbox.end(); ++it) {
    if (it->after > durable) {
      if (keep != it) *keep = std::move(*it);
      ++keep;
      continue;
    }
    checker_.on_release(node.id, it->message, node.storage.model());
    network_.transmit(it->message);
    if (mix_.forged_term_per_mille != 0 && phase_ == Phase::safety &&
        random_.chance(mix_.forged_term_per_mille, 1000)) {
      // A forged or corrupted copy from the top half of the terms: it must be dropped, or the next election
      // would wrap the term around.
      consensus::Message forged = it->message;
      forged.term = Term{consensus::kTermLimit + random_.below(std::uint64_t{1} << 62U)};
      ++stats_.forged;
      network_.transmit(forged);
    }
  }
  node.outbox.erase(keep, node.outbox.end());
}

// Every replica's host outputs (a follower's are computed and dropped by its gateway, as in the runtime): the sessions
// opened and closed, and the egress each service sent, for the client checker.
void SimCluster::observe_outputs(std::uint32_t index) {
  SimNode& node = *nodes_[index];
  for (const host::HostOutput& output : node.replica->host().outputs()) {
    client_checker_.on_host_output(output);
    if (const auto* ended = std::get_if<host::SessionEnded>(&output))
      if (ended->reason == CloseReason::timeout && node.raft->role() == Role::leader) {
        ++stats_.expiries;
        trace_.line(index, "session {} expired", ended->session);
      }
  }
}

// After every input to a gateway (gateway.h's driver contract): its frames leave in order, then the connections it
// gave up on close.
void SimCluster::send_gateway_outputs(std::uint32_t index) {
  nodes_[index]->gateway->send_frames([this](gateway::ConnectionId connection, ByteSpan frame) {
    return client_network_.send_to_client(static_cast<std::uint64_t>(connection), frame);
  });
  gateway::GatewayOutputs& out = nodes_[index]->gateway->outputs();
  for (const gateway::Closing& closing : out.closing) {
    trace_.line(index, "gateway gives up connection {}: {}{}", static_cast<std::uint64_t>(closing.connection),
                gateway::to_string(closing.cause), closing.detail.empty() ? "" : ": " + closing.detail);
    client_network_.close_by_node(static_cast<std::uint64_t>(closing.connection));
  }
  out.clear();
}

// Entry faults, and the replica's state hash against every other replica's at the same log position.
void SimCluster::observe_state(std::uint32_t index) {
  SimNode& node = *nodes_[index];
  host::ServiceHost& host = node.replica->host();
  for (const host::EntryFaultReport& fault : host.fault_reports()) {
    // Every entry the simulated leaders append decodes, and the KV service never throws.
    if (fault.fault != host::EntryFault::stamp_went_back)
      checker_.fail(fmt::format("node {} could not apply entry {}: {}: {}", node.id.value(), fault.index.value(),
                                host::to_string(fault.fault), fault.detail));
  }
  host.fault_reports().clear();
  if (host.applied_index() == node.hashed) return;
  node.hashed = host.applied_index();
  const std::uint64_t hash = host.state_hash();
  const auto [it, inserted] = state_hashes_.try_emplace(host.applied_index().value(), hash, node.id);
  if (!inserted && it->second.first != hash)
    checker_.fail(fmt::format("node {} state hash {:016x} at log position {} differs from node {}'s {:016x}",
                              node.id.value(), hash, host.applied_index().value(), it->second.second.value(),
                              it->second.first));
}

std::string SimCluster::describe_state() const {
  std::string text;
  for (const auto& node : nodes_) {
    const consensus::MemoryLogStore& model = node->storage.model();
    text += fmt::format("\n  n{}: {} {} term {} leader {} log {}..{} durable {}..{} commit {} snapshot {}",
                        node->id.value(), node->raft ? consensus::to_string(node->raft->role()) : "down",
                        consensus::to_string(model.durable_hard_state().standing),
                        node->raft ? node->raft->term().value() : 0,
                        node->raft && node->raft->leader() ? node->raft->leader()->value() : 0,
                        model.base().index.value(), model.last_index().value(), model.durable_base().index.value(),
                        model.durable_base().index.value() + model.durable_entries().size(), node->commit.value(),
                        node->snapshot.value());
  }
  return text;
}

// --- events -----------------------------------------------------------------------------------------------------

void SimCluster::on_deliver(const Event& event) {
  SimNode& node = *nodes_[event.node];
  if (!node.up() || network_.cut(event.message) || network_.lost_in_power_loss(event)) {
    ++stats_.dropped;
    trace_.line(event.node, "drops {} ({})", describe(event.message),
                !node.up()                           ? "down"
                : network_.lost_in_power_loss(event) ? "sent before the power loss"
                                                     : "partitioned");
    return;
  }
  ++stats_.delivered;
  trace_.line(event.node, "recv {}", describe(event.message));
  node.replica->step(event.message, events_.now());
  flush(event.node);
}

void SimCluster::on_tick(const Event& event) {
  if (!live(event)) return;
  SimNode& node = *nodes_[event.node];
  node.replica->tick(events_.now(), wall(node));
  node.gateway->tick(events_.now(), [this](gateway::ConnectionId id) {
    return client_network_.silent_for(static_cast<std::uint64_t>(id));
  });
  flush(event.node);
  // Each node's timer fires at its own irregular pace, as real clocks and schedulers do.
  events_.schedule(micros(random_.between(1'000, 10'000)), event_for(EventKind::tick, event.node));
}

void SimCluster::on_sync(const Event& event) {
  if (!live(event)) return;
  SimNode& node = *nodes_[event.node];
  const auto completion = node.storage.sync(event.seq);
  if (!completion) return stop_after_failed_sync(event.node);
  node.replica->on_persisted(*completion, events_.now());
  flush(event.node);
}

void SimCluster::on_storage_write(const Event& event) {
  if (!live(event)) return;
  for (const StorageEvent& next : nodes_[event.node]->storage.write()) schedule_storage(event.node, next);
}

void SimCluster::on_storage_sync(const Event& event) {
  if (!live(event)) return;
  SimNode& node = *nodes_[event.node];
  const bool synced = node.storage.sync_written(
      [&](const consensus::PersistCompletion& completion) { node.replica->on_persisted(completion, events_.now()); });
  if (!synced) return stop_after_failed_sync(event.node);
  flush(event.node);
}

void SimCluster::on_crash_node(const Event& event) {
  if (phase_ != Phase::safety || !live(event)) return;
  crash(event.node, "crash at a chosen moment");
}

void SimCluster::on_restart(const Event& event) {
  SimNode& node = *nodes_[event.node];
  if (node.up() || node.incarnation != event.incarnation) return;
  start(event.node);
  flush(event.node);
}

}  // namespace cohort::sim

namespace cohort::sim {

// --- the client network's end at the nodes ----------------------------------------------------------------------

std::optional<std::uint64_t> SimCluster::incarnation(std::uint32_t index) const {
  const SimNode& node = *nodes_[index];
  if (!node.up()) return std::nullopt;
  return node.incarnation;
}

protocol::PeerIdentity SimCluster::identity(std::uint32_t index) const {
  const SimNode& node = *nodes_[index];
  COHORT_ASSERT(node.up());
  protocol::PeerIdentity identity;
  identity.role = protocol::PeerRole::node;
  identity.node_id = node.id.value();
  const host::Id128& incarnation = node.replica->host().incarnation();
  identity.incarnation = protocol::Incarnation{incarnation.high, incarnation.low};
  identity.members = member_ids_;
  identity.client_endpoint = Workload::endpoint(index);
  return identity;
}

void SimCluster::on_connected(std::uint32_t index, std::uint64_t connection) {
  nodes_[index]->gateway->on_connected(gateway::ConnectionId{connection}, protocol::PeerRole::client);
  send_gateway_outputs(index);
}

void SimCluster::on_frame(std::uint32_t index, std::uint64_t connection, const protocol::Frame& frame) {
  // Clients send session traffic only: ping and status requests are the node's, and no client sends them.
  if (!nodes_[index]->gateway->on_frame(gateway::ConnectionId{connection}, frame, events_.now()))
    checker_.fail(fmt::format("a client sends node {} a {} frame", index + 1, protocol::to_string(frame.header.type)));
  flush(index);
}

void SimCluster::on_disconnected(std::uint32_t index, std::uint64_t connection) {
  nodes_[index]->gateway->on_disconnected(gateway::ConnectionId{connection});
  send_gateway_outputs(index);
}

}  // namespace cohort::sim
