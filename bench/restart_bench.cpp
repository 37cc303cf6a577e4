// restart_bench: what a node's restart and its open sessions cost, on a real single-node cohortd (issue 13,
// "snapshots"). Two figures, each on a fresh data directory:
//
//  restart  Restart-to-serving after N messages (default 4 million, then 40 million), at the worst point of the
//           snapshot cycle. One client writes N messages (the counter service's 24-byte add by default), then
//           tops up until the log after the newest snapshot is just short of the snapshot threshold (it watches
//           the data directory for snapshot files and asks the node for its last index; a top-up that set off a
//           snapshot after all goes round one more cycle). The node is killed (SIGKILL) and started again; the
//           figure is the time from the exec to the first session served (a fresh client's open answered) and
//           to its first message applied. The node's log dates the phases in between: log recovered (the scan of
//           every segment), snapshot restored, listening, elected; the replay of the log after the snapshot runs
//           after the election, before the client's open is applied.
//  memory   Resident memory (VmRSS, VmHWM) of the node after --log-mib of log was written (16 KiB messages,
//           echo service), after --sessions sessions were opened (raw protocol frames: open, a few messages,
//           their egress received, then the connection dropped with the session left open under a session
//           timeout of a day), and after a kill and restart from a snapshot taken with those sessions open.
//
// Run it with `./run bench restart` (or build/release/bench/restart_bench); --quick is a small run that checks
// it works. The data directories go under TMPDIR (default /tmp). The last line is a JSON summary.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cohort/node.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include "cohort/admin.h"
#include "cohort/client.h"
#include "host/entry_codec.h"
#include "io/event_loop.h"
#include "io/tcp_transport.h"
#include "process.h"
#include "protocol/catalogue.h"
#include "services/counter_service.h"
#include "storage/format.h"

namespace {

using namespace cohort;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;
namespace fs = std::filesystem;

constexpr std::uint64_t kClusterId = 7;
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20U;

/// Thrown, not exited on: unwinding kills the node processes and removes their directories.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void die(const std::string& message) { throw Failure(message); }

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double mib(std::uint64_t bytes) { return static_cast<double>(bytes) / static_cast<double>(kMiB); }

std::uint16_t free_port() {
  // Bind port 0, read the port the kernel chose, and release it for cohortd; the node keeps it across restarts.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    die("cannot find a free port");
  ::close(fd);
  return ntohs(address.sin_port);
}

// --- what the node holds, seen from outside ------------------------------------------------------------------

struct Memory {
  std::uint64_t rss_kib = 0;
  std::uint64_t hwm_kib = 0;
  std::uint64_t anon_kib = 0;  // of the RSS: the heap and stacks; the rest is the binary, libraries and files
};

Memory read_memory(int pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  Memory memory;
  std::string line;
  while (std::getline(status, line)) {
    const auto value = [&] { return std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10); };
    if (line.starts_with("VmRSS:")) memory.rss_kib = value();
    if (line.starts_with("VmHWM:")) memory.hwm_kib = value();
    if (line.starts_with("RssAnon:")) memory.anon_kib = value();
  }
  if (memory.rss_kib == 0) die(fmt::format("cannot read the memory of process {}", pid));
  return memory;
}

std::string describe(const Memory& memory) {
  return fmt::format("VmRSS {:.1f} MiB (anonymous {:.1f} MiB), VmHWM {:.1f} MiB",
                     static_cast<double>(memory.rss_kib) / 1024, static_cast<double>(memory.anon_kib) / 1024,
                     static_cast<double>(memory.hwm_kib) / 1024);
}

/// The data directory as docs/durability.md lays it out: log segments and snapshot files.
struct DiskState {
  std::uint64_t log_bytes = 0;  // every segment's size
  std::size_t segments = 0;
  std::uint64_t snapshot_index = 0;  // the newest whole snapshot (0: none)
  std::uint64_t snapshot_bytes = 0;  // its file's size
  bool snapshot_in_flight = false;   // a snapshot-*.tmp: being written
};

DiskState inspect(const fs::path& data_dir) {
  DiskState state;
  for (const auto& file : fs::directory_iterator(data_dir)) {
    const std::string name = file.path().filename().string();
    if (name.starts_with("log-") && name.ends_with(".seg")) {
      state.log_bytes += file.file_size();
      ++state.segments;
    } else if (name.starts_with("snapshot-")) {
      if (name.ends_with(".tmp")) {
        state.snapshot_in_flight = true;
        continue;
      }
      if (name.find('.') != std::string::npos) continue;  // not a complete snapshot
      // snapshot-<index, 20 digits>-<term, 20 digits>
      std::uint64_t index = 0;
      const std::string_view digits = std::string_view(name).substr(9, 20);
      std::from_chars(digits.data(), digits.data() + digits.size(), index);
      if (index > state.snapshot_index) {
        state.snapshot_index = index;
        state.snapshot_bytes = file.file_size();
      }
    }
  }
  return state;
}

/// The time stamp first on each of the node's log lines (local time, microseconds; cohort::stderr_log_sink()).
std::optional<WallClock::time_point> stamp_of(const std::string& line) {
  std::tm tm{};
  const char* rest = ::strptime(line.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr || *rest != '.') return std::nullopt;
  tm.tm_isdst = -1;
  const long micros = std::strtol(rest + 1, nullptr, 10);
  return WallClock::from_time_t(std::mktime(&tm)) + std::chrono::microseconds(micros);
}

std::optional<std::string> first_line_with(const std::string& text, std::string_view needle) {
  const auto at = text.find(needle);
  if (at == std::string::npos) return std::nullopt;
  const auto begin = text.rfind('\n', at);
  const auto from = begin == std::string::npos ? 0 : begin + 1;
  return text.substr(from, text.find('\n', at) - from);
}

// --- the node ------------------------------------------------------------------------------------------------

class NodeProcess {
 public:
  NodeProcess(std::string cohortd, const fs::path& dir, std::vector<std::string> flags)
      : cohortd_(std::move(cohortd)), dir_(dir), data_dir_(dir / "data"), flags_(std::move(flags)) {
    client_ = fmt::format("127.0.0.1:{}", free_port());
    peer_ = fmt::format("127.0.0.1:{}", free_port());
  }

  /// Starts cohortd (again, on the same data directory and ports) and notes when, for the phases.
  void start() {
    process_.reset();
    std::vector<std::string> args = {"--node-id",    "1",
                                     "--cluster-id", std::to_string(kClusterId),
                                     "--data-dir",   data_dir_.string(),
                                     "--member",     fmt::format("1,{},{}", peer_, client_),
                                     "--log-level",  "info"};
    args.insert(args.end(), flags_.begin(), flags_.end());
    ++runs_;
    started_wall_ = WallClock::now();
    started_ = Clock::now();
    process_ = std::make_unique<testing::Process>(cohortd_, args, dir_, fmt::format("node-run{}", runs_));
  }
  void wait_listening() {
    if (!process_->wait_stdout("clients on ", 600s)) die("the node did not start:\n" + process_->stderr_text());
  }
  void kill() {
    process_->signal(SIGKILL);
    if (!process_->wait_exit(30s)) die("the node did not die of SIGKILL within 30 s");
  }

  int pid() const { return process_->pid(); }
  const std::string& client_endpoint() const { return client_; }
  const fs::path& data_dir() const { return data_dir_; }
  Clock::time_point started() const { return started_; }
  std::string log() const { return process_->stderr_text(); }

  /// Seconds from the exec to the first log line containing `needle`, if there is one.
  std::optional<double> logged_at(std::string_view needle) const {
    const auto line = first_line_with(log(), needle);
    if (!line) return std::nullopt;
    const auto stamp = stamp_of(*line);
    if (!stamp) return std::nullopt;
    return std::chrono::duration<double>(*stamp - started_wall_).count();
  }

  NodeStatus status() const {
    const StatusResult result = query_status(client_, kClusterId, 5s);
    if (!result.ok) die("no status from the node: " + result.error);
    return result.status;
  }

 private:
  std::string cohortd_;
  fs::path dir_;
  fs::path data_dir_;
  std::vector<std::string> flags_;
  std::string client_;
  std::string peer_;
  int runs_ = 0;
  WallClock::time_point started_wall_;
  Clock::time_point started_;
  std::unique_ptr<testing::Process> process_;
};

// --- clients -------------------------------------------------------------------------------------------------

/// Counts the fates of a client's messages, and notes when its first session opened and its first message was
/// applied.
class Fates final : public ClientListener {
 public:
  void on_session(std::uint64_t /*session_id*/, SessionChange /*change*/) override {
    const std::lock_guard lock(mutex_);
    if (!first_session_) first_session_ = Clock::now();
  }
  void on_applied(std::uint64_t /*seq*/, std::uint64_t /*position*/) override {
    const std::lock_guard lock(mutex_);
    if (!first_applied_) first_applied_ = Clock::now();
    ++applied_;
    changed_.notify_all();
  }
  void on_rejected(std::uint64_t seq, cohort::Reason /*code*/, std::string_view reason) override {
    failed(seq, reason);
  }
  void on_unknown(std::uint64_t seq, cohort::Reason /*code*/, std::string_view reason) override { failed(seq, reason); }

  /// Waits until `count` messages have a fate; false on timeout. Dies if one was not applied.
  bool wait_fates(std::uint64_t count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    const bool done = changed_.wait_for(lock, timeout, [&] { return applied_ + failed_ >= count; });
    if (failed_ != 0) die(fmt::format("{} messages were not applied; the first: {}", failed_, first_failure_));
    return done;
  }
  /// Waits (briefly) for any fate to arrive: what a writer does while the client's buffer is full.
  void wait_some(std::chrono::microseconds timeout) {
    std::unique_lock lock(mutex_);
    const std::uint64_t seen = applied_ + failed_;
    changed_.wait_for(lock, timeout, [&] { return applied_ + failed_ != seen; });
  }
  std::optional<Clock::time_point> first_session() const {
    const std::lock_guard lock(mutex_);
    return first_session_;
  }
  std::optional<Clock::time_point> first_applied() const {
    const std::lock_guard lock(mutex_);
    return first_applied_;
  }

 private:
  void failed(std::uint64_t seq, std::string_view reason) {
    const std::lock_guard lock(mutex_);
    if (failed_++ == 0) first_failure_ = fmt::format("seq {}: {}", seq, reason);
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t applied_ = 0;
  std::uint64_t failed_ = 0;
  std::string first_failure_;
  std::optional<Clock::time_point> first_session_;
  std::optional<Clock::time_point> first_applied_;
};

/// One client offering the same message over and over, as fast as its buffer allows.
class Writer {
 public:
  Writer(const std::string& endpoint, std::vector<std::byte> message) : message_(std::move(message)) {
    ClientOptions options;
    options.cluster_id = kClusterId;
    options.members = {endpoint};
    client_ = std::make_unique<Client>(options, fates_);
    if (!client_->wait_connected(60s)) die("the writer did not connect within 60 s");
  }
  ~Writer() { client_.reset(); }  // joins the I/O thread before the listener goes
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  /// Offers `count` more messages and waits until every one was applied.
  void write(std::uint64_t count) {
    for (std::uint64_t i = 0; i < count;) {
      const Offer offer = client_->offer(message_);
      if (offer.status == OfferStatus::accepted) {
        ++i;
        ++offered_;
      } else if (offer.status == OfferStatus::back_pressured) {
        fates_.wait_some(1ms);
      } else {
        die(fmt::format("the writer's offer was refused: {}", to_string(offer.status)));
      }
    }
    if (!fates_.wait_fates(offered_, 600s)) die("the writer's messages were not all applied within 600 s");
  }
  std::uint64_t written() const { return offered_; }

 private:
  std::vector<std::byte> message_;
  std::uint64_t offered_ = 0;
  Fates fates_;
  std::unique_ptr<Client> client_;  // last: destroyed first
};

/// The restart measured: the exec, then the node's log lines, then a fresh client's session and first message.
struct Restart {
  double recovered_s = -1;  // "log recovered": every segment scanned
  double restored_s = -1;   // the snapshot loaded and restored (or -1: none)
  double listening_s = -1;
  double leader_s = -1;
  double session_s = -1;  // the client's open answered
  double applied_s = -1;  // its first message applied: the node serves
  std::string restored_line;
  std::uint64_t replayed_entries = 0;  // the log after the snapshot, as the node counted it
};

/// Starts the (killed) node again and times it until a client it has never seen is served. The client retries
/// every few milliseconds (not the default backoff, which would add up to 2 s of its own to the figure) and
/// offers its message at once, so the message waits in its buffer.
Restart restart_and_time(NodeProcess& node, const std::vector<std::byte>& message) {
  node.start();
  Fates fates;
  ClientOptions options;
  options.cluster_id = kClusterId;
  options.members = {node.client_endpoint()};
  options.backoff_initial = 1ms;
  options.backoff_max = 5ms;
  auto client = std::make_unique<Client>(options, fates);
  if (client->offer(message).status != OfferStatus::accepted) die("the probe's message was not accepted");
  if (!fates.wait_fates(1, 600s)) die("the restarted node served nothing within 600 s:\n" + node.log());
  client.reset();

  Restart figures;
  figures.session_s = seconds(*fates.first_session() - node.started());
  figures.applied_s = seconds(*fates.first_applied() - node.started());
  figures.recovered_s = node.logged_at("log recovered:").value_or(-1);
  figures.restored_s = node.logged_at("restored the snapshot at index").value_or(-1);
  figures.listening_s = node.logged_at(": peers on ").value_or(-1);
  figures.leader_s = node.logged_at("] leads (was").value_or(-1);
  if (auto line = first_line_with(node.log(), "restored the snapshot at index")) {
    figures.restored_line = line->substr(line->find("restored the snapshot"));
    // "...; N entries of log follow it"
    const auto at = line->rfind("; ");
    if (at != std::string::npos) figures.replayed_entries = std::strtoull(line->c_str() + at + 2, nullptr, 10);
  }
  return figures;
}

std::string phases(const Restart& r) {
  return fmt::format("log recovered {:.3f} s, snapshot restored {}, listening {:.3f} s, leader {:.3f} s", r.recovered_s,
                     r.restored_s < 0 ? std::string("(none)") : fmt::format("{:.3f} s", r.restored_s), r.listening_s,
                     r.leader_s);
}

// --- restart-to-serving after N messages ---------------------------------------------------------------------

struct RestartOptions {
  std::string cohortd;
  std::string service = "counter";
  std::size_t message_size = 64;                                       // echo only: the counter's add is 24 bytes
  std::uint64_t threshold = cohort::NodeOptions{}.snapshot_threshold;  // the node's defaults
  std::uint64_t segment_size = cohort::NodeOptions{}.segment_size;
  std::vector<std::string> node_flags;
};

struct RestartRun {
  std::uint64_t asked = 0;
  std::uint64_t written = 0;
  std::uint64_t entries_after_snapshot = 0;
  std::uint64_t bytes_after_snapshot = 0;  // of the threshold, estimated from the record size
  DiskState disk;
  double write_s = 0;
  Restart restart;
};

std::vector<std::byte> message_for(const RestartOptions& options) {
  if (options.service == "counter")
    return services::encode_counter_request(services::CounterRequest{services::CounterOp::add, 1, 1});
  return std::vector<std::byte>(options.message_size, std::byte{0x5A});
}

/// Waits until no snapshot is being taken or written: the node decides to take one at the end of a loop turn,
/// just after the entries that crossed the threshold were applied, so a short wait lets it start first.
DiskState settled(const NodeProcess& node) {
  std::this_thread::sleep_for(200ms);
  const auto until = Clock::now() + 120s;
  while (true) {
    DiskState disk = inspect(node.data_dir());
    if (!disk.snapshot_in_flight) return disk;
    if (Clock::now() > until) die("a snapshot was still being written after 120 s");
    std::this_thread::sleep_for(20ms);
  }
}

RestartRun measure_restart(const RestartOptions& options, std::uint64_t count) {
  testing::TempDir dir;
  std::vector<std::string> flags = {"--service",
                                    options.service,
                                    "--snapshot-threshold",
                                    std::to_string(options.threshold),
                                    "--segment-size",
                                    std::to_string(options.segment_size)};
  flags.insert(flags.end(), options.node_flags.begin(), options.node_flags.end());
  NodeProcess node(options.cohortd, dir.path(), flags);
  node.start();
  node.wait_listening();
  const std::vector<std::byte> message = message_for(options);
  // Every message is one ingress entry of the same size: envelope, session and seq, the message.
  const std::uint64_t record = storage::record_size(host::kEnvelopeHeaderSize + 16 + message.size());
  // The node compares the log after its newest snapshot with the threshold by the log's index samples (one per
  // 1/64 of a segment), which can count up to one sample's bytes too many: stop at least two samples short.
  const std::uint64_t margin = std::max(options.threshold / 32, 2 * options.segment_size / 64);

  RestartRun run;
  run.asked = count;
  {
    Writer writer(node.client_endpoint(), message);
    const auto begin = Clock::now();
    writer.write(count);
    run.write_s = seconds(Clock::now() - begin);
    // To the worst point: top up until the log after the newest snapshot is `margin` short of the threshold. A
    // top-up that set off a snapshot after all (entries of the node's own, a coarse estimate) starts a new cycle.
    for (int cycle = 0;; ++cycle) {
      if (cycle == 4) die("could not stop short of the next snapshot in 4 cycles");
      const DiskState before = settled(node);
      const std::uint64_t after = node.status().last_index - before.snapshot_index;
      const std::uint64_t target = options.threshold - margin;
      if (after * record < target) writer.write((target - after * record) / record);
      run.disk = settled(node);
      if (run.disk.snapshot_index == before.snapshot_index) break;
    }
    run.written = writer.written();
    run.entries_after_snapshot = node.status().last_index - run.disk.snapshot_index;
    run.bytes_after_snapshot = run.entries_after_snapshot * record;
    node.kill();  // with the writer still connected: it goes with the node
  }
  run.disk = inspect(node.data_dir());
  run.restart = restart_and_time(node, message);
  return run;
}

// --- memory with many open sessions --------------------------------------------------------------------------

/// Opens sessions over raw client connections, a few at a time, on its own event loop: each connection opens a
/// session, sends `messages` ingress, and once their egress has come back, drops the connection without closing the
/// session (the client library always closes its session when it closes; a crashed client does not).
class SessionOpener final : public io::TransportHandler {
 public:
  SessionOpener(io::Endpoint endpoint, std::size_t sessions, std::size_t messages, std::vector<std::byte> message)
      : endpoint_(std::move(endpoint)), sessions_(sessions), messages_(messages), message_(std::move(message)) {}

  void open_all(std::size_t in_parallel, std::chrono::milliseconds timeout) {
    io::EventLoop loop;
    io::TcpTransportConfig config;
    config.identity = protocol::client_identity(kClusterId);
    io::TcpTransport transport(loop, config, *this);
    transport_ = &transport;
    for (std::size_t i = 0; i < in_parallel; ++i) connect_next();
    if (!loop.run_until([&] { return opened_ == sessions_ || !failure_.empty(); }, timeout))
      die(fmt::format("{} of {} sessions opened within {} s", opened_, sessions_, timeout.count() / 1000));
    if (!failure_.empty()) die(failure_);
    transport_ = nullptr;
  }

  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& /*peer*/) override {
    protocol::SessionOpen open;
    open.client_id_high = random_();
    open.client_id_low = random_();
    send(id, open);
  }
  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override {
    const auto connection = connections_.find(id);
    if (connection == connections_.end()) return;
    switch (frame.header.type) {
      case protocol::MessageType::session_reply: {
        auto reply = protocol::decode<protocol::SessionReply>(frame);
        if (!reply || reply->status != protocol::SessionStatus::opened)
          return fail(fmt::format("session {} was not opened: {}", opened_ + 1,
                                  reply ? std::string(reply->text) : reply.error().describe()));
        connection->second = reply->session_id;
        for (std::uint64_t seq = 1; seq <= messages_; ++seq)
          send(id, protocol::Ingress{reply->session_id, seq, message_});
        return;
      }
      case protocol::MessageType::egress: {
        auto egress = protocol::decode<protocol::Egress>(frame);
        if (!egress) return fail("a malformed egress: " + egress.error().describe());
        if (egress->egress_seq < messages_) return;
        // Every reply is in the session's window: leave the session open, as a client that crashed does.
        connections_.erase(connection);
        transport_->close(id);
        ++opened_;
        connect_next();
        return;
      }
      case protocol::MessageType::session_closed:
      case protocol::MessageType::ingress_rejected: return fail("the node closed a session or refused a message");
      default: return;  // acks and keep-alives
    }
  }
  void on_disconnected(io::ConnectionId id, io::DisconnectReason reason, std::string_view detail) override {
    if (connections_.erase(id) == 0) return;
    // The node drops a client silent for 4 keep-alive intervals (1 s), which these never send: a stall that long
    // costs the connection. Its session, if it opened, stays open like the others; a new connection replaces it.
    if (++dropped_ > 100)
      return fail(fmt::format("{} connections dropped; the last: {}: {}", dropped_, io::to_string(reason), detail));
    --started_;
    connect_next();
  }
  std::size_t dropped() const { return dropped_; }

 private:
  void connect_next() {
    if (transport_ == nullptr || started_ == sessions_) return;
    ++started_;
    connections_[transport_->connect(endpoint_)] = 0;
  }
  template <typename Message>
  void send(io::ConnectionId id, const Message& message) {
    frame_.clear();
    protocol::append_frame(message, frame_);
    if (transport_->send(id, frame_) != io::SendResult::queued) fail("cannot send to the node");
  }
  void fail(std::string why) {
    if (failure_.empty()) failure_ = std::move(why);
  }

  io::Endpoint endpoint_;
  std::size_t sessions_;
  std::size_t messages_;
  std::vector<std::byte> message_;
  io::Transport* transport_ = nullptr;
  std::map<io::ConnectionId, std::uint64_t> connections_;  // open ones, and their session once it is open
  std::size_t started_ = 0;
  std::size_t opened_ = 0;
  std::size_t dropped_ = 0;
  std::string failure_;
  std::vector<std::byte> frame_;
  std::mt19937_64 random_{std::random_device{}()};
};

struct MemoryOptions {
  std::string cohortd;
  std::uint64_t log_bytes = 1024 * kMiB;
  std::size_t log_message_size = std::size_t{16} << 10U;
  std::size_t sessions = 10'000;
  std::size_t egress_per_session = 4;
  std::uint64_t threshold = cohort::NodeOptions{}.snapshot_threshold;
  std::vector<std::string> node_flags;
};

struct MemoryRun {
  Memory after_log;
  Memory after_sessions;
  Memory after_restart;
  std::uint64_t log_messages = 0;
  double log_s = 0;
  double sessions_s = 0;
  std::uint64_t open_after_restart = 0;
  DiskState disk;
  Restart restart;
};

MemoryRun measure_memory(const MemoryOptions& options) {
  testing::TempDir dir;
  // A day: the longest timeout cohortd takes, so no session expires while its client is gone.
  std::vector<std::string> flags = {"--service",
                                    "echo",
                                    "--session-timeout-ms",
                                    "86400000",
                                    "--max-sessions",
                                    std::to_string(options.sessions + 8),
                                    "--snapshot-threshold",
                                    std::to_string(options.threshold)};
  flags.insert(flags.end(), options.node_flags.begin(), options.node_flags.end());
  NodeProcess node(options.cohortd, dir.path(), flags);
  node.start();
  node.wait_listening();
  fmt::print("memory: single node, echo service, snapshot threshold {:.0f} MiB\n", mib(options.threshold));
  MemoryRun run;
  const std::vector<std::byte> large(options.log_message_size, std::byte{0x4C});
  const std::uint64_t record = storage::record_size(host::kEnvelopeHeaderSize + 16 + large.size());
  {
    Writer writer(node.client_endpoint(), large);
    const auto begin = Clock::now();
    run.log_messages = (options.log_bytes + record - 1) / record;
    writer.write(run.log_messages);
    run.log_s = seconds(Clock::now() - begin);
  }  // its session closes: the sessions measured below are the opener's alone
  settled(node);
  run.after_log = read_memory(node.pid());
  fmt::print("  after {:.0f} MiB of log ({} messages of {} B, {:.1f} s): {}\n", mib(options.log_bytes),
             run.log_messages, options.log_message_size, run.log_s, describe(run.after_log));
  std::fflush(stdout);

  auto endpoint = io::parse_endpoint(node.client_endpoint());
  if (!endpoint) die(endpoint.error());
  const std::vector<std::byte> small(64, std::byte{0x53});
  SessionOpener opener(*endpoint, options.sessions, options.egress_per_session, small);
  const auto begin = Clock::now();
  opener.open_all(16, 600s);
  run.sessions_s = seconds(Clock::now() - begin);
  const NodeStatus opened = node.status();
  if (opened.open_sessions < options.sessions)
    die(fmt::format("the node has {} sessions open, not {}", opened.open_sessions, options.sessions));
  run.after_sessions = read_memory(node.pid());
  fmt::print("  after {} sessions opened ({} egress each, clients gone; {:.1f} s{}): {}\n", options.sessions,
             options.egress_per_session, run.sessions_s,
             opener.dropped() == 0 ? "" : fmt::format("; {} connections dropped and replaced", opener.dropped()),
             describe(run.after_sessions));
  std::fflush(stdout);

  // So that the restart restores the sessions from a snapshot rather than replaying their opens: more log, until
  // a snapshot covers the last open.
  {
    Writer writer(node.client_endpoint(), large);
    for (int round = 0; settled(node).snapshot_index < opened.last_index; ++round) {
      if (round == 8) die("no snapshot covered the sessions after 8 rounds of writes");
      writer.write(options.threshold / record / 4 + 1);
    }
  }
  node.kill();
  run.disk = inspect(node.data_dir());
  run.restart = restart_and_time(node, small);
  run.after_restart = read_memory(node.pid());
  run.open_after_restart = node.status().open_sessions;
  // The probe's session, and a writer's whose close the kill overtook, may be among them.
  if (run.open_after_restart < options.sessions)
    die(fmt::format("after the restart the node has {} sessions open, not {}", run.open_after_restart,
                    options.sessions));
  fmt::print(
      "  after kill -9 and restart ({} sessions open, a probe or writer still closing counted; snapshot {} bytes at "
      "index {}; served "
      "after {:.3f} s: {}): {}\n",
      run.open_after_restart, run.disk.snapshot_bytes, run.disk.snapshot_index, run.restart.applied_s,
      phases(run.restart), describe(run.after_restart));
  std::fflush(stdout);
  return run;
}

std::vector<std::uint64_t> parse_counts(const std::vector<std::string>& texts) {
  std::vector<std::uint64_t> counts;
  for (const std::string& text : texts) {
    // "4M", "40M", "250k" or a plain number.
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    if (end == text.c_str()) die("not a message count: " + text);
    if (*end == 'k' || *end == 'K') value *= 1e3;
    if (*end == 'm' || *end == 'M') value *= 1e6;
    counts.push_back(static_cast<std::uint64_t>(value));
  }
  return counts;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"restart_bench: a single node's restart-to-serving time and its memory with many open sessions"};
  RestartOptions restart;
  restart.cohortd = COHORTD_PATH;
  MemoryOptions memory;
  std::vector<std::string> counts_text = {"4M", "40M"};
  std::vector<std::string> figures = {"restart", "memory"};
  std::uint64_t log_mib = 1024;
  bool quick = false;
  app.add_option("--cohortd", restart.cohortd, "the cohortd binary");
  app.add_option("--figures", figures, "which: restart, memory")
      ->delimiter(',')
      ->check(CLI::IsMember({"restart", "memory"}));
  app.add_option("--messages", counts_text, "restart: messages written before each restart (4M, 40M, 250k, 1000)")
      ->delimiter(',');
  app.add_option("--service", restart.service, "restart: counter (24-byte adds) or echo")
      ->check(CLI::IsMember({"counter", "echo"}));
  app.add_option("--message-size", restart.message_size, "restart, echo only: bytes per message")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--log-mib", log_mib, "memory: log written before the sessions open, MiB")
      ->check(CLI::Range(1, 65536));
  app.add_option("--sessions", memory.sessions, "memory: sessions left open")->check(CLI::Range(1, 1000000));
  app.add_option("--node-flag", restart.node_flags,
                 "another cohortd flag for every node, e.g. --node-flag=--sync=none (repeatable)");
  app.add_flag("--quick", quick, "small counts and thresholds: checks that it runs");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::uint64_t> counts;
  try {
    counts = parse_counts(counts_text);
  } catch (const Failure& failure) {
    fmt::print(stderr, "restart_bench: {}\n", failure.what());
    return 2;
  }
  memory.cohortd = restart.cohortd;
  memory.node_flags = restart.node_flags;
  memory.log_bytes = log_mib * kMiB;
  if (quick) {
    counts = {20'000, 40'000};
    restart.threshold = 1 * kMiB;
    restart.segment_size = 1 * kMiB;
    memory.log_bytes = 16 * kMiB;
    memory.sessions = 200;
    memory.threshold = 4 * kMiB;
  }
  const auto wanted = [&](const char* name) {
    return std::find(figures.begin(), figures.end(), name) != figures.end();
  };

  try {
    std::string json = "{";
    if (wanted("restart")) {
      fmt::print(
          "restart: single node, {} service, snapshot threshold {:.0f} MiB{}\n", restart.service,
          mib(restart.threshold),
          restart.node_flags.empty() ? std::string() : fmt::format(", flags {}", fmt::join(restart.node_flags, " ")));
      json += R"("restart": [)";
      for (std::size_t i = 0; i < counts.size(); ++i) {
        const RestartRun run = measure_restart(restart, counts[i]);
        const Restart& r = run.restart;
        fmt::print(
            "  {} messages ({} asked, written in {:.1f} s), stopped {:.1f} MiB ({} entries) after the snapshot at "
            "index {} ({:.0f}% of the threshold): log {:.1f} MiB on disk in {} segments, snapshot {} bytes\n"
            "    restart-to-serving: first session {:.3f} s, first message applied {:.3f} s; {}; replayed {} entries "
            "({})\n",
            run.written, run.asked, run.write_s, mib(run.bytes_after_snapshot), run.entries_after_snapshot,
            run.disk.snapshot_index,
            100.0 * static_cast<double>(run.bytes_after_snapshot) / static_cast<double>(restart.threshold),
            mib(run.disk.log_bytes), run.disk.segments, run.disk.snapshot_bytes, r.session_s, r.applied_s, phases(r),
            r.replayed_entries, r.restored_line.empty() ? "no snapshot restored" : r.restored_line);
        std::fflush(stdout);
        json += fmt::format(
            R"({}{{"messages": {}, "log_mib": {:.1f}, "snapshot_bytes": {}, "log_after_snapshot_mib": {:.1f}, )"
            R"("replayed_entries": {}, "recovered_s": {:.3f}, "restored_s": {:.3f}, "leader_s": {:.3f}, )"
            R"("session_s": {:.3f}, "applied_s": {:.3f}}})",
            i == 0 ? "" : ", ", run.written, mib(run.disk.log_bytes), run.disk.snapshot_bytes,
            mib(run.bytes_after_snapshot), r.replayed_entries, r.recovered_s, r.restored_s, r.leader_s, r.session_s,
            r.applied_s);
      }
      json += "]";
    }
    if (wanted("memory")) {
      const MemoryRun run = measure_memory(memory);
      const auto mib_of = [](std::uint64_t kib) { return static_cast<double>(kib) / 1024; };
      json += fmt::format(
          R"({}"memory": {{"log_mib": {:.0f}, "sessions": {}, "rss_mib_after_log": {:.1f}, )"
          R"("rss_mib_after_sessions": {:.1f}, "hwm_mib_after_sessions": {:.1f}, "rss_mib_after_restart": {:.1f}, )"
          R"("hwm_mib_after_restart": {:.1f}}})",
          json.size() > 1 ? ", " : "", mib(memory.log_bytes), memory.sessions, mib_of(run.after_log.rss_kib),
          mib_of(run.after_sessions.rss_kib), mib_of(run.after_sessions.hwm_kib), mib_of(run.after_restart.rss_kib),
          mib_of(run.after_restart.hwm_kib));
    }
    fmt::print("{}}}\n", json);
    return 0;
  } catch (const Failure& failure) {
    fmt::print(stderr, "restart_bench: {}\n", failure.what());
    return 1;
  }
}
