#include "sim/simulator.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "common/random.h"
#include "sim/checker.h"
#include "sim/client_checker.h"
#include "sim/client_network.h"
#include "sim/cluster.h"
#include "sim/event_queue.h"
#include "sim/network.h"
#include "sim/trace.h"
#include "sim/workload.h"

namespace cohort::sim {

using consensus::Role;
using namespace std::chrono_literals;

// The run loop: takes events in time order and hands each to the part it concerns; runs the safety phase for
// `steps` events, then the liveness phase until the cluster converges or the time limit passes. The periodic
// crash, the outage and the leadership transfer are handled here, since they choose among the nodes.
struct Simulator::Impl {
  explicit Impl(const Options& opts)
      : options(opts),
        random(options.seed),
        mix(choose_mix(options, random)),
        checker(mix.nodes),
        client_checker(checker, mix.session_timeout, host::HostLimits{}.egress_window_messages),
        trace(options.trace, events),
        network(mix.nodes, mix, phase, random, events, trace, outcome.stats),
        client_network(mix.clients, mix, phase, random, events, trace, outcome.stats),
        workload(mix, phase, random, events, trace, outcome.stats, fingerprint, client_network, client_checker),
        cluster(mix, options.seed, phase, random, events, trace, fingerprint, outcome.stats, checker, network,
                client_network, client_checker) {
    client_network.attach(cluster, workload);
  }

  // The seed's mix is drawn even when the options replace it: the run's later draws start where it left off.
  static FaultMix choose_mix(const Options& options, Random& random) {
    FaultMix mix = draw_fault_mix(random, options.seed);
    if (options.mix) mix = *options.mix;
    if (options.nodes) mix.nodes = *options.nodes;
    return mix;
  }

  // Declaration order is construction order: each part is built after what it refers to.
  Options options;
  Random random;
  FaultMix mix;
  Checker checker;
  ClientChecker client_checker;
  Phase phase = Phase::safety;
  EventQueue events;
  Outcome outcome;
  Fingerprint fingerprint;
  Trace trace;
  Network network;
  ClientNetwork client_network;
  Workload workload;
  SimCluster cluster;

  // The liveness phase's own proposals: each opens a session of a fresh client, and one of them must commit on
  // every node.
  struct LivenessProposal {
    LogIndex index;
    Term term;
  };
  std::vector<LivenessProposal> liveness_proposals;
  // The safety phase lasts at least until then (a blackout's end and a while after it).
  Time safety_until{0};
  static constexpr Duration kAfterBlackout = std::chrono::seconds(10);
  std::uint64_t liveness_clients = 0;
  // The leader of the liveness phase, and since when it has led: convergence needs it stable for a while.
  std::optional<std::pair<std::uint32_t, Term>> stable_leader;
  Time stable_since{};
  static constexpr Duration kStableWindow = 500ms;
  // What the liveness phase still waits for, for its failure message.
  std::string waiting_for = "a leader";

  // --- events that concern no single part -----------------------------------------------------------------------

  void handle(const Event& event) {
    fingerprint.mix(static_cast<std::uint64_t>(event.kind));
    fingerprint.mix(as_micros(events.now()));
    switch (event.kind) {
      case EventKind::deliver: return cluster.on_deliver(event);
      case EventKind::tick: return cluster.on_tick(event);
      case EventKind::sync: return cluster.on_sync(event);
      case EventKind::storage_write: return cluster.on_storage_write(event);
      case EventKind::storage_sync: return cluster.on_storage_sync(event);
      case EventKind::crash: return crash();
      case EventKind::crash_node: return cluster.on_crash_node(event);
      case EventKind::restart: return cluster.on_restart(event);
      case EventKind::partition:
        network.partition(cluster.leader());
        return client_checker.on_partition(network.partitioned(), events.now());
      case EventKind::client: return workload.on_offer();
      case EventKind::transfer: return transfer();
      case EventKind::outage: return outage();
      case EventKind::client_tick: return workload.on_tick(event);
      case EventKind::client_fault: return workload.on_fault(event);
      case EventKind::client_link: return client_network.on_link_event(event);
      case EventKind::client_frame: return client_network.on_frame_event(event);
      case EventKind::power_loss: return power_loss();
      case EventKind::blackout: return blackout();
    }
  }

  // Every node loses power at once under sync policy none: each loses its page cache, so the cluster may lose the
  // newest committed entries. The checkers then forget what no majority kept; the clients must say what they lost.
  void power_loss() {
    if (phase != Phase::safety) return;
    schedule_periodic(EventKind::power_loss, mix.power_loss_every);
    if (cluster.blacked_out()) return;  // its restarts are the blackout's
    ++outcome.stats.power_losses;
    (void)cluster.power_loss();  // the checker forgets the commits no majority kept
    client_checker.on_power_loss(events.now());
  }

  // Every node stops for minutes; the clients keep offering. Once they restart, each client is timed back into its
  // session (ClientChecker::on_blackout), and the safety phase goes on for a while after.
  void blackout() {
    if (phase != Phase::safety) return;
    ++outcome.stats.blackouts;
    const auto length =
        std::chrono::duration_cast<Duration>(mix.blackout * static_cast<double>(random.between(750, 1250)) / 1000);
    const Time quorum_back = cluster.blackout(length);
    client_checker.on_blackout(quorum_back);
    safety_until = quorum_back + kAfterBlackout;
  }

  // Every node stops at once, for longer than the session timeout, while the clients stay up.
  void outage() {
    if (phase != Phase::safety) return;
    cluster.outage();
    schedule_periodic(EventKind::outage, mix.outage_every);
  }

  // The periodic crash: a random node, if it is up.
  void crash() {
    if (phase != Phase::safety) return;
    const std::uint32_t index = cluster.random_node();
    if (cluster.node(index).up()) cluster.crash(index, "crash");
    schedule_periodic(EventKind::crash, mix.crash_every);
  }

  // The leader is asked to hand leadership to a random other node; it must accept.
  void transfer() {
    if (phase != Phase::safety) return;
    schedule_periodic(EventKind::transfer, mix.transfer_every);
    const auto current = cluster.leader();
    if (!current || cluster.size() == 1) return;
    std::uint32_t target = cluster.random_node();
    if (target == *current) target = (target + 1) % static_cast<std::uint32_t>(cluster.size());
    const auto status = cluster.node(*current).raft->transfer_leadership(NodeId{target + 1}, events.now());
    if (!status.ok()) {
      checker.fail(fmt::format("leader {} refuses to transfer to {}", *current + 1, target + 1));
      return;
    }
    ++outcome.stats.transfers;
    trace.line(*current, "transfers leadership to n{}", target + 1);
    cluster.flush(*current);
  }

  void schedule_periodic(EventKind kind, Duration mean) {
    Event event;
    event.kind = kind;
    events.schedule(around(random, mean), std::move(event));
  }

  // --- liveness -------------------------------------------------------------------------------------------------

  void begin_liveness() {
    phase = Phase::liveness;
    trace.line(kCluster, "liveness phase: faults stop, the networks heal, stopped nodes restart");
    network.heal();
    client_network.heal();
    client_checker.on_partition(false, events.now());
    for (std::uint32_t slot = 0; slot < mix.clients; ++slot) client_checker.on_cut_off(slot, false, events.now());
    cluster.start_stopped();
  }

  // A single leader, stable for a while; every node a member again (any that lost state caught up); one of the
  // liveness proposals (a session open) committed on every node; every client connected with its messages
  // acknowledged; every session a restarted client abandoned closed; no timer overdue; and every replica applied as
  // far as the others, with the same state hash. Then every fate the clients heard agrees with the leader's state.
  bool converged() {
    std::optional<std::uint32_t> only;
    waiting_for = "every node a member";
    for (std::uint32_t i = 0; i < cluster.size(); ++i) {
      if (cluster.node(i).raft->standing() != consensus::Standing::member) return false;
      if (cluster.node(i).raft->role() != Role::leader) continue;
      waiting_for = "a single leader";
      if (only) return false;
      only = i;
    }
    waiting_for = "a leader";
    if (!only) return false;
    SimNode& lead = cluster.node(*only);
    const Time now = events.now();
    if (stable_leader != std::pair(*only, lead.raft->term())) {
      stable_leader = std::pair(*only, lead.raft->term());
      stable_since = now;
    }
    // A node whose log starts after the proposal holds it through its snapshot if it was committed.
    const auto holds = [&](const SimNode& node, const LivenessProposal& p) {
      const consensus::MemoryLogStore& model = node.storage.model();
      if (p.index <= model.base().index) return checker.committed_term(p.index) == p.term;
      return model.term_at(p.index) == p.term;
    };
    waiting_for = "a liveness proposal committed on every node";
    const bool pending = std::any_of(liveness_proposals.begin(), liveness_proposals.end(),
                                     [&](const LivenessProposal& p) { return holds(lead, p); });
    if (!pending && lead.raft->transfer_target() == std::nullopt) {
      const auto result = lead.replica->open_session(host::Id128{0x11FE, ++liveness_clients}, now);
      if (result.has_value()) {
        liveness_proposals.push_back({result.value(), lead.raft->term()});
        trace.line(*only, "liveness proposal at index {}", result.value().value());
      }
      cluster.flush(*only);
      return false;
    }
    const bool committed =
        std::any_of(liveness_proposals.begin(), liveness_proposals.end(), [&](const LivenessProposal& p) {
          for (std::uint32_t i = 0; i < cluster.size(); ++i) {
            const SimNode& node = cluster.node(i);
            if (node.commit < p.index || !holds(node, p)) return false;
          }
          return true;
        });
    if (!committed) return false;
    if (auto why = workload.unsettled()) {
      waiting_for = *why;
      return false;
    }
    if (const auto session = client_checker.abandoned_open(lead.replica->host())) {
      waiting_for = fmt::format("session {} of a restarted client to expire", *session);
      return false;
    }
    waiting_for = "timers, a stable leader and every replica applied alike";
    // Timers: none of the leader's may be more than a second overdue in cluster time.
    std::vector<std::pair<TimerId, std::uint64_t>> overdue;
    lead.replica->host().due_timers(lead.replica->cluster_time(now) - 1s, overdue, 1);
    if (!overdue.empty() || now - stable_since < kStableWindow) return false;
    const LogIndex applied = lead.replica->host().applied_index();
    for (std::uint32_t i = 0; i < cluster.size(); ++i)
      if (cluster.node(i).replica->host().applied_index() != applied) return false;
    const std::uint64_t hash = lead.replica->host().state_hash();
    for (std::uint32_t i = 0; i < cluster.size(); ++i) {
      const std::uint64_t other = cluster.node(i).replica->host().state_hash();
      if (other != hash)
        checker.fail(
            fmt::format("converged at log position {}, but node {} has state hash {:016x} and leader {} "
                        "{:016x}",
                        applied.value(), i + 1, other, *only + 1, hash));
    }
    const ProbeService& service = *lead.service;
    client_checker.check_final([&](RequestId request) { return service.applied(request); });
    return true;
  }

  // A node that lost its state (or lagged behind a partition) catches up from the leader's log start, a batch per
  // round trip: with tiny batches and pipelines that alone can outlast the liveness limit. Allow for it.
  Duration catch_up_allowance() const {
    std::uint64_t longest = 0;
    for (std::uint32_t i = 0; i < cluster.size(); ++i)
      longest = std::max(longest, cluster.node(i).storage.model().last_index().value());
    std::uint64_t round_trips = longest / (mix.max_append_entries * mix.max_inflight_appends) + 1;
    // Or it installs a snapshot, a window of chunks per round trip, and again if the leader took a newer one
    // meanwhile: twice the largest snapshot offered so far.
    std::uint64_t snapshot = 0;
    for (std::uint32_t i = 0; i < cluster.size(); ++i)
      if (cluster.node(i).up() && cluster.node(i).raft->snapshot() != nullptr)
        snapshot = std::max<std::uint64_t>(snapshot, cluster.node(i).raft->snapshot()->bytes.size());
    round_trips += 2 * (snapshot / (mix.snapshot_chunk_bytes * mix.max_inflight_snapshot_chunks) + 1);
    return 2 * mix.delay_max * static_cast<Duration::rep>(round_trips);
  }

  // --- the run --------------------------------------------------------------------------------------------------

  bool step() {
    const Event event = events.pop();
    handle(event);
    ++outcome.events;
    if (!checker.failed()) return true;
    fail();
    return false;
  }

  void fail() {
    outcome.ok = false;
    outcome.failure = fmt::format("at {:.6f} s: {}{}", std::chrono::duration<double>(events.now()).count(),
                                  checker.failure(), cluster.describe_state());
  }

  Outcome run() {
    outcome.mix = mix;
    if (options.trace != nullptr) fmt::print(options.trace, "seed {}: {}\n", options.seed, mix.describe());
    for (std::uint32_t i = 0; i < cluster.size(); ++i) cluster.start(i);
    workload.start();
    if (mix.outage_every > 0s) schedule_periodic(EventKind::outage, mix.outage_every);
    if (mix.partition_every > 0s) schedule_periodic(EventKind::partition, mix.partition_every);
    if (mix.crash_every > 0s) schedule_periodic(EventKind::crash, mix.crash_every);
    if (mix.transfer_every > 0s) schedule_periodic(EventKind::transfer, mix.transfer_every);
    if (mix.power_loss_every > 0s) schedule_periodic(EventKind::power_loss, mix.power_loss_every);
    if (mix.blackout > 0s) {
      Event event;
      event.kind = EventKind::blackout;
      events.schedule(micros(random.between(1'000'000, 3'000'000)), std::move(event));
      safety_until = Time::max();  // until the blackout sets it
    }

    // Safety: faults as the mix says, the checkers after every event.
    while (outcome.events < options.steps || events.now() < safety_until)
      if (!step()) return finish();

    // Liveness: no more faults; the cluster must converge within the limit, or within the session timeout and its
    // slack if that is longer (the sessions restarted clients abandoned must expire).
    begin_liveness();
    const Duration limit =
        std::max<Duration>(options.liveness_limit, mix.session_timeout + ClientChecker::kExpirySlack);
    const Time deadline = events.now() + limit + catch_up_allowance();
    while (!converged()) {
      if (checker.failed() || events.now() > deadline) {
        if (!checker.failed())
          checker.fail(
              fmt::format("liveness: no stable leader with a committed proposal on every node, all of them "
                          "members applying alike, every client connected and drained, {:.1f} s after the faults "
                          "stopped (still waiting for {})",
                          std::chrono::duration<double>(limit).count(), waiting_for));
        fail();
        return finish();
      }
      if (!step()) return finish();
    }
    checker.check_committed_durable(cluster.models());
    if (checker.failed()) {
      outcome.ok = false;
      outcome.failure = checker.failure();
    }
    trace.line(kCluster, "converged: {} entries committed", checker.committed());
    return finish();
  }

  Outcome finish() {
    for (const Duration took : client_checker.blackout_reconnects()) {
      const auto us = static_cast<std::uint64_t>(as_micros(took));
      ++outcome.stats.blackout_reconnects;
      outcome.stats.blackout_reconnect_sum_us += us;
      outcome.stats.blackout_reconnect_max_us = std::max(outcome.stats.blackout_reconnect_max_us, us);
    }
    outcome.stats.seqs_lost = client_checker.seqs_lost();
    outcome.stats.closes_by_application = client_checker.closes_by_application();
    outcome.stats.closes_by_deadline = client_checker.closes_by_deadline();
    outcome.simulated = events.now();
    outcome.fingerprint = fingerprint.value();
    outcome.stats.leaders = checker.leaders_seen();
    outcome.stats.committed = checker.committed();
    return outcome;
  }
};

// A new count must be summed here too.
static_assert(sizeof(Stats) == 44 * sizeof(std::uint64_t));

Stats& Stats::operator+=(const Stats& other) {
  delivered += other.delivered;
  dropped += other.dropped;
  duplicated += other.duplicated;
  crashes += other.crashes;
  fsync_failures += other.fsync_failures;
  recoveries += other.recoveries;
  torn_tails += other.torn_tails;
  partitions += other.partitions;
  transfers += other.transfers;
  leaders += other.leaders;
  committed += other.committed;
  state_losses += other.state_losses;
  forged += other.forged;
  outages += other.outages;
  snapshots_taken += other.snapshots_taken;
  snapshots_restored += other.snapshots_restored;
  snapshots_installed += other.snapshots_installed;
  snapshots_adopted += other.snapshots_adopted;
  compactions += other.compactions;
  start_repairs += other.start_repairs;
  offers += other.offers;
  back_pressured += other.back_pressured;
  applied += other.applied;
  rejected += other.rejected;
  unknown += other.unknown;
  egress += other.egress;
  cutoffs += other.cutoffs;
  client_restarts += other.client_restarts;
  expiries += other.expiries;
  client_connects += other.client_connects;
  connection_resets += other.connection_resets;
  connection_stalls += other.connection_stalls;
  client_frames += other.client_frames;
  client_frames_lost += other.client_frames_lost;
  client_sends_refused += other.client_sends_refused;
  client_closes += other.client_closes;
  closes_by_application += other.closes_by_application;
  closes_by_deadline += other.closes_by_deadline;
  power_losses += other.power_losses;
  seqs_lost += other.seqs_lost;
  blackouts += other.blackouts;
  blackout_reconnects += other.blackout_reconnects;
  blackout_reconnect_sum_us += other.blackout_reconnect_sum_us;
  blackout_reconnect_max_us = std::max(blackout_reconnect_max_us, other.blackout_reconnect_max_us);
  return *this;
}

Simulator::Simulator(Options options) : impl_(std::make_unique<Impl>(options)) {}
Simulator::~Simulator() = default;
Outcome Simulator::run() { return impl_->run(); }

}  // namespace cohort::sim
