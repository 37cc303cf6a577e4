// The node runtime: drives one Replica (consensus core + service host) with the Asio event loop, the TCP
// transport and the storage thread. Everything here runs on the loop thread except the storage thread's
// wake-up, which only posts to the loop.
//
// One loop turn: inputs (frames, ticks, storage completions) go to the replica; a flush, posted once per turn,
// then takes the replica's outputs: consensus messages (each sent only once storage has made its `after`
// durable), the storage batch (submitted when the storage thread has room; otherwise it keeps growing), and the
// service host's replies to clients, which the client gateway (src/gateway) turns into frames for its connections.

#include "cohort/node.h"

#include <algorithm>
#include <csignal>
#include <map>
#include <random>
#include <thread>
#include <unordered_map>
#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim
#endif

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/logger.h>

#include "common/assert.h"
#include "common/payload.h"
#include "gateway/gateway.h"
#include "host/replica.h"
#include "io/event_loop.h"
#include "io/logging.h"
#include "io/tcp_transport.h"
#include "node/metrics.h"
#include "node/peer_codec.h"
#include "protocol/catalogue.h"
#include "storage/log_writer.h"
#include "storage/posix_file.h"
#include "storage/recovery.h"
#include "storage/segmented_log.h"
#include "storage/snapshot_file.h"
#include "storage/storage_thread.h"

namespace cohort {

using consensus::Role;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// The gateway numbers connections as the transport does: one id space, so the two need no table between them.
gateway::ConnectionId gateway_id(io::ConnectionId id) { return gateway::ConnectionId{static_cast<std::uint64_t>(id)}; }
io::ConnectionId transport_id(gateway::ConnectionId id) { return io::ConnectionId{static_cast<std::uint64_t>(id)}; }

long long milliseconds(std::chrono::nanoseconds duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}
consensus::Time mono_now() { return std::chrono::duration_cast<consensus::Time>(Clock::now().time_since_epoch()); }
ClusterTime wall_now() {
  return std::chrono::duration_cast<ClusterTime>(std::chrono::system_clock::now().time_since_epoch());
}

protocol::NodeRole wire_role(Role role) {
  switch (role) {
    case Role::follower: return protocol::NodeRole::follower;
    case Role::pre_candidate: return protocol::NodeRole::pre_candidate;
    case Role::candidate: return protocol::NodeRole::candidate;
    case Role::leader: return protocol::NodeRole::leader;
  }
  return protocol::NodeRole::follower;
}

constexpr std::chrono::milliseconds kTickPeriod{5};
// A status request's state hash is computed at most this often (while the applied index moves).
constexpr std::chrono::milliseconds kStateHashInterval{100};
// Back-pressure limits (apply_back_pressure): far above a healthy leader's backlog, far below what would exhaust a
// node's memory.
constexpr std::size_t kMaxQueuedBytes = 64U << 20U;
constexpr std::uint64_t kMaxUncommittedEntries = 1U << 20U;
constexpr std::uint64_t kMaxUnappliedEntries = 1U << 18U;
constexpr std::chrono::milliseconds kReconnectMin{50};
constexpr std::chrono::milliseconds kReconnectMax{500};
// Peer links keep themselves alive (maintain_links): every connection between members, in both directions, carries
// a keep-alive frame each heartbeat interval in which it carried nothing else, and one that has carried nothing for
// this many intervals is closed and dialled again. TCP alone would hold a connection through a partition and, once it
// heals, deliver only at its next retransmission, seconds later; a dial that gets no handshake answer this long (its
// SYN or hello lost) is given up the same way. Far above a loaded loop's stall: a false alarm costs one redial.
constexpr int kPeerSilenceHeartbeats = 8;
// A disagreement with a peer (a refused handshake) not seen again for this long is forgotten: the peer was stopped
// or removed. Refused peers retry at least every kReconnectMax, so a standing disagreement stays in status.
constexpr std::chrono::milliseconds kPeerProblemMemory{5000};
static_assert(kPeerProblemMemory > 3 * kReconnectMax);
// Giving memory back after a burst (release_memory_after_burst), checked every kReleaseCheckPeriod. A burst is at
// least kBurstBytes of log since the last release, at a rate of kQuietBytes per period or more at some point (4 MiB/s:
// a trickle of small messages, such as clients opening sessions, is no burst); it is over once kQuietPeriods
// periods in a row appended less.
constexpr std::chrono::milliseconds kReleaseCheckPeriod{250};
constexpr std::uint64_t kBurstBytes = 64U << 20U;
constexpr std::uint64_t kQuietBytes = 1U << 20U;
constexpr int kQuietPeriods = 4;
// A group commit this slow is logged: at debug level from kSlowStorage, as a warning from kVerySlowStorage (every
// message that waits for it, a vote among them, waits that long).
constexpr std::chrono::milliseconds kSlowStorage{50};
constexpr std::chrono::milliseconds kVerySlowStorage{1000};
// A write taking longer than this, on the loop thread (writes_here()) or in a storage-thread group small enough to
// have been done there, leaves every write to the storage thread for a pause: a heartbeat interval is 50 ms by
// default, and a disk slow once is often slow for a while. The pause doubles while the disk stays slow, and starts
// again from the shortest after a fast write here.
constexpr std::chrono::milliseconds kSlowWriteHere{5};
constexpr std::chrono::seconds kSlowWriteHerePause{5};
constexpr std::chrono::seconds kSlowWriteHereMaxPause{80};
// The largest batch the loop writes itself (writes_here(), sync none).
constexpr std::size_t kMaxBytesWrittenHere = 8U << 10U;

}  // namespace

class Node::Impl final : public io::TransportHandler {
 public:
  Impl(NodeOptions options, Service& service)
      : options_(std::move(options)),
        service_(service),
        logger_(io::make_logger(options_.log ? options_.log : stderr_log_sink(), options_.log_level,
                                fmt::format("node {}", options_.node_id))) {
    outbox_.reserve(consensus::Ready::kReservedMessages);
  }
  ~Impl() override;

  std::optional<std::string> start();
  int run();
  void request_stop() {
    loop_.post([this] { begin_stop(); });
  }

  std::string peer_endpoint() const { return peer_bound_.to_string(); }
  std::string client_endpoint() const { return client_bound_.to_string(); }
  std::string admin_endpoint() const { return admin_bound_ ? admin_bound_->to_string() : std::string(); }
  std::string metrics_endpoint() const { return metrics_ ? metrics_->address() : std::string(); }

  // TransportHandler
  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& peer) override;
  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override;
  void on_disconnected(io::ConnectionId id, io::DisconnectReason reason, std::string_view detail) override;
  void on_refused(std::string_view remote, const protocol::HandshakeRefusal& refusal) override;

 private:
  // An outgoing connection to another member: consensus messages to it leave on this one. (Its messages to us
  // arrive on the connection it opened to us.)
  struct Link {
    NodeId id;
    io::Endpoint endpoint;
    std::optional<io::ConnectionId> connection;
    bool connected = false;
    consensus::Time retry_at{0};
    consensus::Time dialed_at{0};
    std::chrono::milliseconds backoff = kReconnectMin;
    protocol::Incarnation incarnation;  // the peer's, as its welcome said (zero: it did not know one)
    bool sent_since_keepalive = false;  // a message left on it since the last keep-alive round
  };
  // An accepted connection: a member's (consensus traffic in), or a client's or admin tool's (the gateway's).
  struct Inbound {
    protocol::PeerRole role = protocol::PeerRole::client;
    NodeId node;                        // role == node
    protocol::Incarnation incarnation;  // role == node: the peer's, as its hello said
    bool privileged = false;            // role == admin: accepted on the admin endpoint (may change the node)
  };

  std::string context() const {
    return fmt::format("t{} {}", replica_->raft().term().value(), consensus::to_string(replica_->raft().role()));
  }

  void tick();
  void schedule_flush();
  void flush();
  void drain_storage();
  /// Hands the log's new batch to the storage side, or performs it here (writes_here()): true if it did.
  bool submit_log_writes(consensus::Time now);
  bool writes_here(const storage::Batch& batch, consensus::Time now) const;
  /// Performs a batch on this thread. Only while the storage thread holds none: the writer is then this thread's.
  storage::BatchResult perform_here(storage::Batch& batch);
  /// A write that took `took` (on this thread if `here`): a slow one pauses writes here (kSlowWriteHere).
  void note_write_time(std::chrono::nanoseconds took, consensus::Time now, bool here);
  void release_messages();
  void send_to_peer(const consensus::Message& message);
  // At debug level: an election message in or out (votes, pre-votes, transfers), for tracing an election.
  void trace_election_message(const consensus::Message& message, bool outgoing, std::string_view fate);
  void maintain_links(consensus::Time now);
  void drop_link(Link& link);
  void log_role_change(Role previous, Term previous_term);
  void answer_client_request(io::ConnectionId id, const protocol::Frame& frame);
  void send_client(io::ConnectionId id, const auto& message);
  void send_gateway_outputs();
  void apply_back_pressure();
  void close_client(io::ConnectionId id);
  void learn_peer(NodeId peer, const protocol::PeerIdentity& identity);
  void note_peer_problem(NodeId peer, bool outgoing, std::string problem);
  void adopt_incarnation();
  std::vector<std::string> configuration_problems() const;
  void begin_stop();
  void finish_stop_when_ready(consensus::Time now);
  void fail(std::string message);
  void maybe_take_snapshot(consensus::Time now);
  void release_memory_after_burst(consensus::Time now);
  struct SnapshotWritten {
    storage::IoResult<storage::SnapshotMeta> meta;
    std::vector<std::string> removed;  // older snapshots and leftovers removed after it
    std::string cleanup_error;
    std::shared_ptr<consensus::Snapshot> snapshot;  // handed back: offered to the core, or its buffer reused
  };
  void on_snapshot_written(SnapshotWritten written);
  void on_snapshot_installed(const consensus::Snapshot& snapshot);
  // Answers the admin connections in `waiting` (emptied) with `reply`.
  void answer_snapshot_requests(std::vector<io::ConnectionId>& waiting, const protocol::AdminReply& reply);
  // The reply for the newest snapshot (taken, loaded or installed), when nothing was applied since.
  protocol::AdminReply newest_snapshot_reply() const;
  // An admin command (admin_request): checked (the node meant, the right to change it), then done or started.
  void handle_admin_request(io::ConnectionId id, const protocol::AdminRequest& request);
  protocol::AdminReply admin_reply(protocol::AdminCommand command, protocol::AdminOutcome outcome,
                                   std::string_view text = {}) const;
  // Answers the transfers asked for once their target leads, or their time is up (or the node stops).
  void answer_transfer_waits(consensus::Time now);
  // Metrics (node/metrics.h), when served: the values of this tick, and a commit's latency per batch.
  void publish_metrics();
  void note_commit_latency(consensus::Time now);
  // Makes `snapshot` the one the core sends to lagging followers; the one it replaces lends its buffer to the next.
  void offer_snapshot(std::shared_ptr<consensus::Snapshot> snapshot);

  NodeOptions options_;
  Service& service_;
  // This node's lines, the transport's included, all tagged with its id: several nodes may share one process and
  // one sink.
  std::shared_ptr<spdlog::logger> logger_;
  io::EventLoop loop_;
  std::unique_ptr<io::TcpTransport> transport_;
  io::Endpoint peer_bound_;
  io::Endpoint client_bound_;
  std::optional<io::Endpoint> admin_bound_;  // the member's admin endpoint, if it has one
  consensus::Time started_at_{0};            // for status's uptime
  // The newest state hash a status request computed, and at which applied index (status_request's state_hash).
  std::optional<LogIndex> state_hash_at_;
  std::uint64_t state_hash_ = 0;
  consensus::Time state_hash_computed_{0};
  // Metrics: served when options_.metrics_endpoint is set. The counts no other layer keeps, since start.
  std::unique_ptr<node::NodeMetrics> metrics_;
  std::vector<NodeId> followers_;  // every other member, in the order the metrics' lag gauges were made
  std::uint64_t snapshots_taken_ = 0;
  std::uint64_t snapshots_installed_ = 0;
  std::uint64_t storage_errors_ = 0;
  std::uint64_t reading_pauses_ = 0;
  // Leader: the last index of each batch appended, and when, until it commits (commit latency, per batch). A fixed
  // ring: when full, the newest batches are not timed, which only thins the histogram.
  struct Appended {
    LogIndex last;
    consensus::Time at;
  };
  std::array<Appended, 256> appended_{};
  std::size_t appended_head_ = 0;  // the oldest
  std::size_t appended_count_ = 0;
  LogIndex appended_up_to_;                         // the last index timed
  std::map<NodeId, std::string> client_endpoints_;  // every member's, as this node's member list names them
  // Shown in status until they are resolved: a member whose handshake failed (another member list, incarnation or
  // cluster), until a handshake with it succeeds; a member advertising another client endpoint than our list names.
  struct PeerProblem {
    std::string text;
    consensus::Time seen{0};  // last time it was seen; forgotten kPeerProblemMemory later
  };
  // By node and direction (true: our connection to it was refused; false: we refused its connection), so that each
  // is logged once. At most 2 * kMaxMembers entries: a node that is not a member can be one too (a peer listing
  // another membership).
  std::map<std::pair<NodeId, bool>, PeerProblem> peer_problems_;
  consensus::Time next_peer_keepalive_{0};      // maintain_links' next keep-alive round
  consensus::Time links_checked_at_{0};         // maintain_links' last run
  consensus::Time judge_silence_after_{0};      // not before: this node itself stalled (maintain_links)
  std::vector<io::ConnectionId> silent_peers_;  // maintain_links' scratch: members' connections to close
  std::map<NodeId, std::string> endpoint_problems_;
  std::string bootstrap_problem_;  // the log's initial member list differs from this node's

  std::unique_ptr<storage::PosixDirectory> directory_;
  std::unique_ptr<storage::SegmentedLog> log_;
  std::unique_ptr<storage::LogWriter> writer_;
  std::unique_ptr<io::EventLoop::Doorbell> storage_doorbell_;  // rung by the storage thread: it outlives that thread
  std::unique_ptr<storage::StorageThread> storage_thread_;
  consensus::Time write_here_after_{};  // the loop thread performs writes itself from then on (writes_here())
  std::chrono::nanoseconds write_here_pause_{kSlowWriteHerePause};  // the next pause after a slow write
  std::unique_ptr<host::Replica> replica_;
  std::unique_ptr<gateway::Gateway> gateway_;  // every client and admin connection's state

  std::vector<Link> links_;
  std::unordered_map<std::uint64_t, Inbound> inbound_;  // by ConnectionId
  std::vector<consensus::Outgoing> outbox_;             // consensus messages waiting for their `after` to be durable
  consensus::Ready ready_;
  std::vector<std::byte> frame_;
  std::size_t max_frame_length_ = 0;
  consensus::Message decoded_;
  std::vector<consensus::Entry> spare_entries_;  // decode_peer_frame keeps an append request's vector here
  std::unique_ptr<io::EventLoop::Periodic> ticker_;
  bool flush_pending_ = false;
  bool reading_paused_ = false;  // client connections are not read (apply_back_pressure)
  // The replica's role, term and leader as last logged.
  Role role_ = Role::follower;
  Term term_;
  std::optional<NodeId> leader_;

  // release_memory_after_burst(): the log's appended_bytes() at the last check and at the last release; whether a
  // period since the release was busy, and how many quiet ones followed the last busy one.
  consensus::Time release_check_at_{0};
  std::uint64_t appended_at_check_ = 0;
  std::uint64_t appended_at_release_ = 0;
  bool busy_since_release_ = false;
  int quiet_periods_ = 0;

  bool stopping_ = false;
  consensus::Time stop_deadline_{0};
  int exit_code_ = 0;

  // Snapshots (docs/architecture.md, "Snapshots"). The loop thread serializes the replicated state at its applied
  // index; a thread of the snapshot's own writes it, so neither the loop nor group commit waits for its disk time.
  // One at a time: snapshot_job_ is joinable from the take until on_snapshot_written() runs on the loop.
  LogIndex last_snapshot_;      // the newest snapshot on disk: taken, loaded or installed (0: none)
  LogIndex previous_snapshot_;  // the one before it this life (0: none): the log is kept from there on
  // The newest snapshot taken or loaded, as offered to the core (which holds it for installs on lagging followers):
  // two snapshots' worth of memory with the spare buffer below, the price of a short pause and of installs served
  // from memory.
  std::shared_ptr<consensus::Snapshot> offered_;
  // The buffer the next snapshot is serialized into: the replaced snapshot's, so every snapshot after the first two
  // of a life reuses capacity and pages, which makes the pause several times shorter.
  std::vector<std::byte> spare_snapshot_bytes_;
  // Admin connections that asked for a snapshot (snapshot_request): answered once one taken after their request
  // is written. Those waiting for the next snapshot to start, and those that the one in flight answers.
  std::vector<io::ConnectionId> snapshot_requests_;
  std::vector<io::ConnectionId> snapshot_answering_;
  // Admin connections that asked for a leadership transfer: answered once the target leads (learned from its first
  // heartbeat), or failed at the deadline (the core gives up on a transfer after an election timeout).
  struct TransferWait {
    io::ConnectionId connection;
    NodeId target;
    consensus::Time deadline;
  };
  std::vector<TransferWait> transfer_waits_;
  consensus::Time snapshot_retry_at_{0};  // after a failed write, none is tried before this
  std::jthread snapshot_job_;             // last: joined (its write finished) before the members it uses go
};

// --- start-up -----------------------------------------------------------------------------------------------

std::optional<std::string> Node::Impl::start() {
  if (auto problems = validate(options_)) return *problems;
  const NodeId self{options_.node_id};
  std::vector<NodeId> members;
  io::Endpoint own_peer;
  io::Endpoint own_client;
  std::optional<io::Endpoint> own_admin;
  for (const Member& member : options_.members) {
    members.push_back(NodeId{member.id});
    client_endpoints_[NodeId{member.id}] = member.client_endpoint;
    auto peer = io::parse_endpoint(member.peer_endpoint);
    auto client = io::parse_endpoint(member.client_endpoint);
    COHORT_ASSERT(peer && client);  // validate() checked them
    if (member.id == options_.node_id) {
      own_peer = *peer;
      own_client = *client;
      if (!member.admin_endpoint.empty()) {
        auto admin = io::parse_endpoint(member.admin_endpoint);
        COHORT_ASSERT(admin);  // validate() checked it
        own_admin = *admin;
      }
    } else {
      Link link;
      link.id = NodeId{member.id};
      link.endpoint = *peer;
      links_.push_back(link);
    }
  }

  // This node's own addresses are checked before anything is created on disk: a host name it listens on must
  // resolve now (listen() resolves it again; the other members' names are resolved when their links connect, so a
  // member not yet in DNS does not stop this one).
  for (const auto& [own, role] : {std::pair{&own_peer, "peer"}, std::pair{&own_client, "client"}})
    if (auto resolved = io::resolve_for_listening(*own); !resolved)
      return fmt::format("members: {} endpoint of node {} ({}): {}", role, options_.node_id, own->to_string(),
                         resolved.error());
  if (own_admin)
    if (auto resolved = io::resolve_for_listening(*own_admin); !resolved)
      return fmt::format("members: admin endpoint of node {} ({}): {}", options_.node_id, own_admin->to_string(),
                         resolved.error());
  if (!options_.metrics_endpoint.empty()) {
    auto metrics = io::parse_endpoint(options_.metrics_endpoint);
    COHORT_ASSERT(metrics);  // validate() checked it
    if (auto resolved = io::resolve_for_listening(*metrics); !resolved)
      return fmt::format("metrics: {}: {}", options_.metrics_endpoint, resolved.error());
  }

  // Storage first: a data directory of another cluster or node, or one we cannot write, refuses the start
  // before the node is visible on the network.
  auto directory = storage::PosixDirectory::open_locked(options_.data_dir);
  if (!directory)
    return fmt::format("data_dir: {}{}", directory.error().message,
                       directory.error().disk_full() ? " (the disk is full)" : "");
  directory_ = std::move(*directory);
  const storage::Identity identity{options_.cluster_id, self};
  storage::LogOptions log_options;
  log_options.segment_size = options_.segment_size;
  auto recovered = storage::recover(*directory_, identity, log_options);
  if (!recovered) {
    // Recovery's messages end by saying it refuses to start; the caller says so already.
    std::string_view reason = recovered.error();
    if (constexpr std::string_view kSuffix = "; refusing to start"; reason.ends_with(kSuffix))
      reason.remove_suffix(kSuffix.size());
    return fmt::format("data_dir: {}", reason);
  }
  const storage::SyncPolicy sync_policy =
      options_.sync == SyncPolicy::fsync ? storage::SyncPolicy::fsync : storage::SyncPolicy::none;
  // All zeros if the kernel does not say: note_machine_boot then takes every start under sync policy none for a
  // possible machine restart (safe, at the cost of a catch-up before the node votes).
  const storage::MachineBoot boot = storage::read_kernel_boot_id().value_or(storage::MachineBoot{});
  if (auto noted = storage::note_machine_boot(*directory_, identity, *recovered, boot, sync_policy); !noted)
    return fmt::format("data_dir: {}", noted.error());
  for (const std::string& repair : recovered->repairs) {
    if (repair.find("DATA LOSS") != std::string::npos)
      logger_->error("recovery: {}", repair);
    else
      logger_->warn("recovery: {}", repair);
  }
  logger_->info("log recovered: {} entries, term {}, standing {}{}", recovered->last_index.value(),
                recovered->hard_state.term.value(), consensus::to_string(recovered->hard_state.standing),
                recovered->created ? " (new data directory)" : "");
  // The newest intact snapshot: the replica restores it and applies only the log after it. A damaged one is named
  // and an older one used (the log is kept since the one before the newest); with none usable the whole log replays
  // if it still starts at index 1, and otherwise this node repairs from the cluster (below).
  auto latest = storage::load_latest_snapshot(*directory_, options_.cluster_id);
  if (!latest) return fmt::format("data_dir: {}", latest.error().message);
  for (const storage::DamagedSnapshot& damaged : latest->skipped)
    logger_->error("snapshot {} is damaged and not used: {}", damaged.name, damaged.reason);
  std::random_device device;
  const std::uint64_t seed = (std::uint64_t{device()} << 32U) ^ device();
  log_ = std::make_unique<storage::SegmentedLog>(*directory_, identity, log_options, std::move(*recovered), seed);
  writer_ = std::make_unique<storage::LogWriter>(*directory_, identity, sync_policy, log_->segment_keys(),
                                                 log_->last_index());

  std::vector<std::uint32_t> member_ids;
  member_ids.reserve(members.size());
  for (const NodeId id : members) member_ids.push_back(id.value());
  std::sort(member_ids.begin(), member_ids.end());
  io::TcpTransportConfig transport_config;
  transport_config.logger = logger_;
  transport_config.identity = protocol::LocalIdentity{
      options_.cluster_id, protocol::PeerRole::node, options_.node_id, {}, protocol::MemberIds::of(member_ids), {}};
  // Room for an append request of max_append_bytes plus entry headers, and for the largest client message.
  // Room for the largest append request: a full batch of entries (max_append_bytes, each with its header) plus
  // one entry of the largest message, with its envelope; client frames are smaller. validate() keeps
  // max_message_size small enough for the ceiling.
  consensus::Config defaults;
  transport_config.max_frame_length = static_cast<std::uint32_t>(std::min<std::size_t>(
      protocol::kMaxFrameLengthCeiling,
      std::max<std::size_t>(
          4U << 20U, defaults.max_append_bytes + options_.max_message_size + defaults.max_append_entries * 64 + 4096)));
  max_frame_length_ = transport_config.max_frame_length;
  // Room for two of the largest frames, and for a whole egress window resent on a resume with the frames around it:
  // a smaller buffer would close the connection on every resume, forever.
  transport_config.send_buffer_limit = std::max<std::size_t>(
      transport_config.send_buffer_limit, std::size_t{2} * transport_config.max_frame_length +
                                              options_.egress_window_bytes + options_.egress_window_messages * 64);
  transport_ = std::make_unique<io::TcpTransport>(loop_, transport_config, *this);
  protocol::AcceptPolicy peers_only;
  peers_only.allow_clients = false;
  peers_only.allow_admin = false;
  for (const NodeId id : members)
    if (id != self) peers_only.member_ids.push_back(id.value());
  if (peers_only.member_ids.empty()) peers_only.allow_nodes = false;
  auto peer_bound = transport_->listen(own_peer, peers_only);
  if (!peer_bound) return fmt::format("members: peer endpoint of node {}: {}", options_.node_id, peer_bound.error());
  peer_bound_ = *peer_bound;
  protocol::AcceptPolicy clients_only;
  clients_only.allow_nodes = false;
  auto client_bound = transport_->listen(own_client, clients_only);
  if (!client_bound)
    return fmt::format("members: client endpoint of node {}: {}", options_.node_id, client_bound.error());
  client_bound_ = *client_bound;
  if (own_admin) {
    protocol::AcceptPolicy admin_only;
    admin_only.allow_nodes = false;
    admin_only.allow_clients = false;
    admin_only.privileged = true;
    auto admin_bound = transport_->listen(*own_admin, admin_only);
    if (!admin_bound)
      return fmt::format("members: admin endpoint of node {}: {}", options_.node_id, admin_bound.error());
    admin_bound_ = *admin_bound;
    if (!io::is_loopback(*admin_bound_))
      logger_->warn("admin endpoint {} is not a loopback address: whoever can reach it can stop this node",
                    admin_bound_->to_string());
  }
  if (!options_.metrics_endpoint.empty()) {
    std::vector<std::uint32_t> others;
    for (const NodeId id : members)
      if (id != self) {
        followers_.push_back(id);
        others.push_back(id.value());
      }
    auto metrics = node::NodeMetrics::start(options_.metrics_endpoint, options_.node_id, others);
    if (!metrics) return fmt::format("metrics: {}", metrics.error());
    metrics_ = std::move(*metrics);
  }
  {
    // The client endpoint this node advertises to its peers, who redirect clients to it: as the member list names
    // it for this node (with the port actually bound, for a lone node on port 0). A wildcard address is no place
    // to send a client: advertise nothing, and the peers use their own copies of the list.
    protocol::LocalIdentity advertised = transport_->identity();
    const bool wildcard = own_client.host == "0.0.0.0" || own_client.host == "::";
    if (!wildcard) advertised.client_endpoint = io::Endpoint{own_client.host, client_bound_.port}.to_string();
    transport_->set_identity(std::move(advertised));
  }

  consensus::Config raft_config;
  raft_config.id = self;
  raft_config.members = members;
  raft_config.heartbeat_interval = options_.heartbeat_interval;
  raft_config.election_timeout_min = options_.election_timeout_min;
  raft_config.election_timeout_max = options_.election_timeout_max;
  // Later lives must have larger boot ids: the wall clock at start, in microseconds, with random low bits for two
  // starts in one microsecond. A clock set back by more than the time between two starts would make the new life
  // look older, and the leader would ignore it until the next election.
  const auto start_micros =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(wall_now()).count());
  raft_config.boot = (start_micros << 8U) | (seed & 0xFFU) | 1U;
  if (auto problem = consensus::validate(raft_config)) return *problem;
  host::ReplicaConfig replica_config;
  replica_config.raft = raft_config;
  replica_config.limits.max_message_size = options_.max_message_size;
  replica_config.limits.max_sessions = options_.max_sessions;
  replica_config.limits.max_tombstones = options_.max_tombstones;
  replica_config.limits.tombstone_max_age = options_.tombstone_max_age;
  replica_config.limits.egress_window_messages = options_.egress_window_messages;
  replica_config.limits.egress_window_bytes = options_.egress_window_bytes;
  replica_config.session_timeout = options_.session_timeout;
  std::optional<ByteSpan> snapshot;
  if (latest->snapshot) snapshot = ByteSpan(latest->snapshot->body);
  // Prepares the log for a replica with `snapshot` (host::prepare_start) and makes what that wrote durable before the
  // core is built on the log (it takes what the log holds as durable).
  const auto prepare = [&](std::optional<ByteSpan> with) -> std::optional<std::string> {
    std::optional<consensus::LogBase> position;
    if (with)
      if (const auto found = host::ServiceHost::snapshot_position(*with))
        position = consensus::LogBase{found->first, found->second};
    const consensus::LogBase base = log_->base();
    const LogIndex recovered_end = log_->last_index();
    switch (host::prepare_start(*log_, position)) {
      case host::StartPath::replay:
      case host::StartPath::restore: break;
      case host::StartPath::adopt:
        logger_->warn(
            "the snapshot at index {} reaches beyond the log recovered (index {}): its tail was lost "
            "unacknowledged; the log starts again after the snapshot",
            position->index.value(), recovered_end.value());
        break;
      case host::StartPath::repair:
        // Never a silent start from scratch: the node rejoins as a recovering node, which votes again only once it
        // holds what it may have acknowledged, from the leader's snapshot and log.
        logger_->error(
            "the log starts after index {} and no intact snapshot covers it{}: emptying the log and "
            "rejoining as a recovering node, repaired from the cluster",
            base.index.value(),
            position
                ? fmt::format(" (the newest is at index {}, term {})", position->index.value(), position->term.value())
                : std::string());
        break;
    }
    if (auto batch = log_->take_batch()) {
      const storage::BatchResult result = perform_here(*batch);
      if (!log_->complete(std::move(batch), result))
        return fmt::format("data_dir: {}", log_->failure() ? log_->failure()->message : "a write at start failed");
    }
    return std::nullopt;
  };
  if (auto failed = prepare(snapshot)) return *failed;
  const auto restore_started = Clock::now();
  replica_ = std::make_unique<host::Replica>(replica_config, *log_, service_, seed ^ 0x5EEDULL, mono_now(), wall_now(),
                                             snapshot);
  if (!replica_->usable()) {
    // The snapshot passed its checksum but does not restore (a change of layout, say), and the log's prefix is gone:
    // as if it were damaged.
    logger_->error("snapshot at index {} does not restore: {}", latest->snapshot->meta.index.value(),
                   replica_->snapshot_problem());
    replica_.reset();
    snapshot.reset();
    if (auto failed = prepare(std::nullopt)) return *failed;
    replica_ = std::make_unique<host::Replica>(replica_config, *log_, service_, seed ^ 0x5EEDULL, mono_now(),
                                               wall_now(), std::nullopt);
  }
  if (latest->snapshot) {
    const storage::SnapshotMeta& meta = latest->snapshot->meta;
    if (!replica_->snapshot_problem().empty()) {
      logger_->error("snapshot at index {} (term {}) not used: {}; replaying the log from its start",
                     meta.index.value(), meta.term.value(), replica_->snapshot_problem());
    } else if (snapshot) {
      last_snapshot_ = meta.index;
      logger_->info("restored the snapshot at index {} (term {}, {} bytes) in {} ms; {} entries of log follow it",
                    meta.index.value(), meta.term.value(), meta.size,
                    std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restore_started).count(),
                    log_->last_index().value() - meta.index.value());
      auto loaded = std::make_shared<consensus::Snapshot>();
      loaded->position = consensus::LogBase{meta.index, meta.term};
      loaded->checksum = meta.checksum;
      loaded->bytes = std::move(latest->snapshot->body);
      offer_snapshot(std::move(loaded));
    }
    // Unused, it is the next snapshot's buffer: its pages are in, and its capacity fits the state.
    if (!offered_) spare_snapshot_bytes_ = std::move(latest->snapshot->body);
    latest->snapshot.reset();
  }
  role_ = replica_->raft().role();
  term_ = replica_->raft().term();
  gateway::GatewayConfig gateway_config;
  gateway_config.self = self;
  gateway_config.heartbeat_interval = options_.heartbeat_interval;
  gateway_config.client_keepalive_interval = options_.client_keepalive_interval;
  gateway_config.max_message_size = static_cast<std::uint32_t>(options_.max_message_size);
  gateway_config.activity_interval = gateway::activity_interval_for(options_.session_timeout);
  gateway_config.authenticator = options_.authenticator;
  gateway_ = std::make_unique<gateway::Gateway>(gateway_config, *replica_);
  // Redirects name each member's client endpoint as this node's list says, until the member advertises its own
  // (learn_peer).
  for (const auto& [member, endpoint] : client_endpoints_) gateway_->set_client_endpoint(member, endpoint);

  // A doorbell, not post(): a post from the storage thread allocates Asio's operation there on every group commit
  // (its memory is recycled on the loop thread, never back on the storage thread).
  storage_doorbell_ = loop_.doorbell([this] { drain_storage(); });
  storage_thread_ = std::make_unique<storage::StorageThread>(*writer_, [this] { storage_doorbell_->ring(); });
  if (options_.handle_signals)
    loop_.on_signals({SIGINT, SIGTERM}, [this](int signal) {
      logger_->info("received {}, stopping gracefully", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      begin_stop();
    });
  ticker_ = loop_.every(kTickPeriod, [this] { tick(); });
  started_at_ = mono_now();
  logger_->info("cluster {} node {}: peers on {}, clients on {}{}{}, {} members, sync {}", options_.cluster_id,
                options_.node_id, peer_bound_.to_string(), client_bound_.to_string(),
                admin_bound_ ? fmt::format(", admin on {}", admin_bound_->to_string()) : std::string(),
                metrics_ ? fmt::format(", metrics on {}", metrics_->address()) : std::string(), members.size(),
                options_.sync == SyncPolicy::fsync ? "fsync" : "none");
  maintain_links(mono_now());
  schedule_flush();
  return std::nullopt;
}

Node::Impl::~Impl() {
  // The storage thread finishes what is queued before the log and the writer go.
  storage_thread_.reset();
  ticker_.reset();
  transport_.reset();
}

int Node::Impl::run() {
  loop_.run(options_.idle);
  // Everything submitted is performed before run() returns: a graceful stop loses nothing written.
  storage_thread_.reset();
  logger_->info("stopped");
  return exit_code_;
}

void Node::Impl::fail(std::string message) {
  ++storage_errors_;
  logger_->critical("{}; the node stops (a failed write or fsync is never retried)", message);
  exit_code_ = 1;
  loop_.stop();
}

// --- the loop turn ------------------------------------------------------------------------------------------

void Node::Impl::schedule_flush() {
  if (flush_pending_) return;
  flush_pending_ = true;
  loop_.post([this] { flush(); });
}

void Node::Impl::tick() {
  const consensus::Time now = mono_now();
  replica_->tick(now, wall_now());
  maintain_links(now);
  std::erase_if(peer_problems_, [&](const auto& entry) { return now - entry.second.seen > kPeerProblemMemory; });
  gateway_->tick(now, [this](gateway::ConnectionId id) { return transport_->silent_for(transport_id(id)); });
  send_gateway_outputs();
  answer_transfer_waits(now);
  if (metrics_) publish_metrics();
  if (stopping_) finish_stop_when_ready(now);
  release_memory_after_burst(now);
  schedule_flush();
}

// The buffers a burst grows give their memory back to the allocator when the burst ends (the log's batches, the
// gateway's and the transport's send buffers), but glibc keeps the freed pages of its heap resident unless they are
// at its top: after 1 GiB of 16 KiB messages that was 70-80 MiB free inside a 120 MiB heap. So once a burst is
// over, the free pages go back to the kernel (malloc_trim). Only then: under steady load the free memory is reused
// at once, and giving it back would cost a page fault for each page the next turns touch again.
void Node::Impl::release_memory_after_burst(consensus::Time now) {
  if (now < release_check_at_) return;
  release_check_at_ = now + kReleaseCheckPeriod;
  const std::uint64_t appended = log_->appended_bytes();
  if (appended - appended_at_check_ < kQuietBytes) {
    ++quiet_periods_;
  } else {
    busy_since_release_ = true;
    quiet_periods_ = 0;
  }
  appended_at_check_ = appended;
  const std::uint64_t burst = appended - appended_at_release_;
  if (!busy_since_release_ || quiet_periods_ < kQuietPeriods || burst < kBurstBytes) return;
  appended_at_release_ = appended;
  busy_since_release_ = false;
  Payload::trim_pool();  // its free blocks are the allocator's to give back
#if defined(__GLIBC__)
  const auto started = Clock::now();
  ::malloc_trim(0);
  logger_->debug("[{}] gave free memory back after {} MiB of log, in {} us", context(), burst >> 20U,
                 std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
#endif
}

void Node::Impl::flush() {
  flush_pending_ = false;
  if (exit_code_ != 0) return;
  const Role previous_role = role_;
  const Term previous_term = term_;
  const LogIndex applied_before = replica_->host().applied_index();
  const auto take_started = Clock::now();
  replica_->take_ready(ready_);
  if (metrics_ && replica_->host().applied_index() > applied_before)
    metrics_->observe_apply(Clock::now() - take_started);
  if (metrics_) note_commit_latency(mono_now());
  if (ready_.installed) {
    ++snapshots_installed_;
    on_snapshot_installed(*ready_.installed);
  }
  for (consensus::Outgoing& outgoing : ready_.messages) outbox_.push_back(std::move(outgoing));
  for (const std::string& notice : ready_.notices) logger_->warn("[{}] {}", context(), notice);
  if (auto& faults = replica_->host().fault_reports(); !faults.empty()) {
    // Every replica meets the same fault at the same entry and handles it alike (service_host.h); said loudly.
    for (const host::EntryFaultReport& fault : faults)
      logger_->error("[{}] committed entry {} (term {}) could not be applied as it is: {}: {}", context(),
                     fault.index.value(), fault.term.value(), host::to_string(fault.fault), fault.detail);
    faults.clear();
  }
  // Messages first: a leader's appends leave before its own write (the followers' writes and its own overlap).
  release_messages();
  if (submit_log_writes(mono_now())) release_messages();  // done here: what waited for it goes in this turn
  if (exit_code_ != 0) return;                            // the write failed: the node is stopping
  // The host's replies go to the clients' connections; a change of leader reaches the clients waiting here.
  gateway_->after_ready(mono_now());
  adopt_incarnation();
  role_ = replica_->raft().role();
  term_ = replica_->raft().term();
  if (role_ != previous_role || term_ != previous_term || replica_->raft().leader() != leader_) {
    log_role_change(previous_role, previous_term);
    answer_transfer_waits(mono_now());
  }
  // The replica applies a bounded number of entries per turn (a restarted node replays its log between ticks
  // and messages, not in one long turn): another turn follows while some remain.
  if (replica_->host().applied_index() < replica_->raft().commit_index()) schedule_flush();
  send_gateway_outputs();
  apply_back_pressure();
  maybe_take_snapshot(mono_now());
}

// --- snapshots ----------------------------------------------------------------------------------------------

void Node::Impl::maybe_take_snapshot(consensus::Time now) {
  // One at a time: a request that arrives while one is written is served by the next, taken after it.
  if (snapshot_job_.joinable()) return;
  const bool asked = !snapshot_requests_.empty();
  if (!asked && (options_.snapshot_threshold == 0 || now < snapshot_retry_at_)) return;
  const host::ServiceHost& host = replica_->host();
  if (host.applied_index() <= last_snapshot_) {
    if (asked) answer_snapshot_requests(snapshot_requests_, newest_snapshot_reply());
    return;
  }
  if (!asked) {
    const consensus::SnapshotPtr& newest = replica_->raft().snapshot();
    const std::uint64_t due =
        std::max<std::uint64_t>(options_.snapshot_threshold, newest != nullptr ? newest->bytes.size() : 0);
    if (log_->bytes_after(last_snapshot_) < due) return;
  }
  snapshot_answering_ = std::move(snapshot_requests_);
  snapshot_requests_.clear();
  // Serialized here, at one applied index, while nothing else runs: the loop waits for this copy (measured and
  // logged), not for the disk.
  const auto started = Clock::now();
  auto snapshot = std::make_shared<consensus::Snapshot>();
  snapshot->bytes = std::move(spare_snapshot_bytes_);
  snapshot->bytes.clear();
  replica_->host().write_snapshot(snapshot->bytes);
  const auto pause = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  const LogIndex index = host.applied_index();
  const Term term = host.applied_term();
  snapshot->position = consensus::LogBase{index, term};
  logger_->info("[{}] taking a snapshot at index {} (term {}): {} bytes serialized in {} us", context(), index.value(),
                term.value(), snapshot->bytes.size(), pause.count());
  const LogIndex previous = last_snapshot_;
  // The loop does not touch the snapshot until the job hands it back; its checksum is the file's, computed there.
  snapshot_job_ = std::jthread([this, snapshot = std::move(snapshot), index, term, previous]() mutable {
    SnapshotWritten written{
        storage::write_snapshot(*directory_, options_.cluster_id, index, term, snapshot->bytes), {}, {}, {}};
    // The newest two stay: a damaged newest one falls back to the one before.
    if (written.meta.has_value() && previous != LogIndex{}) {
      auto removed = storage::remove_snapshots_before(*directory_, previous);
      if (removed)
        written.removed = std::move(*removed);
      else
        written.cleanup_error = removed.error().message;
    }
    written.snapshot = std::move(snapshot);
    loop_.post([this, written = std::move(written)]() mutable { on_snapshot_written(std::move(written)); });
  });
}

void Node::Impl::on_snapshot_written(SnapshotWritten written) {
  snapshot_job_.join();
  if (!written.meta.has_value()) {
    spare_snapshot_bytes_ = std::move(written.snapshot->bytes);
    // The log still holds everything, so nothing acknowledged is at stake: say so, and try again later.
    constexpr auto kRetry = std::chrono::seconds(10);
    snapshot_retry_at_ = mono_now() + kRetry;
    ++storage_errors_;
    logger_->error("[{}] writing a snapshot failed: {}{}; the log keeps everything, next attempt in {} s", context(),
                   written.meta.error().message, written.meta.error().disk_full() ? " (the disk is full)" : "",
                   kRetry.count());
    answer_snapshot_requests(snapshot_answering_,
                             admin_reply(protocol::AdminCommand::snapshot, protocol::AdminOutcome::failed,
                                         "writing the snapshot failed (the node's log says why)"));
    return;
  }
  const storage::SnapshotMeta& meta = written.meta.value();
  logger_->info("[{}] snapshot at index {} written ({} bytes){}", context(), meta.index.value(), meta.size,
                written.removed.empty() ? "" : fmt::format("; removed {}", fmt::join(written.removed, ", ")));
  if (!written.cleanup_error.empty())
    logger_->warn("[{}] removing older snapshots failed: {}", context(), written.cleanup_error);
  if (meta.index <= last_snapshot_) {
    // The leader's snapshot was installed meanwhile, at a later position: this one is of no use to anyone.
    spare_snapshot_bytes_ = std::move(written.snapshot->bytes);
    answer_snapshot_requests(snapshot_answering_, newest_snapshot_reply());
    return;
  }
  ++snapshots_taken_;
  previous_snapshot_ = last_snapshot_;
  last_snapshot_ = meta.index;
  written.snapshot->checksum = meta.checksum;
  offer_snapshot(std::move(written.snapshot));
  protocol::AdminReply reply = admin_reply(protocol::AdminCommand::snapshot, protocol::AdminOutcome::done);
  reply.index = meta.index.value();
  reply.term = meta.term.value();
  reply.size = meta.size;
  answer_snapshot_requests(snapshot_answering_, reply);
  // The log since the previous snapshot stays (the fallback if the newest is found damaged at a start), and a margin
  // before the newest for lagging followers; the rest goes. The segmented log removes whole segments only.
  const std::uint64_t margin = std::min(options_.compaction_margin, meta.index.value());
  const LogIndex up_to = std::min(previous_snapshot_, LogIndex{meta.index.value() - margin});
  if (up_to > log_->base().index) {
    replica_->raft().compact(up_to);
    schedule_flush();
  }
}

void Node::Impl::on_snapshot_installed(const consensus::Snapshot& snapshot) {
  // The storage thread writes it as a snapshot file, with the reset of the log, and removes the older ones.
  logger_->info("[{}] installed the leader's snapshot at index {} (term {}, {} bytes): the log starts after it",
                context(), snapshot.position.index.value(), snapshot.position.term.value(), snapshot.bytes.size());
  last_snapshot_ = snapshot.position.index;
  previous_snapshot_ = LogIndex{};
}

void Node::Impl::answer_snapshot_requests(std::vector<io::ConnectionId>& waiting, const protocol::AdminReply& reply) {
  for (const io::ConnectionId id : waiting) send_client(id, reply);  // a connection gone since is skipped
  waiting.clear();
}

protocol::AdminReply Node::Impl::newest_snapshot_reply() const {
  protocol::AdminReply reply = admin_reply(protocol::AdminCommand::snapshot, protocol::AdminOutcome::done);
  reply.index = last_snapshot_.value();
  if (const consensus::SnapshotPtr& newest = replica_->raft().snapshot();
      newest != nullptr && newest->position.index == last_snapshot_) {
    reply.term = newest->position.term.value();
    reply.size = newest->bytes.size();
  }
  return reply;
}

void Node::Impl::offer_snapshot(std::shared_ptr<consensus::Snapshot> snapshot) {
  std::shared_ptr<consensus::Snapshot> replaced = std::exchange(offered_, std::move(snapshot));
  replica_->raft().offer_snapshot(offered_);
  // Still held by an install under way, it stays with it; else its buffer serves the next snapshot.
  if (replaced && replaced.use_count() == 1) spare_snapshot_bytes_ = std::move(replaced->bytes);
}

// A leader whose storage, replication or service falls behind stops reading its clients' sockets, instead of
// growing its batch, its log cache and its unapplied backlog without bound: their sends back up into the clients'
// own buffers, and their offers are back-pressured there. Reading resumes once every backlog is below half its
// limit. A paused connection still counts as alive (its session stays bound, so its activity is noted).
void Node::Impl::apply_back_pressure() {
  const consensus::Raft& raft = replica_->raft();
  const std::uint64_t uncommitted =
      log_->last_index().value() - std::min(raft.commit_index(), log_->last_index()).value();
  const std::uint64_t unapplied = raft.commit_index().value() - replica_->host().applied_index().value();
  const std::size_t queued = log_->queued_bytes();
  const bool over =
      queued > kMaxQueuedBytes || uncommitted > kMaxUncommittedEntries || unapplied > kMaxUnappliedEntries;
  const bool under = queued <= kMaxQueuedBytes / 2 && uncommitted <= kMaxUncommittedEntries / 2 &&
                     unapplied <= kMaxUnappliedEntries / 2;
  // While paused, and for a session timeout after, no session is expired: a client that must reattach cannot.
  if (reading_paused_) replica_->hold_expiry_until(mono_now() + options_.session_timeout);
  if (reading_paused_ ? !under : !over) return;
  reading_paused_ = !reading_paused_;
  if (reading_paused_) ++reading_pauses_;
  logger_->info("[{}] {} reading client connections: {} bytes wait for storage, {} entries uncommitted, {} unapplied",
                context(), reading_paused_ ? "pausing" : "resuming", queued, uncommitted, unapplied);
  for (const auto& [raw, inbound] : inbound_)
    if (inbound.role == protocol::PeerRole::client) transport_->set_reading(io::ConnectionId{raw}, !reading_paused_);
}

void Node::Impl::drain_storage() {
  if (exit_code_ != 0) return;
  const consensus::Time now = mono_now();
  while (auto done = storage_thread_->poll()) {
    if (metrics_ && done->result.completion.seq > 0) {
      metrics_->observe_append(done->write_time);
      if (done->sync_time.count() > 0) metrics_->observe_fsync(done->sync_time);
    }
    if (const auto took = done->write_time + done->sync_time; took >= kSlowStorage && done->result.completion.seq > 0)
      logger_->log(took >= kVerySlowStorage ? spdlog::level::warn : spdlog::level::debug,
                   "[{}] storage was slow: a group commit of {} batches took {} ms ({} ms writing, {} ms syncing), "
                   "up to seq {}",
                   context(), done->group_batches, milliseconds(took), milliseconds(done->write_time),
                   milliseconds(done->sync_time), done->result.completion.seq);
    // A small group that was slow says the disk is: the loop must not take such writes on meanwhile.
    if (options_.sync == SyncPolicy::none && done->group_batches == 1 &&
        done->batch->bytes.size() <= kMaxBytesWrittenHere)
      note_write_time(done->write_time + done->sync_time, now, false);
    const auto completion = log_->complete(std::move(done->batch), done->result);
    if (!completion) {
      fail(fmt::format("storage failed: {}", log_->failure() ? log_->failure()->message : "unknown error"));
      return;
    }
    replica_->on_persisted(*completion, now);
  }
  schedule_flush();
  if (stopping_) finish_stop_when_ready(now);
}

// Handing a batch to the storage thread and its completion back costs two wake-ups of a sleeping thread, on the
// critical path of every commit (a follower answers only once its append is complete), and on a small or virtual
// machine a wake-up on the other CPU takes tens of microseconds. Under sync `none` a write only reaches the page
// cache, a few microseconds for a quiet moment's records: when the storage thread is idle, so that nothing of it is
// in flight (order is kept, and the writer is free), the loop thread performs such a batch itself, on the CPU that
// has just built it. Under load the storage thread is busy and takes the group commits as before, overlapping them
// with the loop's work. The loop must stay responsive (heartbeats, clients), so a write that is slow (a loaded disk,
// the kernel throttling dirty pages) sends every batch to the storage thread for a while. New segments (the one
// before is synced), truncations, compactions, resets and hard states always go there, and so does every write
// under `fsync`: an fdatasync blocks for hundreds of microseconds or more, and doing a follower's on its loop
// measured no faster here (a commit's p50 one at a time within the noise, 416-457 us either way).
bool Node::Impl::writes_here(const storage::Batch& batch, consensus::Time now) const {
  if (options_.sync != SyncPolicy::none || batch.bytes.size() > kMaxBytesWrittenHere) return false;
  if (now < write_here_after_ || storage_thread_->in_flight() != 0) return false;
  if (snapshot_job_.joinable()) return false;  // its writes compete for the disk meanwhile
  return std::all_of(batch.ops.begin(), batch.ops.end(), [](const storage::StorageOp& op) {
    return op.kind == storage::StorageOp::Kind::append && !op.new_segment;
  });
}

storage::BatchResult Node::Impl::perform_here(storage::Batch& batch) {
  storage::BatchResult result;
  result.completion = batch.completion();
  if (auto written = writer_->write(batch); !written)
    result.error = written.error();
  else if (auto synced = writer_->sync(); !synced)
    result.error = synced.error();
  return result;
}

void Node::Impl::note_write_time(std::chrono::nanoseconds took, consensus::Time now, bool here) {
  if (took <= kSlowWriteHere) {
    if (here) write_here_pause_ = kSlowWriteHerePause;
    return;
  }
  if (now < write_here_after_) return;  // already paused
  write_here_after_ = now + write_here_pause_;
  logger_->debug("[{}] a write {} took {} us: the storage thread takes every write for {} s", context(),
                 here ? "on the loop thread" : "of the storage thread",
                 std::chrono::duration_cast<std::chrono::microseconds>(took).count(),
                 std::chrono::duration_cast<std::chrono::seconds>(write_here_pause_).count());
  write_here_pause_ = std::min<std::chrono::nanoseconds>(2 * write_here_pause_, kSlowWriteHereMaxPause);
}

bool Node::Impl::submit_log_writes(consensus::Time now) {
  if (!storage_thread_->has_room()) return false;  // the batch grows until a group commit takes it whole
  std::unique_ptr<storage::Batch> batch = log_->take_batch();
  if (batch == nullptr) return false;
  if (!writes_here(*batch, now)) {
    storage_thread_->submit(std::move(batch));
    return false;
  }
  const auto started = Clock::now();
  const storage::BatchResult result = perform_here(*batch);
  const consensus::Time done = mono_now();
  note_write_time(Clock::now() - started, done, true);
  if (metrics_) metrics_->observe_append(Clock::now() - started);
  const auto completion = log_->complete(std::move(batch), result);
  if (!completion) {
    fail(fmt::format("storage failed: {}", log_->failure() ? log_->failure()->message : "unknown error"));
    return false;
  }
  // What this completion releases (a follower's answer, the leader's commit) goes out in this turn or the next.
  replica_->on_persisted(*completion, done);
  schedule_flush();
  return true;
}

void Node::Impl::release_messages() {
  const consensus::PersistSeq durable = log_->completed_seq();
  auto keep = outbox_.begin();
  for (auto it = outbox_.begin(); it != outbox_.end(); ++it) {
    if (it->after > durable) {
      if (keep != it) *keep = std::move(*it);
      ++keep;
      continue;
    }
    send_to_peer(it->message);
    replica_->raft().recycle(std::move(it->message));
  }
  outbox_.erase(keep, outbox_.end());
}

void Node::Impl::trace_election_message(const consensus::Message& message, bool outgoing, std::string_view fate) {
  if (!logger_->should_log(spdlog::level::debug)) return;
  const consensus::Raft& raft = replica_->raft();
  std::string what;
  if (const auto* request = std::get_if<consensus::VoteRequest>(&message.body))
    what = fmt::format("{}vote request (last {} term {}{})", request->pre_vote ? "pre-" : "",
                       request->last_index.value(), request->last_term.value(), request->transfer ? ", transfer" : "");
  else if (const auto* response = std::get_if<consensus::VoteResponse>(&message.body))
    what = fmt::format("{}vote {}", response->pre_vote ? "pre-" : "", response->granted ? "granted" : "refused");
  else if (std::holds_alternative<consensus::TimeoutNow>(message.body))
    what = "timeout-now";
  else
    return;
  const auto last = log_->last_index();
  const auto last_term = log_->term_at(last);
  logger_->debug("[{}] {} node {}: {} in term {}{} (here: {} term {}, standing {}, log end {} term {}, {}{})",
                 context(), outgoing ? "to" : "from", (outgoing ? message.to : message.from).value(), what,
                 message.term.value(), fate, consensus::to_string(raft.role()), raft.term().value(),
                 consensus::to_string(raft.standing()), last.value(), last_term ? last_term->value() : 0,
                 raft.leader() ? fmt::format("leader {} heard {} ms ago", raft.leader()->value(),
                                             milliseconds(mono_now() - raft.last_leader_contact()))
                               : std::string("no leader"),
                 raft.voted_for() ? fmt::format(", voted for {}", raft.voted_for()->value()) : std::string());
}

void Node::Impl::send_to_peer(const consensus::Message& message) {
  const auto link = std::find_if(links_.begin(), links_.end(), [&](const Link& l) { return l.id == message.to; });
  if (link == links_.end() || !link->connected) {
    trace_election_message(message, true, ": not sent, no connection");
    return;  // lost, as the protocol allows; Raft resends
  }
  trace_election_message(message, true, "");
  frame_.clear();
  node::append_peer_frame(message, frame_);
  if (frame_.size() > max_frame_length_) {
    // Cannot happen with entries bounded by max_message_size (the frame limit is sized for them); never abort
    // on it: the message is lost, as the protocol allows, and the operator hears of it.
    logger_->error("[{}] dropping a {}-byte {} to node {}: above the {}-byte frame limit", context(), frame_.size(),
                   consensus::type_name(message), message.to.value(), max_frame_length_);
    return;
  }
  // A full send buffer drops the message: the follower is far behind or gone, and Raft will resend.
  (void)transport_->send(*link->connection, frame_);
  link->sent_since_keepalive = true;
}

void Node::Impl::maintain_links(consensus::Time now) {
  const consensus::Time silence_limit = kPeerSilenceHeartbeats * options_.heartbeat_interval;
  // This node's own stall (a long turn, a descheduled process) is not its peers' silence: their frames wait unread in
  // the sockets. Silence is judged again only a heartbeat interval after the loop is back on time.
  if (now - links_checked_at_ > silence_limit / 2) judge_silence_after_ = now + options_.heartbeat_interval;
  links_checked_at_ = now;
  const bool judge = now >= judge_silence_after_;
  for (Link& link : links_) {
    if (judge && link.connection && link.connected && transport_->silent_for(*link.connection) > silence_limit) {
      logger_->info("[{}] nothing from node {} for {} ms: closing the connection and dialling again", context(),
                    link.id.value(), milliseconds(transport_->silent_for(*link.connection)));
      drop_link(link);
    } else if (judge && link.connection && !link.connected && now - link.dialed_at > silence_limit) {
      logger_->debug("no handshake answer from node {} at {} within {} ms: dialling again", link.id.value(),
                     link.endpoint.to_string(), milliseconds(silence_limit));
      drop_link(link);
    }
    if (link.connection || now < link.retry_at) continue;
    link.dialed_at = now;
    link.connection = transport_->connect(link.endpoint);
  }
  if (now < next_peer_keepalive_) return;
  next_peer_keepalive_ = now + options_.heartbeat_interval;
  frame_.clear();
  protocol::append_frame(protocol::KeepAlive{0}, frame_);
  for (Link& link : links_) {
    if (link.connected && !link.sent_since_keepalive) (void)transport_->send(*link.connection, frame_);
    link.sent_since_keepalive = false;
  }
  // A member's connection to us carries its messages only: our keep-alives are what its side hears on it.
  silent_peers_.clear();
  for (const auto& [raw, inbound] : inbound_) {
    if (inbound.role != protocol::PeerRole::node) continue;
    const io::ConnectionId id{raw};
    if (judge && transport_->silent_for(id) > silence_limit)
      silent_peers_.push_back(id);
    else
      (void)transport_->send(id, frame_);
  }
  for (const io::ConnectionId id : silent_peers_) {
    logger_->info("[{}] nothing from node {} on its connection for {} ms: closing it (it dials again)", context(),
                  inbound_.at(static_cast<std::uint64_t>(id)).node.value(), milliseconds(transport_->silent_for(id)));
    transport_->close(id);
    inbound_.erase(static_cast<std::uint64_t>(id));
  }
}

// Closes the link's connection (or abandons its dial) without waiting for TCP. The next dial comes one backoff step
// after the last one began: at once after a dial that hung, after a backoff for a peer that refuses.
void Node::Impl::drop_link(Link& link) {
  if (link.connection) transport_->close(*link.connection);
  link.connection.reset();
  link.connected = false;
  link.retry_at = link.dialed_at + link.backoff;
  link.backoff = std::min(link.backoff * 2, kReconnectMax);
}

// --- transport callbacks ------------------------------------------------------------------------------------

void Node::Impl::on_connected(io::ConnectionId id, const protocol::PeerIdentity& peer) {
  for (Link& link : links_) {
    if (link.connection == id) {
      link.connected = true;
      link.backoff = kReconnectMin;
      link.incarnation = peer.incarnation;
      logger_->info("[{}] connected to node {} at {}", context(), link.id.value(), link.endpoint.to_string());
      learn_peer(link.id, peer);
      return;
    }
  }
  Inbound inbound;
  inbound.role = peer.role;
  inbound.node = NodeId{peer.node_id};
  inbound.incarnation = peer.incarnation;
  inbound.privileged = peer.privileged;
  inbound_.emplace(static_cast<std::uint64_t>(id), inbound);
  if (peer.role != protocol::PeerRole::node) {
    gateway_->on_connected(gateway_id(id), peer.role);
    if (reading_paused_ && peer.role == protocol::PeerRole::client) transport_->set_reading(id, false);
    return;
  }
  learn_peer(inbound.node, peer);
  // A member that just dialled us is back: dial it now instead of at the end of a backoff that grew while it was
  // down (a restarted follower would otherwise wait up to a second for its leader's appends).
  // A dial still waiting for its answer may be lost in a partition that has just healed: this one is new.
  for (Link& link : links_) {
    if (link.id != inbound.node || link.connected) continue;
    if (link.connection) transport_->close(*link.connection);
    link.connection.reset();
    link.backoff = kReconnectMin;
    link.retry_at = consensus::Time{0};
    maintain_links(mono_now());
  }
}

// A member that passed the handshake agrees with this node's member list and incarnation: what was wrong with it is
// resolved. Its advertised client endpoint is the one redirects name from now on.
void Node::Impl::learn_peer(NodeId peer, const protocol::PeerIdentity& identity) {
  if (peer_problems_.erase({peer, true}) + peer_problems_.erase({peer, false}) > 0)
    logger_->info("[{}] node {} now agrees with this node's configuration", context(), peer.value());
  const auto listed = client_endpoints_.find(peer);
  if (listed == client_endpoints_.end()) return;  // cannot happen: the handshake admits members only
  // Redirects name the client endpoint the member advertises itself, so one node's typo in another's address cannot
  // send clients to a dead port; this node's own copy of the list only while the member says none.
  gateway_->set_client_endpoint(peer, identity.client_endpoint.empty() ? listed->second : identity.client_endpoint);
  if (identity.client_endpoint.empty() || identity.client_endpoint == listed->second) {
    endpoint_problems_.erase(peer);
    return;
  }
  std::string problem = fmt::format(
      "node {} advertises client endpoint {}, but this node's member list says {}: redirects name {} (correct this "
      "node's list if it is a typo)",
      peer.value(), identity.client_endpoint, listed->second, identity.client_endpoint);
  auto& known = endpoint_problems_[peer];
  if (known != problem) logger_->warn("[{}] {}", context(), problem);
  known = std::move(problem);
}

// Logged once at error level (the transport logs every refused attempt at warning level), shown in status until a
// handshake with that node succeeds or the disagreement has not been seen for kPeerProblemMemory.
void Node::Impl::note_peer_problem(NodeId peer, bool outgoing, std::string problem) {
  const std::pair key{peer, outgoing};
  if (!peer_problems_.contains(key) && peer_problems_.size() >= 2 * protocol::kMaxMembers) return;  // bounded
  PeerProblem& known = peer_problems_[key];
  known.seen = mono_now();
  if (known.text == problem) return;
  logger_->error("[{}] node {} and this node disagree, they will not talk: {}", context(), peer.value(), problem);
  known.text = std::move(problem);
}

void Node::Impl::on_refused(std::string_view /*remote*/, const protocol::HandshakeRefusal& refusal) {
  // Only disagreements about the cluster with a node that named itself: a malformed hello is the transport's to log.
  // The node need not be in our list: a node listing members we do not know is exactly what status must show.
  if (refusal.peer_node_id == 0 || refusal.peer_node_id == options_.node_id) return;
  if (refusal.code != protocol::ErrorCode::membership_mismatch &&
      refusal.code != protocol::ErrorCode::wrong_incarnation)
    return;
  // Not the remote address: its port changes with every attempt, and the text must not, to be logged once.
  note_peer_problem(NodeId{refusal.peer_node_id}, false,
                    fmt::format("refused node {}'s connection: {}", refusal.peer_node_id, refusal.text));
}

// The cluster's incarnation is known once the bootstrap entry is applied (committed, so it cannot change): from now
// on handshakes carry it and refuse a peer of another incarnation. Connections made before, with a peer that knew
// another one, are closed.
void Node::Impl::adopt_incarnation() {
  const host::Id128 known = replica_->host().incarnation();
  const protocol::Incarnation incarnation{known.high, known.low};
  if (!incarnation.known() || transport_->identity().incarnation == incarnation) return;
  protocol::LocalIdentity identity = transport_->identity();
  identity.incarnation = incarnation;
  transport_->set_identity(std::move(identity));
  logger_->info("[{}] cluster incarnation {}", context(), protocol::describe(incarnation));
  const auto other = [&](const protocol::Incarnation& theirs) { return theirs.known() && theirs != incarnation; };
  for (Link& link : links_) {
    if (!link.connected || !other(link.incarnation)) continue;
    note_peer_problem(
        link.id, true,
        fmt::format("another incarnation of cluster {}: the peer's is {}, this node's {} (the "
                    "cluster was re-created)",
                    options_.cluster_id, protocol::describe(link.incarnation), protocol::describe(incarnation)));
    transport_->close(*link.connection);
    on_disconnected(*link.connection, io::DisconnectReason::handshake_rejected, "another incarnation");
  }
  std::vector<io::ConnectionId> stale;
  for (const auto& [raw, inbound] : inbound_)
    if (inbound.role == protocol::PeerRole::node && other(inbound.incarnation)) stale.push_back(io::ConnectionId{raw});
  for (const io::ConnectionId id : stale) {
    transport_->close(id);
    inbound_.erase(static_cast<std::uint64_t>(id));
  }
  // The log's first configuration: with no dynamic membership yet, every node must still list exactly those.
  std::vector<std::uint32_t> ours(transport_->identity().members.view().begin(),
                                  transport_->identity().members.view().end());
  const auto& initial = replica_->host().initial_members();
  if (!initial.empty() && initial != ours) {
    bootstrap_problem_ = fmt::format(
        "the cluster was bootstrapped with members [{}], but this node lists [{}]: the member list cannot be changed "
        "by restarting with another list",
        fmt::join(initial, ", "), fmt::join(ours, ", "));
    logger_->error("[{}] {}", context(), bootstrap_problem_);
  }
}

std::vector<std::string> Node::Impl::configuration_problems() const {
  std::vector<std::string> problems;
  if (!bootstrap_problem_.empty()) problems.push_back(bootstrap_problem_);
  for (const auto& [peer, problem] : peer_problems_) problems.push_back(problem.text);
  for (const auto& [peer, problem] : endpoint_problems_) problems.push_back(problem);
  if (problems.size() > protocol::kMaxStatusProblems) problems.resize(protocol::kMaxStatusProblems);
  for (std::string& problem : problems)
    if (problem.size() > protocol::kMaxErrorTextLength) problem.resize(protocol::kMaxErrorTextLength);
  return problems;
}

void Node::Impl::on_disconnected(io::ConnectionId id, io::DisconnectReason reason, std::string_view detail) {
  for (Link& link : links_) {
    if (link.connection != id) continue;
    if (link.connected)
      logger_->info("[{}] lost connection to node {}: {} {}", context(), link.id.value(), io::to_string(reason),
                    detail);
    else if (reason == io::DisconnectReason::handshake_rejected)
      // Another member list, incarnation or cluster: say so.
      note_peer_problem(
          link.id, true,
          fmt::format("handshake with node {} at {} failed: {}", link.id.value(), link.endpoint.to_string(), detail));
    else
      logger_->debug("cannot reach node {} at {}: {} {}", link.id.value(), link.endpoint.to_string(),
                     io::to_string(reason), detail);
    link.connection.reset();  // gone already: nothing to close
    drop_link(link);
    return;
  }
  const auto it = inbound_.find(static_cast<std::uint64_t>(id));
  if (it == inbound_.end()) return;
  if (it->second.role != protocol::PeerRole::node) gateway_->on_disconnected(gateway_id(id));
  inbound_.erase(it);
}

void Node::Impl::on_frame(io::ConnectionId id, const protocol::Frame& frame) {
  const auto it = inbound_.find(static_cast<std::uint64_t>(id));
  if (it == inbound_.end()) return;  // our own outgoing links carry nothing back but the handshake
  Inbound& inbound = it->second;
  const consensus::Time now = mono_now();
  if (inbound.role == protocol::PeerRole::node) {
    if (frame.header.type == protocol::MessageType::keep_alive) return;  // heard: that is all it says
    if (!node::is_peer_message(frame.header.type)) {
      logger_->warn("closing connection of node {}: unexpected {} frame", inbound.node.value(),
                    protocol::to_string(frame.header.type));
      transport_->close(id);
      inbound_.erase(it);
      return;
    }
    auto decoded = node::decode_peer_frame(frame, decoded_, spare_entries_);
    // A member that sends a malformed message, or one claiming another sender, is closed: it reconnects, and a
    // message lost meanwhile is one Raft tolerates.
    if (!decoded.ok() || decoded_.from != inbound.node || decoded_.to != NodeId{options_.node_id}) {
      logger_->warn("closing connection of node {}: {}", inbound.node.value(),
                    decoded.ok() ? fmt::format("message from {} to {}", decoded_.from.value(), decoded_.to.value())
                                 : decoded.error());
      transport_->close(id);
      inbound_.erase(it);
      return;
    }
    trace_election_message(decoded_, false, "");
    replica_->step(decoded_, now);
    schedule_flush();
    return;
  }
  if (!gateway_->on_frame(gateway_id(id), frame, now)) answer_client_request(id, frame);
  send_gateway_outputs();
  schedule_flush();
}

// --- clients ------------------------------------------------------------------------------------------------

// What a client or admin connection asks of the node itself rather than of its sessions (the gateway's): the
// answers need the transport's identity and this node's view of the configuration.
void Node::Impl::answer_client_request(io::ConnectionId id, const protocol::Frame& frame) {
  const auto malformed = [&](const protocol::DecodeError& error) {
    logger_->warn("closing client connection {}: {}", static_cast<std::uint64_t>(id), error.describe());
    close_client(id);
  };
  switch (frame.header.type) {
    case protocol::MessageType::ping: {
      auto ping = protocol::decode<protocol::Ping>(frame);
      if (!ping) return malformed(ping.error());
      send_client(id, protocol::Pong{ping->id, ping->sent_at_ns});
      return;
    }
    case protocol::MessageType::status_request: {
      auto request = protocol::decode<protocol::StatusRequest>(frame);
      if (!request) return malformed(request.error());
      const consensus::Raft& raft = replica_->raft();
      protocol::StatusReply reply;
      reply.node_id = options_.node_id;
      reply.role = wire_role(raft.role());
      reply.standing = static_cast<std::uint8_t>(raft.standing());
      reply.leader_id = raft.leader() ? raft.leader()->value() : 0;
      reply.entry_faults = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(replica_->host().entry_faults().total(), std::uint64_t{0xFFFF'FFFFU}));
      reply.term = raft.term().value();
      reply.commit_index = raft.commit_index().value();
      reply.applied_index = replica_->host().applied_index().value();
      reply.last_index = log_->last_index().value();
      if (request->state_hash) {
        // Serializes the whole replicated state on this thread, so only for a tool that compares replicas, and, as
        // anyone on the client port may ask, at most once per kStateHashInterval: the one computed at the same
        // applied index is reused, and a request between two computations gets none (it asks again).
        const consensus::Time now = mono_now();
        const LogIndex applied = replica_->host().applied_index();
        if (state_hash_at_ != applied && (!state_hash_at_ || now - state_hash_computed_ >= kStateHashInterval)) {
          state_hash_ = replica_->host().state_hash();
          state_hash_at_ = applied;
          state_hash_computed_ = now;
        }
        reply.state_hash_included = state_hash_at_ == applied;
        if (reply.state_hash_included) reply.state_hash = state_hash_;
      }
      reply.open_sessions = replica_->host().open_sessions();
      const protocol::AdminReply newest = newest_snapshot_reply();
      reply.snapshot_index = newest.index;
      reply.snapshot_term = newest.term;
      reply.uptime_ms = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(mono_now() - started_at_).count());
      reply.members = transport_->identity().members;
      const std::vector<std::string> problems = configuration_problems();  // the reply views them until sent
      reply.problem_count = static_cast<std::uint16_t>(problems.size());
      for (std::size_t i = 0; i < problems.size(); ++i) reply.problems[i] = problems[i];
      send_client(id, reply);
      return;
    }
    case protocol::MessageType::admin_request: {
      auto request = protocol::decode<protocol::AdminRequest>(frame);
      if (!request) return malformed(request.error());
      handle_admin_request(id, *request);
      return;
    }
    default: COHORT_UNREACHABLE();  // the gateway hands back nothing else
  }
}

protocol::AdminReply Node::Impl::admin_reply(protocol::AdminCommand command, protocol::AdminOutcome outcome,
                                             std::string_view text) const {
  protocol::AdminReply reply;
  reply.command = command;
  reply.outcome = outcome;
  reply.node_id = options_.node_id;
  reply.leader_id = leader_ ? leader_->value() : 0;
  reply.text = text.substr(0, protocol::kMaxErrorTextLength);
  return reply;
}

void Node::Impl::handle_admin_request(io::ConnectionId id, const protocol::AdminRequest& request) {
  using protocol::AdminOutcome;
  const protocol::AdminCommand command = request.command;
  const auto answer = [&](AdminOutcome outcome, std::string_view text) {
    send_client(id, admin_reply(command, outcome, text));
  };
  // A tool that reached another node than it meant (the same loopback admin endpoint on another host, a stale
  // address) must not stop or snapshot this one.
  if (request.node_id != 0 && request.node_id != options_.node_id)
    return answer(AdminOutcome::refused,
                  fmt::format("this is node {}, not node {}", options_.node_id, request.node_id));
  const auto found = inbound_.find(static_cast<std::uint64_t>(id));
  const bool privileged = found != inbound_.end() && found->second.privileged;
  if (!privileged) {
    // On the client endpoint, which anyone who may open a session can reach: only with a credential the admin
    // authenticator accepts (client id 0: an operator, not a client), never the clients' authenticator.
    std::optional<std::string> refusal;
    if (options_.admin_authenticator == nullptr) {
      refusal = admin_bound_ ? fmt::format("this node takes that command on its admin endpoint, {}, only",
                                           admin_bound_->to_string())
                             : std::string(
                                   "this node has no admin endpoint (its member entry's admin) and no admin "
                                   "credentials: it takes that command from nobody");
    } else {
      try {
        refusal = options_.admin_authenticator->refuse(0, 0, request.credential);
      } catch (const std::exception& error) {
        refusal = fmt::format("the admin authenticator failed: {}", error.what());
      } catch (...) {
        refusal = std::string("the admin authenticator failed");
      }
      if (refusal) refusal = fmt::format("credential refused: {}", *refusal);
    }
    if (refusal) {
      logger_->warn("[{}] refused an admin {} on the client endpoint: {}", context(), protocol::to_string(command),
                    *refusal);
      return answer(AdminOutcome::refused, *refusal);
    }
  }
  if (stopping_) return answer(AdminOutcome::stopping, "the node is stopping");
  const consensus::Time now = mono_now();
  switch (command) {
    case protocol::AdminCommand::snapshot: {
      // One snapshot answers every request waiting: more than this many waiting is a tool gone wrong.
      if (constexpr std::size_t kMaxWaiting = 64; snapshot_requests_.size() >= kMaxWaiting)
        return answer(AdminOutcome::failed, "too many snapshot requests are waiting");
      logger_->info("[{}] an admin tool asks for a snapshot", context());
      snapshot_requests_.push_back(id);
      maybe_take_snapshot(now);
      return;
    }
    case protocol::AdminCommand::transfer_leadership: {
      consensus::Raft& raft = replica_->raft();
      const NodeId target{request.target};
      if (raft.role() != Role::leader)
        return answer(AdminOutcome::not_leader, fmt::format("node {} does not lead", options_.node_id));
      if (target == NodeId{options_.node_id}) return answer(AdminOutcome::done, "");
      if (auto started = raft.transfer_leadership(target, now); !started) {
        // is_self and not_leader were answered above.
        return answer(AdminOutcome::refused, fmt::format("node {} is not a member", request.target));
      }
      logger_->info("[{}] an admin tool asks to hand leadership to node {}", context(), request.target);
      // The core gives up after an election timeout; a new leader's first heartbeat follows within one more.
      transfer_waits_.push_back(TransferWait{id, target, now + 2 * options_.election_timeout_max});
      schedule_flush();
      return;
    }
    case protocol::AdminCommand::shutdown: {
      logger_->info("[{}] an admin tool asks this node to stop", context());
      answer(AdminOutcome::done, "stopping");
      // Next turn: the reply is on its way before the stop can end the loop. The tool knows the stop is over when
      // the connection closes.
      loop_.post([this] { begin_stop(); });
      return;
    }
  }
}

void Node::Impl::answer_transfer_waits(consensus::Time now) {
  if (transfer_waits_.empty()) return;
  const consensus::Raft& raft = replica_->raft();
  std::erase_if(transfer_waits_, [&](const TransferWait& wait) {
    const auto answer = [&](protocol::AdminOutcome outcome, std::string_view text) {
      send_client(wait.connection, admin_reply(protocol::AdminCommand::transfer_leadership, outcome, text));
      return true;
    };
    if (raft.role() != Role::leader && raft.leader() == wait.target) return answer(protocol::AdminOutcome::done, "");
    if (raft.role() != Role::leader && raft.leader().has_value())
      return answer(protocol::AdminOutcome::failed,
                    fmt::format("node {} took over instead of node {}", raft.leader()->value(), wait.target.value()));
    if (stopping_) return answer(protocol::AdminOutcome::stopping, "the node is stopping");
    if (now < wait.deadline) return false;
    return answer(protocol::AdminOutcome::failed,
                  fmt::format("node {} did not take over within {} ms (is it up and caught up?)", wait.target.value(),
                              2 * options_.election_timeout_max.count()));
  });
}

void Node::Impl::publish_metrics() {
  const consensus::Raft& raft = replica_->raft();
  const host::ServiceHost& host = replica_->host();
  const gateway::Gateway::Counters& gateway = gateway_->counters();
  node::MetricValues values;
  switch (raft.role()) {
    case Role::follower: values.role = 0; break;
    case Role::pre_candidate: values.role = 1; break;
    case Role::candidate: values.role = 2; break;
    case Role::leader: values.role = 3; break;
  }
  values.term = raft.term().value();
  values.elections_started = raft.elections_started();
  values.elections_won = raft.elections_won();
  values.commit_index = raft.commit_index().value();
  values.applied_index = host.applied_index().value();
  values.last_index = log_->last_index().value();
  values.sessions_open = host.open_sessions();
  values.sessions_opened = host.sessions_opened();
  values.sessions_expired = host.sessions_expired();
  values.ingress_messages = gateway.ingress_messages;
  values.ingress_bytes = gateway.ingress_bytes;
  values.egress_messages = gateway.egress_messages;
  values.egress_bytes = gateway.egress_bytes;
  values.redirects = gateway.redirects;
  values.back_pressure = gateway.busy_replies + reading_pauses_;
  values.snapshots_taken = snapshots_taken_;
  values.snapshots_installed = snapshots_installed_;
  values.storage_errors = storage_errors_;
  metrics_->publish(values);
  if (raft.role() != Role::leader) {
    metrics_->clear_follower_lag();
    return;
  }
  const LogIndex last = log_->last_index();
  for (std::size_t i = 0; i < followers_.size(); ++i) {
    const LogIndex match = raft.match_index(followers_[i]).value_or(LogIndex{});
    metrics_->set_follower_lag(i, last.value() - std::min(match, last).value());
  }
}

// Per batch, not per entry: each turn that appended as leader notes its last index and the time; each turn that
// finds it committed observes the difference once.
void Node::Impl::note_commit_latency(consensus::Time now) {
  const consensus::Raft& raft = replica_->raft();
  if (raft.role() != Role::leader) {
    appended_count_ = 0;
    appended_up_to_ = log_->last_index();
    return;
  }
  while (appended_count_ > 0 && appended_[appended_head_].last <= raft.commit_index()) {
    metrics_->observe_commit(now - appended_[appended_head_].at);
    appended_head_ = (appended_head_ + 1) % appended_.size();
    --appended_count_;
  }
  const LogIndex last = log_->last_index();
  if (last <= appended_up_to_) return;
  appended_up_to_ = last;
  if (last <= raft.commit_index() || appended_count_ == appended_.size()) return;
  appended_[(appended_head_ + appended_count_) % appended_.size()] = Appended{last, now};
  ++appended_count_;
}

void Node::Impl::send_client(io::ConnectionId id, const auto& message) {
  frame_.clear();
  protocol::append_frame(message, frame_);
  if (transport_->send(id, frame_) == io::SendResult::back_pressured) gateway_->on_send_failed(gateway_id(id));
}

// After every input to the gateway: its frames leave in order, then the connections it gave up on are closed.
void Node::Impl::send_gateway_outputs() {
  // A client that does not read fast enough is closed; it reattaches and is resent what it missed.
  gateway_->send_frames([this](gateway::ConnectionId connection, ByteSpan frame) {
    return transport_->send(transport_id(connection), frame) != io::SendResult::back_pressured;
  });
  gateway::GatewayOutputs& out = gateway_->outputs();
  for (const gateway::Closing& closing : out.closing) {
    const std::string_view why =
        closing.detail.empty() ? std::string_view(gateway::to_string(closing.cause)) : std::string_view(closing.detail);
    logger_->log(closing.cause == gateway::CloseCause::silent ? spdlog::level::info : spdlog::level::warn,
                 "closing client connection {}: {}", static_cast<std::uint64_t>(closing.connection), why);
    close_client(transport_id(closing.connection));
  }
  for (const gateway::SessionClosedNote& closed : out.sessions_closed)
    logger_->info("[{}] session {} closed ({}) after its message {}", context(), closed.session,
                  to_string(closed.reason), closed.last_seq);
  out.clear();
}

void Node::Impl::close_client(io::ConnectionId id) {
  transport_->close(id);
  gateway_->on_disconnected(gateway_id(id));  // nothing left to forget if the gateway closed it itself
  inbound_.erase(static_cast<std::uint64_t>(id));
}

void Node::Impl::log_role_change(Role previous, Term previous_term) {
  const consensus::Raft& raft = replica_->raft();
  leader_ = raft.leader();
  if (role_ != previous || term_ != previous_term)
    logger_->info("[{}] {} (was {} in term {}), leader {}", context(),
                  role_ == Role::leader ? "leads" : consensus::to_string(role_), consensus::to_string(previous),
                  previous_term.value(), leader_ ? fmt::format("node {}", leader_->value()) : std::string("unknown"));
  else if (leader_)
    logger_->info("[{}] leader is node {}", context(), leader_->value());
}

// --- graceful stop ------------------------------------------------------------------------------------------

void Node::Impl::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  const consensus::Time now = mono_now();
  stop_deadline_ = now;  // nothing to wait for, unless a handover starts
  if (const auto target = replica_->raft().best_transfer_target()) {
    // Hand over instead of leaving the cluster to notice by election timeout.
    if (replica_->raft().transfer_leadership(*target, now).ok()) {
      logger_->info("[{}] handing leadership to node {} before stopping", context(), target->value());
      stop_deadline_ = now + options_.election_timeout_max;
    }
  }
  gateway_->set_stopping(now);
  const protocol::AdminReply stopping =
      admin_reply(protocol::AdminCommand::snapshot, protocol::AdminOutcome::stopping, "the node is stopping");
  answer_snapshot_requests(snapshot_requests_, stopping);
  answer_snapshot_requests(snapshot_answering_, stopping);
  send_gateway_outputs();
  schedule_flush();
  finish_stop_when_ready(now);
}

void Node::Impl::finish_stop_when_ready(consensus::Time now) {
  const bool handing_over = replica_->raft().role() == Role::leader && now < stop_deadline_;
  if (handing_over) return;
  // Everything the core wrote is queued for the storage thread; run() lets it finish before returning. Messages
  // still waiting for durability are lost, as a crash would lose them: the protocol tolerates that.
  if (!storage_thread_->has_room()) return;  // the next tick tries again
  if (auto batch = log_->take_batch()) storage_thread_->submit(std::move(batch));
  // Every result checked before the exit status is decided: a failed last write must not exit 0.
  if (storage_thread_->in_flight() > 0) return;  // drain_storage() comes back here
  loop_.stop();
}

// --- Node ---------------------------------------------------------------------------------------------------

Node::Node(NodeOptions options, Service& service) : impl_(std::make_unique<Impl>(std::move(options), service)) {}
Node::~Node() = default;
std::optional<std::string> Node::start() { return impl_->start(); }
int Node::run() { return impl_->run(); }
void Node::request_stop() { impl_->request_stop(); }
std::string Node::peer_endpoint() const { return impl_->peer_endpoint(); }
std::string Node::client_endpoint() const { return impl_->client_endpoint(); }
std::string Node::admin_endpoint() const { return impl_->admin_endpoint(); }
std::string Node::metrics_endpoint() const { return impl_->metrics_endpoint(); }

}  // namespace cohort
