#include "sim/simulator.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <map>
#include <queue>
#include <set>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "common/random.h"
#include "consensus/memory_log.h"
#include "consensus/raft.h"
#include "host/replica.h"
#include "services/kv_codec.h"
#include "services/kv_service.h"
#include "sim/checker.h"
#include "storage/log_writer.h"
#include "storage/memory_file.h"
#include "storage/recovery.h"
#include "storage/segmented_log.h"

namespace cohort::sim {

using consensus::Entry;
using consensus::Message;
using consensus::Outgoing;
using consensus::PersistSeq;
using consensus::Raft;
using consensus::Role;
using consensus::Time;
using namespace std::chrono_literals;

namespace {

Duration micros(std::uint64_t count) { return std::chrono::microseconds(static_cast<std::int64_t>(count)); }
std::uint64_t as_micros(Duration duration) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(duration).count());
}

// Around `mean`, uniformly in [mean/2, 3*mean/2]: irregular, but never a burst of zero gaps.
Duration around(Random& random, Duration mean) {
  const std::uint64_t us = std::max<std::uint64_t>(as_micros(mean), 2);
  return micros(random.between(us / 2, us + us / 2));
}

FaultMix draw_mix(Random& random) {
  FaultMix mix;
  const std::uint64_t size = random.below(10);
  mix.nodes = size == 0 ? 1 : size < 5 ? 3 : 5;
  // About one seed in eight runs without any fault: the happy path must hold too.
  const bool calm = random.chance(1, 8);
  static constexpr std::uint32_t kDrop[] = {0, 0, 10, 50, 200};
  static constexpr std::uint32_t kDuplicate[] = {0, 0, 10, 50};
  static constexpr std::uint32_t kLong[] = {0, 0, 5, 30};
  mix.drop_per_mille = kDrop[random.below(std::size(kDrop))];
  mix.duplicate_per_mille = kDuplicate[random.below(std::size(kDuplicate))];
  mix.long_delay_per_mille = kLong[random.below(std::size(kLong))];
  mix.delay_max = micros(random.between(1'000, 20'000));
  mix.partition_every = random.chance(1, 3) ? 0s : micros(random.between(500'000, 8'000'000));
  mix.crash_every = random.chance(1, 3) ? 0s : micros(random.between(500'000, 8'000'000));
  mix.crash_after_role_change_per_mille =
      mix.crash_every == 0s ? 0 : static_cast<std::uint32_t>(random.chance(1, 2) ? 0 : random.between(10, 200));
  mix.fsync_failure_per_100k = random.chance(3, 4) ? 0 : static_cast<std::uint32_t>(random.between(1, 100));
  mix.slow_storage_per_mille = random.chance(1, 2) ? 0 : static_cast<std::uint32_t>(random.between(1, 100));
  mix.client_every = micros(random.between(1'000, 100'000));
  mix.transfer_every = random.chance(1, 2) ? 0s : micros(random.between(1'000'000, 10'000'000));
  // Small batches and pipelines split a new leader's backlog over many requests, so followers acknowledge old
  // entries before its no-op: the window that Figure 8's rule exists for.
  static constexpr std::size_t kBatch[] = {1, 2, 4, 64, 1024};
  static constexpr std::size_t kInflight[] = {1, 2, 8};
  mix.max_append_entries = kBatch[random.below(std::size(kBatch))];
  mix.max_inflight_appends = kInflight[random.below(std::size(kInflight))];
  mix.crash_after_commit_per_mille =
      mix.crash_every == 0s ? 0 : static_cast<std::uint32_t>(random.chance(1, 2) ? 0 : random.between(5, 100));
  // A tiny pipeline moves a few entries per round trip: keep clients slower than that, or the backlog of the
  // safety phase alone would outlast the liveness limit.
  if (mix.max_append_entries * mix.max_inflight_appends < 16)
    mix.client_every = std::max<Duration>(mix.client_every, 100ms);
  if (calm) {
    mix.drop_per_mille = mix.duplicate_per_mille = mix.long_delay_per_mille = 0;
    mix.partition_every = mix.crash_every = mix.transfer_every = 0s;
    mix.fsync_failure_per_100k = mix.slow_storage_per_mille = mix.crash_after_role_change_per_mille = 0;
    mix.crash_after_commit_per_mille = 0;
  }
  return mix;
}

// Storage draws come from a generator of their own, so that seeds running on the in-memory store keep the
// schedules they had before real storage joined the simulator.
void draw_storage(FaultMix& mix, std::uint64_t seed) {
  Random random(seed ^ 0x53544F52414745ULL);
  mix.real_storage = random.chance(1, 2);
  if (!mix.real_storage) return;
  mix.sync_none = random.chance(1, 4);
  mix.segment_size = random.chance(1, 2) ? random.between(256, 4096) : random.between(4096, 64U << 10U);
  mix.cache_bytes = static_cast<std::size_t>(random.chance(1, 2) ? random.between(0, 4096) : 1U << 20U);
  if (mix.crash_every != 0s && random.chance(1, 2))
    mix.crash_in_storage_per_mille = static_cast<std::uint32_t>(random.between(5, 50));
}

std::string describe(const Message& message) {
  std::string head = fmt::format("{} n{}->n{} t{}", consensus::type_name(message), message.from.value(),
                                 message.to.value(), message.term.value());
  return std::visit(
      [&](const auto& body) -> std::string {
        using Body = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<Body, consensus::VoteRequest>) {
          return fmt::format("{} last={}/{}{}{}", head, body.last_index.value(), body.last_term.value(),
                             body.pre_vote ? " pre" : "", body.transfer ? " transfer" : "");
        } else if constexpr (std::is_same_v<Body, consensus::VoteResponse>) {
          return fmt::format("{} {}{}", head, body.granted ? "granted" : "refused", body.pre_vote ? " pre" : "");
        } else if constexpr (std::is_same_v<Body, consensus::AppendRequest>) {
          return fmt::format("{} prev={}/{} entries={} commit={}", head, body.prev_index.value(),
                             body.prev_term.value(), body.entries.size(), body.commit.value());
        } else if constexpr (std::is_same_v<Body, consensus::AppendResponse>) {
          if (body.success) return fmt::format("{} ok match={}", head, body.match_index.value());
          return fmt::format("{} refused prev={} conflict={}/{}", head, body.rejected_prev.value(),
                             body.conflict_index.value(), body.conflict_term.value());
        } else if constexpr (std::is_same_v<Body, consensus::Heartbeat>) {
          return fmt::format("{} commit={}", head, body.commit.value());
        } else {
          return head;
        }
      },
      message.body);
}

// The core's LogStore, seen through the checker: every write is checked before it reaches the store.
class CheckedLog final : public consensus::LogStore {
 public:
  CheckedLog(consensus::MemoryLogStore& store, Checker& checker, NodeId node)
      : store_(store), checker_(checker), node_(node) {}

  void attach(const Raft* raft) { raft_ = raft; }
  /// With real storage, the core reads from and writes to `real`; `store_` follows every write as the model
  /// that recovery is checked against. Sequence numbers are the real log's.
  void use(consensus::LogStore* real) { real_ = real; }

  LogIndex first_index() const override { return source().first_index(); }
  LogIndex last_index() const override { return source().last_index(); }
  std::optional<Term> term_at(LogIndex index) const override { return source().term_at(index); }
  const Entry& entry(LogIndex index) const override { return source().entry(index); }
  consensus::HardState hard_state() const override { return source().hard_state(); }

  PersistSeq append(std::span<const Entry> entries) override {
    checker_.on_append(node_, store_, entries);
    const PersistSeq seq = store_.append(entries);
    return real_ != nullptr ? real_->append(entries) : seq;
  }
  PersistSeq truncate_after(LogIndex index) override {
    checker_.on_truncate(node_, index, raft_ != nullptr ? raft_->commit_index() : LogIndex{0});
    const PersistSeq seq = store_.truncate_after(index);
    return real_ != nullptr ? real_->truncate_after(index) : seq;
  }
  PersistSeq save_hard_state(const consensus::HardState& state) override {
    const consensus::HardState previous = store_.hard_state();
    // The core's own rules, checked from outside: terms never go back; one vote per term.
    if (state.term < previous.term)
      checker_.fail(
          fmt::format("node {} saves term {} after term {}", node_.value(), state.term.value(), previous.term.value()));
    else if (state.term == previous.term && previous.voted_for && state.voted_for != previous.voted_for)
      checker_.fail(fmt::format("node {} changes its vote in term {} from {} to {}", node_.value(), state.term.value(),
                                previous.voted_for->value(), state.voted_for ? state.voted_for->value() : 0));
    const PersistSeq seq = store_.save_hard_state(state);
    return real_ != nullptr ? real_->save_hard_state(state) : seq;
  }

 private:
  const consensus::LogStore& source() const { return real_ != nullptr ? *real_ : store_; }

  consensus::MemoryLogStore& store_;
  Checker& checker_;
  NodeId node_;
  const Raft* raft_ = nullptr;
  consensus::LogStore* real_ = nullptr;
};

// crash: the periodic crash of a random node; crash_node: one aimed at a node (incarnation) right after it
// changed role.
// storage_write and storage_sync: the two halves of the real storage thread's group commit.
enum class EventKind : std::uint8_t {
  deliver,
  tick,
  sync,
  storage_write,
  storage_sync,
  crash,
  crash_node,
  restart,
  partition,
  client,
  transfer
};

struct Event {
  EventKind kind = EventKind::tick;
  std::uint32_t node = 0;  // index into nodes_
  std::uint64_t incarnation = 0;
  PersistSeq seq = 0;
  Message message;
};

// The KV service, watched: on every replica, each session's requests arrive exactly once and in order (request
// ids are the client's seqs), and each timer fires at most once.
class ProbeService final : public Service {
 public:
  ProbeService(Checker& checker, NodeId node) : checker_(checker), node_(node) {}

  void on_start(Cluster& cluster, std::optional<Bytes> snapshot) override { kv_.on_start(cluster, snapshot); }
  void on_session_open(Cluster& cluster, SessionId session) override {
    last_request_[session] = 0;
    kv_.on_session_open(cluster, session);
  }
  void on_session_close(Cluster& cluster, SessionId session, CloseReason reason) override {
    kv_.on_session_close(cluster, session, reason);
  }
  void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) override {
    const std::uint64_t id = services::peek_kv_request_id(message);
    std::uint64_t& last = last_request_[session];
    if (id != last + 1)
      checker_.fail(fmt::format("node {} applies request {} of session {} after request {}: not exactly once in order",
                                node_.value(), id, session, last));
    last = id;
    kv_.on_message(cluster, session, timestamp, message);
  }
  void on_timer(Cluster& cluster, TimerId id, ClusterTime timestamp) override {
    if (!fired_.insert(id).second) checker_.fail(fmt::format("node {} fires timer {} twice", node_.value(), id));
    kv_.on_timer(cluster, id, timestamp);
  }
  void on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) override { kv_.on_take_snapshot(cluster, out); }

 private:
  Checker& checker_;
  NodeId node_;
  services::KvService kv_;
  std::map<SessionId, std::uint64_t> last_request_;
  std::set<TimerId> fired_;
};

// A client of the cluster, as the simulator plays it: one session, messages numbered by seq, each kept until
// the leader acknowledges it and resent (the same seq) after a leader change or a silence.
struct SimClient {
  host::Id128 id;
  SessionId session = 0;
  std::uint64_t next_seq = 1;
  std::deque<std::pair<std::uint64_t, std::vector<std::byte>>> unacked;
  Time last_progress{};           // last acknowledgement or (re)send
  Term leader_term;               // the leader term the session was last opened (resumed) in
  std::uint64_t resent_from = 0;  // a gap answered by resending from here: later gaps naming it are echoes
  bool awaiting_open = false;     // an open was sent and not answered yet (older opens' answers are echoes)
};

struct Scheduled {
  Time at;
  std::uint64_t order;  // ties in time break by scheduling order: deterministic
  std::uint32_t slot;
  bool operator>(const Scheduled& other) const { return at != other.at ? at > other.at : order > other.order; }
};

}  // namespace

std::string FaultMix::describe() const {
  return fmt::format(
      "nodes={} drop={}/1000 dup={}/1000 long-delay={}/1000 delay<={}ms partition-every={}ms crash-every={}ms "
      "crash-on-role-change={}/1000 fsync-fail={}/100k slow-storage={}/1000 client-every={}ms transfer-every={}ms "
      "crash-on-leader-commit={}/1000 batch={} inflight={} storage={}",
      nodes, drop_per_mille, duplicate_per_mille, long_delay_per_mille, as_micros(delay_max) / 1000,
      as_micros(partition_every) / 1000, as_micros(crash_every) / 1000, crash_after_role_change_per_mille,
      fsync_failure_per_100k, slow_storage_per_mille, as_micros(client_every) / 1000, as_micros(transfer_every) / 1000,
      crash_after_commit_per_mille, max_append_entries, max_inflight_appends,
      !real_storage ? std::string("memory")
                    : fmt::format("segments(sync={} segment={}B cache={}B crash-in-write={}/1000)",
                                  sync_none ? "none" : "fsync", segment_size, cache_bytes, crash_in_storage_per_mille));
}

std::optional<FaultMix> hunt_mix(std::string_view name) {
  FaultMix mix;
  mix.delay_max = 5ms;
  mix.crash_every = 1s;
  mix.client_every = 30ms;
  if (name == "figure8") {
    mix.nodes = 5;
    mix.partition_every = 2s;
    mix.crash_after_role_change_per_mille = 300;
    mix.crash_after_commit_per_mille = 200;
    mix.max_append_entries = 1;
    mix.max_inflight_appends = 1;
    return mix;
  }
  if (name == "storage") {
    mix.nodes = 3;
    mix.real_storage = true;
    mix.segment_size = 1024;
    mix.cache_bytes = 0;
    mix.crash_in_storage_per_mille = 100;
    mix.client_every = 10ms;
    return mix;
  }
  if (name == "vote") {
    mix.nodes = 3;
    mix.crash_after_role_change_per_mille = 500;
    mix.slow_storage_per_mille = 300;
    return mix;
  }
  return std::nullopt;
}

FaultMix fault_mix_for_seed(std::uint64_t seed) {
  Random random(seed);
  FaultMix mix = draw_mix(random);
  draw_storage(mix, seed);
  return mix;
}

struct Simulator::Impl {
  struct Node {
    Node(NodeId node_id, Checker& checker) : id(node_id), log(store, checker, node_id) {}
    NodeId id;
    // The disk (survives crashes) with the in-memory store; with real storage, the model of the disk.
    consensus::MemoryLogStore store;
    CheckedLog log;
    // Real storage only: the disk, which survives crashes, and what a node builds on it at every start.
    std::unique_ptr<storage::MemoryDirectory> disk;
    std::unique_ptr<storage::SegmentedLog> durable_log;
    std::unique_ptr<storage::LogWriter> writer;
    std::deque<std::unique_ptr<storage::Batch>> queued;    // taken from the log, waiting for the storage thread
    std::vector<std::unique_ptr<storage::Batch>> writing;  // written, waiting for their sync
    bool storage_busy = false;                             // a storage_write or storage_sync is scheduled
    PersistSeq seq_offset = 0;                             // store seq = real seq + seq_offset
    std::unique_ptr<ProbeService> service;                 // rebuilt from the log at every start
    std::unique_ptr<host::Replica> replica;                // null while the node is down
    Raft* raft = nullptr;                                  // the replica's consensus core
    Duration clock_skew{0};                                // this node's wall clock minus true time
    LogIndex hashed;                                       // applied position whose state hash was checked last
    std::uint64_t incarnation = 0;
    std::vector<Outgoing> outbox;   // waiting for their `after` to become durable
    PersistSeq sync_requested = 0;  // highest sequence a sync is scheduled for, in this incarnation
    Time storage_free{};            // one device: syncs complete in the order they were issued
    LogIndex commit;
    Role role = Role::follower;
    Term term;
    consensus::Ready ready;
  };

  enum class Phase : std::uint8_t { safety, liveness };
  static constexpr std::uint32_t kCluster = ~std::uint32_t{0};  // a trace line about no node in particular

  explicit Impl(Options opts) : options(opts), random(options.seed), mix(draw_mix(random)) {
    draw_storage(mix, options.seed);
    if (options.mix) mix = *options.mix;
    if (options.nodes) mix.nodes = *options.nodes;
    checker = std::make_unique<Checker>(mix.nodes);
    blocked.assign(mix.nodes * mix.nodes, false);
  }

  Options options;
  Random random;
  FaultMix mix;
  std::unique_ptr<Checker> checker;
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<const consensus::MemoryLogStore*> stores;
  std::vector<NodeId> members;
  std::vector<bool> blocked;  // [from * n + to]: the link drops everything
  bool partitioned = false;
  Phase phase = Phase::safety;
  Time now{};
  std::vector<Event> slots;
  std::vector<std::uint32_t> free_slots;
  std::priority_queue<Scheduled, std::vector<Scheduled>, std::greater<>> queue;
  std::uint64_t order = 0;
  Outcome outcome;
  std::uint64_t client_counter = 0;
  std::vector<SimClient> clients;
  std::map<std::uint64_t, std::pair<std::uint64_t, NodeId>> state_hashes;  // log position -> (hash, first node)
  std::optional<host::Id128> liveness_client;
  bool liveness_session_opened = false;

  struct LivenessProposal {
    LogIndex index;
    Term term;
  };
  std::vector<LivenessProposal> liveness_proposals;

  // --- plumbing -----------------------------------------------------------------------------------------------

  template <typename... Args>
  void trace(std::uint32_t node, fmt::format_string<Args...> format, Args&&... args) {
    if (options.trace == nullptr) return;
    const std::uint64_t us = as_micros(now);
    if (node == kCluster)
      fmt::print(options.trace, "{:>4}.{:06} -- ", us / 1'000'000, us % 1'000'000);
    else
      fmt::print(options.trace, "{:>4}.{:06} n{} ", us / 1'000'000, us % 1'000'000, node + 1);
    fmt::print(options.trace, format, std::forward<Args>(args)...);
    std::fputc('\n', options.trace);
  }

  void mix_fingerprint(std::uint64_t value) {
    std::uint64_t& h = outcome.fingerprint;
    h ^= value + 0x9E3779B97F4A7C15ULL + (h << 6U) + (h >> 2U);
  }

  void schedule(Duration delay, Event event) {
    std::uint32_t slot = 0;
    if (free_slots.empty()) {
      slot = static_cast<std::uint32_t>(slots.size());
      slots.push_back(std::move(event));
    } else {
      slot = free_slots.back();
      free_slots.pop_back();
      slots[slot] = std::move(event);
    }
    queue.push(Scheduled{now + delay, order++, slot});
  }

  Event make(EventKind kind, std::uint32_t node) {
    Event event;
    event.kind = kind;
    event.node = node;
    event.incarnation = nodes[node]->incarnation;
    return event;
  }

  bool live(const Event& event) const {
    const Node& node = *nodes[event.node];
    return node.raft != nullptr && node.incarnation == event.incarnation;
  }

  // The node that believes it leads the newest term, if any.
  std::optional<std::uint32_t> leader() const {
    std::optional<std::uint32_t> found;
    for (std::uint32_t i = 0; i < nodes.size(); ++i) {
      const Node& node = *nodes[i];
      if (node.raft == nullptr || node.raft->role() != Role::leader) continue;
      if (!found || node.raft->term() > nodes[*found]->raft->term()) found = i;
    }
    return found;
  }

  std::uint32_t random_node() { return static_cast<std::uint32_t>(random.below(nodes.size())); }

  // --- nodes --------------------------------------------------------------------------------------------------

  void start_node(std::uint32_t index) {
    Node& node = *nodes[index];
    consensus::Config config;
    config.id = node.id;
    config.members = members;
    config.max_append_entries = mix.max_append_entries;
    config.max_inflight_appends = mix.max_inflight_appends;
    ++node.incarnation;
    if (mix.real_storage) open_storage(index);
    node.service = std::make_unique<ProbeService>(*checker, node.id);
    host::ReplicaConfig replica_config;
    replica_config.raft = config;
    node.replica =
        std::make_unique<host::Replica>(replica_config, node.log, *node.service, random.next(), now, wall(node));
    node.raft = &node.replica->raft();
    node.hashed = LogIndex{0};
    node.log.attach(node.raft);
    node.outbox.clear();
    node.sync_requested = node.store.durable_seq();
    node.storage_busy = false;
    node.storage_free = now;
    node.commit = LogIndex{0};
    node.role = node.raft->role();
    node.term = node.raft->term();
    trace(index, "start: term {} log {} (incarnation {})", node.term.value(), node.store.last_index().value(),
          node.incarnation);
    schedule(micros(random.between(1, 10'000)), make(EventKind::tick, index));
  }

  // Unsynced writes are lost, or a prefix of them reached the disk; in-flight work and timers vanish.
  void stop_node(std::uint32_t index, const char* why) {
    Node& node = *nodes[index];
    if (mix.real_storage) {
      crash_storage(index, why);
    } else {
      const std::size_t pending = node.store.pending_writes();
      const auto keep = static_cast<std::size_t>(random.between(0, pending));
      // Sometimes the first write that did not make it whole made it in part: a torn append batch.
      const auto torn = static_cast<std::size_t>(random.chance(1, 4) ? random.between(1, 64) : 0);
      const std::size_t lost = node.store.crash(keep, torn);
      trace(index, "{}: kept {} of {} unsynced writes (next torn to {} entries), lost {}; durable log {}", why, keep,
            pending, torn, lost, node.store.durable_entries().size());
    }
    node.replica.reset();
    node.raft = nullptr;
    node.service.reset();
    node.log.attach(nullptr);
    node.outbox.clear();
    ++node.incarnation;  // events of the old incarnation are ignored from now on
    checker->check_committed_durable(stores);
  }

  // --- real storage -------------------------------------------------------------------------------------------

  storage::LogOptions storage_options() const {
    storage::LogOptions log_options;
    log_options.segment_size = mix.segment_size;
    log_options.cache_bytes = mix.cache_bytes;
    return log_options;
  }

  storage::Identity identity(const Node& node) const { return storage::Identity{options.seed, node.id}; }

  // Builds the node's log on what its disk holds now (a node starting, the first time or after a crash).
  void open_storage(std::uint32_t index) {
    Node& node = *nodes[index];
    if (node.disk == nullptr) node.disk = std::make_unique<storage::MemoryDirectory>(fmt::format("n{}", index + 1));
    auto recovered = storage::recover(*node.disk, identity(node), storage_options());
    if (!recovered) {
      // The run cannot go on without this node's log; the failure stops it at the end of this step.
      checker->fail(fmt::format("node {} cannot recover its log: {}", node.id.value(), recovered.error()));
      recovered = storage::RecoveredLog{};
    }
    node.durable_log = std::make_unique<storage::SegmentedLog>(*node.disk, identity(node), storage_options(),
                                                               std::move(*recovered), random.next());
    node.writer = std::make_unique<storage::LogWriter>(
        *node.disk, identity(node), mix.sync_none ? storage::SyncPolicy::none : storage::SyncPolicy::fsync,
        node.durable_log->segment_keys(), node.durable_log->last_index());
    node.queued.clear();
    node.writing.clear();
    node.seq_offset = node.store.last_seq();
    node.log.use(node.durable_log.get());
  }

  // The machine (or the process) goes down: the disk keeps what its crash model keeps. Recovery runs at once, to
  // check what it finds against the model of every write made (consensus::MemoryLogStore::explain_recovery).
  void crash_storage(std::uint32_t index, const char* why) {
    Node& node = *nodes[index];
    node.log.use(nullptr);
    node.durable_log.reset();
    node.writer.reset();
    node.queued.clear();
    node.writing.clear();
    const bool machine = !mix.sync_none && random.chance(3, 4);
    if (machine)
      node.disk->crash(random);
    else
      node.disk->crash_keep_all();
    ++outcome.stats.recoveries;
    auto recovered = storage::recover(*node.disk, identity(node), storage_options());
    if (!recovered) {
      checker->fail(fmt::format("node {} refuses to recover after a {} crash: {}", node.id.value(),
                                machine ? "machine" : "process", recovered.error()));
      return;
    }
    for (const std::string& repair : recovered->repairs) {
      trace(index, "recovery: {}", repair);
      if (repair.find("torn tail") != std::string::npos) ++outcome.stats.torn_tails;
    }
    const consensus::HardState hard_state = recovered->hard_state;
    const storage::SegmentedLog log(*node.disk, identity(node), storage_options(), std::move(*recovered), 0);
    std::vector<Entry> entries;
    for (LogIndex i = log.first_index(); i <= log.last_index(); i = i.next()) entries.push_back(log.entry(i));
    if (const std::string wrong = node.store.explain_recovery(entries, hard_state); !wrong.empty()) {
      checker->fail(
          fmt::format("node {} after a {} crash: {}", node.id.value(), machine ? "machine" : "process", wrong));
      return;
    }
    trace(index, "{} ({} crash): recovered log {} term {}", why, machine ? "machine" : "process", entries.size(),
          hard_state.term.value());
    node.store.reset(std::move(entries), hard_state);
  }

  // The storage thread takes everything queued and writes it; its sync follows as a separate event, so a crash
  // can fall between the two.
  void storage_write(const Event& event) {
    if (!live(event)) return;
    Node& node = *nodes[event.node];
    std::vector<storage::Batch*> group;
    while (!node.queued.empty()) {
      node.writing.push_back(std::move(node.queued.front()));
      node.queued.pop_front();
      group.push_back(node.writing.back().get());
    }
    if (auto status = node.writer->write(group); !status) {
      checker->fail(fmt::format("node {}: storage write fails: {}", node.id.value(), status.error().message));
      return;
    }
    Duration latency = micros(random.between(50, 2'000));
    if (phase == Phase::safety && random.chance(mix.slow_storage_per_mille, 1000))
      latency = micros(random.between(20'000, 300'000));
    if (phase == Phase::safety && random.chance(mix.crash_in_storage_per_mille, 1000))
      schedule(latency / 2, make(EventKind::crash_node, event.node));
    schedule(latency, make(EventKind::storage_sync, event.node));
  }

  void storage_sync(const Event& event) {
    if (!live(event)) return;
    Node& node = *nodes[event.node];
    const bool fail = !mix.sync_none && phase == Phase::safety && random.chance(mix.fsync_failure_per_100k, 100'000);
    node.disk->fail_syncs(fail);
    const auto synced = node.writer->sync();
    node.disk->fail_syncs(false);
    if (!synced) {
      if (!fail) checker->fail(fmt::format("node {}: storage sync fails: {}", node.id.value(), synced.error().message));
      // Never retry a failed fsync (the kernel may have dropped the dirty pages): the node stops.
      ++outcome.stats.fsync_failures;
      stop_node(event.node, "fsync fails, node stops");
      schedule(micros(random.between(1'000'000, 5'000'000)), make(EventKind::restart, event.node));
      return;
    }
    for (auto& batch : node.writing) {
      const storage::StorageOp& last = batch->ops.back();
      storage::BatchResult result;
      result.completion = consensus::PersistCompletion{last.seq, last.last_index, last.last_term};
      const auto completion = node.durable_log->complete(std::move(batch), result);
      COHORT_ASSERT(completion.has_value());
      (void)node.store.make_durable(completion->seq + node.seq_offset);
      trace(event.node, "durable up to seq {} (log {}/{})", completion->seq, completion->last_index.value(),
            completion->last_term.value());
      node.replica->on_persisted(*completion, now);
    }
    node.writing.clear();
    node.storage_busy = false;
    flush(event.node);
  }

  // Everything a step produced: messages to the outbox (released once durable), a storage sync, the checks.
  void flush(std::uint32_t index) {
    Node& node = *nodes[index];
    node.replica->take_ready(node.ready);
    for (auto& out : node.ready.messages) node.outbox.push_back(std::move(out));
    node.ready.messages.clear();
    release(index);

    if (mix.real_storage) {
      if (auto batch = node.durable_log->take_batch()) node.queued.push_back(std::move(batch));
      if (!node.storage_busy && !node.queued.empty()) {
        node.storage_busy = true;
        schedule(micros(random.between(5, 200)), make(EventKind::storage_write, index));
      }
    } else if (const PersistSeq last = node.store.last_seq(); last > node.sync_requested) {
      node.sync_requested = last;
      Duration latency = micros(random.between(50, 2'000));
      if (phase == Phase::safety && random.chance(mix.slow_storage_per_mille, 1000))
        latency = micros(random.between(20'000, 300'000));
      node.storage_free = std::max(node.storage_free, now + latency);
      Event event = make(EventKind::sync, index);
      event.seq = last;
      schedule(node.storage_free - now, std::move(event));
    }

    const Role role = node.raft->role();
    const Term term = node.raft->term();
    const bool became_leader = role == Role::leader && (node.role != Role::leader || node.term != term);
    if (role != node.role || term != node.term) {
      trace(index, "becomes {} in term {}", consensus::to_string(role), term.value());
      if (phase == Phase::safety && random.chance(mix.crash_after_role_change_per_mille, 1000)) {
        schedule(micros(random.between(0, 5'000)), make(EventKind::crash_node, index));
      }
    }
    if (node.ready.commit > node.commit) {
      trace(index, "commits up to {}", node.ready.commit.value());
      if (role == Role::leader && phase == Phase::safety && random.chance(mix.crash_after_commit_per_mille, 1000))
        schedule(micros(random.between(0, 5'000)), make(EventKind::crash_node, index));
    }
    checker->on_step(node.id, role, term, became_leader, node.commit, node.ready.commit, node.log, stores);
    checker->check_durable_claim(node.id, node.raft->durable_index(), node.store);
    node.role = role;
    node.term = term;
    node.commit = node.ready.commit;
    observe_host(index);
    mix_fingerprint(index);
    mix_fingerprint(term.value());
    mix_fingerprint(node.commit.value());
    mix_fingerprint(node.store.last_index().value());
  }

  // The service host's outputs: the leader's answers reach the simulated clients (a follower's are computed and
  // dropped, as the runtime does). Then the replica's state hash is checked against every other replica's at the
  // same log position.
  void observe_host(std::uint32_t index) {
    Node& node = *nodes[index];
    host::ServiceHost& host = node.replica->host();
    const bool leading = node.raft->role() == Role::leader;
    for (const host::HostOutput& output : host.outputs()) {
      if (!leading) continue;
      if (const auto* opened = std::get_if<host::SessionOpened>(&output)) {
        for (SimClient& client : clients) {
          if (client.id != opened->client) continue;
          if (client.session != 0 && client.session != opened->session)
            checker->fail(fmt::format("client {} had session {} and is given session {}", client.id.low, client.session,
                                      opened->session));
          client.session = opened->session;
          // Each leader term's reopen is applied once; only the answer to the open in flight resends (the real
          // client hears only the answer on its current connection).
          if (!client.awaiting_open) continue;
          client.awaiting_open = false;
          client.resent_from = opened->last_seq + 1;
          resend(client, opened->last_seq + 1);
        }
        if (liveness_client && opened->client == *liveness_client) liveness_session_opened = true;
      } else if (const auto* applied = std::get_if<host::Applied>(&output)) {
        for (SimClient& client : clients) {
          if (client.session != applied->session) continue;
          if (applied->seq >= client.next_seq)
            checker->fail(fmt::format("session {} acknowledges seq {} never sent", applied->session, applied->seq));
          while (!client.unacked.empty() && client.unacked.front().first <= applied->seq) client.unacked.pop_front();
          client.last_progress = now;
        }
      } else if (const auto* rejected = std::get_if<host::Rejected>(&output)) {
        // Every message after a lost one reports the same gap; one resend answers them all.
        for (SimClient& client : clients)
          if (client.session == rejected->session && rejected->reason == host::RejectReason::gap &&
              client.resent_from != rejected->expected) {
            client.resent_from = rejected->expected;
            resend(client, rejected->expected);
          }
        if (rejected->reason != host::RejectReason::gap)
          checker->fail(fmt::format("session {} seq {} rejected ({})", rejected->session, rejected->seq,
                                    static_cast<int>(rejected->reason)));
      }
    }
    host.outputs().clear();
    if (host.applied_index() == node.hashed) return;
    node.hashed = host.applied_index();
    const std::uint64_t hash = host.state_hash();
    const auto [it, inserted] = state_hashes.try_emplace(host.applied_index().value(), hash, node.id);
    if (!inserted && it->second.first != hash)
      checker->fail(fmt::format("node {} state hash {:016x} at log position {} differs from node {}'s {:016x}",
                                node.id.value(), hash, host.applied_index().value(), it->second.second.value(),
                                it->second.first));
  }

  // Re-sends a client's unacknowledged messages from `seq` on, to the current leader.
  void resend(SimClient& client, std::uint64_t seq) {
    const auto current = leader();
    if (!current || client.session == 0) return;
    host::Replica& replica = *nodes[*current]->replica;
    std::size_t sent = 0;
    for (const auto& [message_seq, message] : client.unacked) {
      if (message_seq < seq) continue;
      if (!replica.ingress(client.session, message_seq, message, now).has_value()) break;
      ++sent;
    }
    trace(*current, "client: resend of session {} from seq {}: {} messages", client.session, seq, sent);
    client.last_progress = now;
  }

  ClusterTime wall(const Node& node) const {
    // A plausible epoch, so stamps look like times; each node's clock is off by its own skew.
    return std::chrono::seconds(1'700'000'000) + now + node.clock_skew;
  }

  // Sends what storage has made safe to send (raft.h, driver contract 2).
  void release(std::uint32_t index) {
    Node& node = *nodes[index];
    const PersistSeq durable = mix.real_storage ? node.durable_log->completed_seq() : node.store.durable_seq();
    auto keep = node.outbox.begin();
    for (auto it = node.outbox.begin(); it != node.outbox.end(); ++it) {
      if (it->after > durable) {
        if (keep != it) *keep = std::move(*it);
        ++keep;
        continue;
      }
      transmit(it->message);
    }
    node.outbox.erase(keep, node.outbox.end());
  }

  bool cut(const Message& message) const {
    return blocked[(message.from.value() - 1) * nodes.size() + (message.to.value() - 1)];
  }

  void transmit(const Message& message) {
    const std::uint32_t from = message.from.value() - 1;
    const bool faults = phase == Phase::safety;
    if (cut(message) || (faults && random.chance(mix.drop_per_mille, 1000))) {
      ++outcome.stats.dropped;
      trace(from, "lost {}", describe(message));
      return;
    }
    const bool duplicate = faults && random.chance(mix.duplicate_per_mille, 1000);
    for (int copy = duplicate ? 2 : 1; copy > 0; --copy) {
      Duration delay = micros(random.between(100, std::max<std::uint64_t>(as_micros(mix.delay_max), 100)));
      if (faults && random.chance(mix.long_delay_per_mille, 1000)) delay = micros(random.between(50'000, 2'000'000));
      Event event;
      event.kind = EventKind::deliver;
      event.node = message.to.value() - 1;
      event.message = message;  // copied: the duplicate needs it too, and a message is small here
      schedule(delay, std::move(event));
    }
    if (duplicate) ++outcome.stats.duplicated;
  }

  // --- events -------------------------------------------------------------------------------------------------

  void handle(Event& event) {
    mix_fingerprint(static_cast<std::uint64_t>(event.kind));
    mix_fingerprint(as_micros(now));
    switch (event.kind) {
      case EventKind::deliver: return deliver(event);
      case EventKind::tick: return tick(event);
      case EventKind::sync: return sync(event);
      case EventKind::storage_write: return storage_write(event);
      case EventKind::storage_sync: return storage_sync(event);
      case EventKind::crash: return crash();
      case EventKind::crash_node: return crash_node(event);
      case EventKind::restart: return restart(event);
      case EventKind::partition: return partition();
      case EventKind::client: return client();
      case EventKind::transfer: return transfer();
    }
  }

  void deliver(const Event& event) {
    Node& node = *nodes[event.node];
    if (node.raft == nullptr || cut(event.message)) {
      ++outcome.stats.dropped;
      trace(event.node, "drops {} ({})", describe(event.message), node.raft == nullptr ? "down" : "partitioned");
      return;
    }
    ++outcome.stats.delivered;
    trace(event.node, "recv {}", describe(event.message));
    node.replica->step(event.message, now);
    flush(event.node);
  }

  void tick(const Event& event) {
    if (!live(event)) return;
    Node& node = *nodes[event.node];
    node.replica->tick(now, wall(node));
    flush(event.node);
    // Each node's timer fires at its own irregular pace, as real clocks and schedulers do.
    schedule(micros(random.between(1'000, 10'000)), make(EventKind::tick, event.node));
  }

  void sync(const Event& event) {
    if (!live(event)) return;
    Node& node = *nodes[event.node];
    if (phase == Phase::safety && random.chance(mix.fsync_failure_per_100k, 100'000)) {
      // Never retry a failed fsync (the kernel may have dropped the dirty pages): the node stops.
      ++outcome.stats.fsync_failures;
      stop_node(event.node, "fsync fails, node stops");
      Event restart_event = make(EventKind::restart, event.node);
      schedule(micros(random.between(1'000'000, 5'000'000)), std::move(restart_event));
      return;
    }
    const consensus::PersistCompletion completion = node.store.make_durable(event.seq);
    trace(event.node, "durable up to seq {} (log {}/{})", completion.seq, completion.last_index.value(),
          completion.last_term.value());
    node.replica->on_persisted(completion, now);
    flush(event.node);
  }

  void crash() {
    if (phase != Phase::safety) return;
    const std::uint32_t index = random_node();
    if (nodes[index]->raft != nullptr) {
      ++outcome.stats.crashes;
      stop_node(index, "crash");
      schedule(micros(random.between(50'000, 5'000'000)), make(EventKind::restart, index));
    }
    schedule(around(random, mix.crash_every), make(EventKind::crash, 0));
  }

  void crash_node(const Event& event) {
    if (phase != Phase::safety || !live(event)) return;
    ++outcome.stats.crashes;
    stop_node(event.node, "crash at a chosen moment");
    schedule(micros(random.between(50'000, 5'000'000)), make(EventKind::restart, event.node));
  }

  void restart(const Event& event) {
    Node& node = *nodes[event.node];
    if (node.raft != nullptr || node.incarnation != event.incarnation) return;
    start_node(event.node);
    flush(event.node);
  }

  void partition() {
    if (phase != Phase::safety) return;
    const std::size_t n = nodes.size();
    if (partitioned) {
      std::fill(blocked.begin(), blocked.end(), false);
      partitioned = false;
      trace(kCluster, "network heals");
      schedule(around(random, mix.partition_every), make(EventKind::partition, 0));
      return;
    }
    partitioned = true;
    ++outcome.stats.partitions;
    const auto block = [&](std::size_t from, std::size_t to) { blocked[from * n + to] = true; };
    std::string what;
    switch (random.below(3)) {
      case 0: {  // symmetric: two sides that cannot hear each other
        std::vector<bool> side(n);
        for (std::size_t i = 0; i < n; ++i) side[i] = random.chance(1, 2);
        for (std::size_t a = 0; a < n; ++a)
          for (std::size_t b = 0; b < n; ++b)
            if (side[a] != side[b]) block(a, b);
        for (std::size_t i = 0; i < n; ++i) what += side[i] ? 'A' : 'B';
        what = "symmetric partition " + what;
        break;
      }
      case 1: {  // one-way: some links drop in one direction only
        const std::uint64_t links = random.between(1, n * n);
        for (std::uint64_t i = 0; i < links; ++i) {
          const std::size_t a = random_node();
          const std::size_t b = random_node();
          if (a != b) {
            block(a, b);
            what += fmt::format(" n{}->n{}", a + 1, b + 1);
          }
        }
        what = "one-way cuts" + what;
        break;
      }
      default: {  // the leader alone, both ways (or one way only: it still sends, but hears nothing)
        const std::size_t isolated = leader().value_or(random_node());
        const bool inbound_only = random.chance(1, 3);
        for (std::size_t other = 0; other < n; ++other) {
          if (other == isolated) continue;
          block(other, isolated);
          if (!inbound_only) block(isolated, other);
        }
        what = fmt::format("isolates n{}{}", isolated + 1, inbound_only ? " (inbound only)" : "");
        break;
      }
    }
    trace(kCluster, "network: {}", what);
    schedule(micros(random.between(200'000, 5'000'000)), make(EventKind::partition, 0));
  }

  // A client acts: a session open, a new KV request, or (after a silence) a resend of what is unacknowledged.
  // Requests usually go to the leader, sometimes to a random node, which must refuse them unless it leads.
  void client() {
    const bool safety = phase == Phase::safety;
    schedule(around(random, safety ? mix.client_every : Duration(100ms)), make(EventKind::client, 0));
    SimClient& client = clients[random.below(clients.size())];
    const auto current = leader();
    // In the liveness phase a client talks to the leader it knows, as the real one does once redirected.
    const bool to_random = !current || (safety && random.chance(1, 10));
    const std::uint32_t index = to_random ? random_node() : *current;
    Node& node = *nodes[index];
    if (node.raft == nullptr) return;
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
        checker->fail(
            fmt::format("node {} accepts a proposal as {}", node.id.value(), consensus::to_string(node.raft->role())));
      ++outcome.stats.proposals;
      trace(index, "client: {} at index {}", what, result.value().value());
    } else {
      if (leading && result.error() != host::ClientError::transferring)
        checker->fail(fmt::format("leader {} refuses a proposal", node.id.value()));
      ++outcome.stats.refusals;
      trace(index, "refuses client: {}", what);
    }
    flush(index);
  }

  // A random KV request on a small key space, so that requests collide; about one in five has a short TTL, so
  // timers are armed, superseded and fired all through the run.
  std::vector<std::byte> kv_request(std::uint64_t seq) {
    services::KvRequest request;
    request.request_id = seq;
    request.key = fmt::format("k{}", random.below(8));
    switch (random.below(10)) {
      case 0: request.op = services::KvOp::get; break;
      case 1: request.op = services::KvOp::remove; break;
      case 2:
        request.op = services::KvOp::compare_and_set;
        request.value = fmt::format("v{}", seq);
        if (random.chance(1, 2)) request.expected = fmt::format("v{}", seq - 1);
        break;
      case 3:
      case 4:
        request.op = services::KvOp::put_with_ttl;
        request.value = fmt::format("v{}", seq);
        request.ttl_ms = random.between(1, 500);
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

  void transfer() {
    if (phase != Phase::safety) return;
    schedule(around(random, mix.transfer_every), make(EventKind::transfer, 0));
    const auto current = leader();
    if (!current || nodes.size() == 1) return;
    std::uint32_t target = random_node();
    if (target == *current) target = (target + 1) % static_cast<std::uint32_t>(nodes.size());
    const auto status = nodes[*current]->raft->transfer_leadership(NodeId{target + 1}, now);
    if (!status.ok()) {
      checker->fail(fmt::format("leader {} refuses to transfer to {}", *current + 1, target + 1));
      return;
    }
    ++outcome.stats.transfers;
    trace(*current, "transfers leadership to n{}", target + 1);
    flush(*current);
  }

  // --- liveness -----------------------------------------------------------------------------------------------

  void begin_liveness() {
    phase = Phase::liveness;
    trace(kCluster, "liveness phase: faults stop, the network heals, stopped nodes restart");
    std::fill(blocked.begin(), blocked.end(), false);
    partitioned = false;
    for (std::uint32_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i]->raft != nullptr) continue;
      start_node(i);
      flush(i);
    }
  }

  // A single leader, and one of the liveness proposals committed on every node.
  // A single leader, one of the liveness proposals (a session open) committed on every node, every client's
  // messages acknowledged, and no timer overdue.
  bool converged() {
    std::optional<std::uint32_t> only;
    for (std::uint32_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i]->raft->role() != Role::leader) continue;
      if (only) return false;
      only = i;
    }
    if (!only) return false;
    Node& lead = *nodes[*only];
    const bool pending = std::any_of(liveness_proposals.begin(), liveness_proposals.end(),
                                     [&](const auto& p) { return lead.store.term_at(p.index) == p.term; });
    if (!pending && lead.raft->transfer_target() == std::nullopt) {
      liveness_client = host::Id128{0x11FE, ++client_counter};
      const auto result = lead.replica->open_session(*liveness_client, now);
      if (result.has_value()) {
        liveness_proposals.push_back({result.value(), lead.raft->term()});
        trace(*only, "liveness proposal at index {}", result.value().value());
      }
      flush(*only);
      return false;
    }
    const bool committed = std::any_of(liveness_proposals.begin(), liveness_proposals.end(), [&](const auto& p) {
      return std::all_of(nodes.begin(), nodes.end(), [&](const auto& node) {
        return node->commit >= p.index && node->store.term_at(p.index) == p.term;
      });
    });
    if (!committed) return false;
    if (std::any_of(clients.begin(), clients.end(),
                    [](const SimClient& c) { return c.session == 0 || !c.unacked.empty(); }))
      return false;
    // Timers: none of the leader's may be more than a second overdue in cluster time.
    std::vector<std::pair<TimerId, std::uint64_t>> overdue;
    lead.replica->host().due_timers(lead.replica->cluster_time(now) - 1s, overdue, 1);
    return overdue.empty();
  }

  std::string cluster_state() const {
    std::string text;
    for (const auto& node : nodes) {
      text += fmt::format("\n  n{}: {} term {} leader {} log {} durable {} commit {}", node->id.value(),
                          node->raft ? consensus::to_string(node->raft->role()) : "down",
                          node->raft ? node->raft->term().value() : 0,
                          node->raft && node->raft->leader() ? node->raft->leader()->value() : 0,
                          node->store.last_index().value(), node->store.durable_entries().size(), node->commit.value());
    }
    return text;
  }

  // --- the run ------------------------------------------------------------------------------------------------

  bool step() {
    const Scheduled next = queue.top();
    queue.pop();
    now = next.at;
    Event event = std::move(slots[next.slot]);
    free_slots.push_back(next.slot);
    handle(event);
    ++outcome.events;
    if (!checker->failed()) return true;
    outcome.ok = false;
    outcome.failure = fmt::format("at {:.6f} s: {}{}", std::chrono::duration<double>(now).count(), checker->failure(),
                                  cluster_state());
    return false;
  }

  Outcome run() {
    outcome.mix = mix;
    for (std::uint32_t i = 0; i < mix.nodes; ++i) members.push_back(NodeId{i + 1});
    for (const NodeId id : members) {
      nodes.push_back(std::make_unique<Node>(id, *checker));
      stores.push_back(&nodes.back()->store);
    }
    if (options.trace != nullptr) fmt::print(options.trace, "seed {}: {}\n", options.seed, mix.describe());
    for (auto& node : nodes) node->clock_skew = micros(random.between(0, 4'000'000)) - 2s;
    for (std::uint64_t c = 1; c <= 3; ++c) {
      clients.emplace_back();
      clients.back().id = host::Id128{0xC11E, c};
    }
    for (std::uint32_t i = 0; i < nodes.size(); ++i) start_node(i);
    schedule(around(random, mix.client_every), make(EventKind::client, 0));
    if (mix.partition_every > 0s) schedule(around(random, mix.partition_every), make(EventKind::partition, 0));
    if (mix.crash_every > 0s) schedule(around(random, mix.crash_every), make(EventKind::crash, 0));
    if (mix.transfer_every > 0s) schedule(around(random, mix.transfer_every), make(EventKind::transfer, 0));

    while (outcome.events < options.steps)
      if (!step()) return finish();
    begin_liveness();
    const Time deadline = now + options.liveness_limit;
    while (!converged()) {
      if (checker->failed() || now > deadline) {
        if (!checker->failed())
          checker->fail(
              fmt::format("liveness: no leader with a committed proposal on every node {:.1f} s after "
                          "the faults stopped",
                          std::chrono::duration<double>(options.liveness_limit).count()));
        outcome.ok = false;
        outcome.failure = fmt::format("at {:.6f} s: {}{}", std::chrono::duration<double>(now).count(),
                                      checker->failure(), cluster_state());
        return finish();
      }
      if (!step()) return finish();
    }
    checker->check_committed_durable(stores);
    if (checker->failed()) {
      outcome.ok = false;
      outcome.failure = checker->failure();
    }
    trace(kCluster, "converged: {} entries committed", checker->committed());
    return finish();
  }

  Outcome finish() {
    outcome.simulated = now;
    outcome.stats.leaders = checker->leaders_seen();
    outcome.stats.committed = checker->committed();
    return outcome;
  }
};

Simulator::Simulator(Options options) : impl_(std::make_unique<Impl>(options)) {}
Simulator::~Simulator() = default;
Outcome Simulator::run() { return impl_->run(); }

}  // namespace cohort::sim
