#pragma once
// The 3-node cluster fixture shared by the system tests: real cohortd processes on loopback, driven through the
// client library (a small synchronous KV client) and the admin status query. Every wait polls a condition with a
// generous deadline (scaled under the sanitizers); nothing sleeps and hopes.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cohort/admin.h"
#include "cohort/client.h"
#include "cohort/services/kv_codec.h"
#include "process.h"

namespace cohort::testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;
using services::KvOp;
using services::KvReply;
using services::KvRequest;
using services::KvStatus;

inline constexpr std::uint64_t kClusterId = 42;
inline constexpr std::size_t kNodes = 3;

inline int slowdown() { return std::getenv("COHORT_SANITIZED") != nullptr ? 3 : 1; }
inline Ms deadline() { return Ms(20'000 * slowdown()); }
inline Ms reply_timeout() { return Ms(2'000 * slowdown()); }  // then a get is asked again (egress may be lost)

inline long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<Ms>(Clock::now() - start).count();
}

/// Polls `condition` every `period` until it holds (true) or `timeout` passes (false).
inline bool eventually(const std::function<bool()>& condition, Ms timeout, Ms period = 10ms) {
  const auto until = Clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(period);
  }
}

/// `count` distinct loopback ports that were free a moment ago: each is bound to port 0 (all held open together,
/// so they differ), read back, and released.
inline std::vector<std::uint16_t> free_ports(std::size_t count) {
  std::vector<int> sockets;
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockets.push_back(fd);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
      throw std::system_error(errno, std::generic_category(), "bind");
    ports.push_back(ntohs(address.sin_port));
  }
  for (const int fd : sockets) ::close(fd);
  return ports;
}

inline std::string loopback(std::uint16_t port) { return fmt::format("127.0.0.1:{}", port); }

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/// The number after `"key":` in a flat JSON object (the first occurrence), or nullopt: for `cohort stream --json`.
inline std::optional<long long> json_number(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const auto at = json.find(needle);
  if (at == std::string::npos) return std::nullopt;
  try {
    return std::stoll(json.substr(at + needle.size()));
  } catch (const std::exception&) {
    return std::nullopt;  // null, or not a number
  }
}

/// "a,b,c": a member list as `cohort stream --members` takes it.
inline std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : ",") + part;
  return out;
}

inline KvRequest make_request(KvOp op, std::string key, std::string value = {}) {
  KvRequest request;
  request.op = op;
  request.key = std::move(key);
  request.value = std::move(value);
  return request;
}

inline std::vector<std::byte> encode(const KvRequest& request) {
  auto bytes = services::encode_kv_request(request);
  if (!bytes) throw std::runtime_error("cannot encode a kv request: " + bytes.error());
  return std::move(bytes).value();
}

inline std::string value_for(std::uint64_t n) { return fmt::format("value-{}-{}", n, std::string(n % 23, 'x')); }

// --- the KV client --------------------------------------------------------------------------------------------

/// One egress message as the client delivered it: the session it came in (the last on_session's), its egress
/// seq, and the request id of the KV reply it carried (0 if it did not decode).
struct EgressRecord {
  std::uint64_t session = 0;
  std::uint64_t egress_seq = 0;
  std::uint64_t request_id = 0;
};

/// A small synchronous KV client over cohort::Client: it offers requests, counts their acknowledgements
/// (on_applied) and collects the service's replies (egress) by request id. It also keeps, in order, every session
/// change, every egress delivered (EgressRecord) and every egress gap reported.
class KvClient final : public ClientListener {
 public:
  explicit KvClient(std::vector<std::string> members, std::size_t max_buffered = 65536,
                    std::size_t max_message_size = ClientOptions{}.max_message_size) {
    ClientOptions options;
    options.cluster_id = kClusterId;
    options.members = std::move(members);
    options.max_buffered_messages = max_buffered;
    options.max_message_size = max_message_size;
    client_ = std::make_unique<Client>(options, *this);
  }
  ~KvClient() override { client_.reset(); }  // joins the I/O thread before the listener's state goes
  KvClient(const KvClient&) = delete;
  KvClient& operator=(const KvClient&) = delete;

  Client& client() { return *client_; }

  /// Offers `request` (a fresh request id is filled in), waiting while the client's buffer is full. Returns the
  /// seq, or 0 if it was not accepted within the deadline.
  std::uint64_t offer(KvRequest request, Ms timeout, std::uint64_t* request_id = nullptr) {
    request.request_id = next_request_id_++;
    if (request_id != nullptr) *request_id = request.request_id;
    const auto bytes = encode(request);
    const auto until = Clock::now() + timeout;
    while (true) {
      const Offer offer = client_->offer(bytes);
      if (offer.status == OfferStatus::accepted) {
        std::lock_guard lock(mutex_);
        offered_[offer.seq] = request;
        return offer.seq;
      }
      if (offer.status != OfferStatus::back_pressured || Clock::now() >= until) return 0;
      std::unique_lock lock(mutex_);
      const auto acked = acked_.size();
      changed_.wait_for(lock, 50ms, [&] { return acked_.size() != acked; });
    }
  }

  std::uint64_t offer_put(const std::string& key, const std::string& value, Ms timeout) {
    return offer(make_request(KvOp::put, key, value), timeout);
  }

  /// Waits until every seq offered so far has a fate; true if each one was applied.
  bool wait_all_acked(Ms timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return acked_.size() + failed_.size() >= offered_.size(); });
    return acked_.size() == offered_.size();
  }

  /// Puts one key and waits for its acknowledgement.
  bool put(const std::string& key, const std::string& value, Ms timeout) {
    const auto seq = offer_put(key, value, timeout);
    if (seq == 0) return false;
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return acked_.contains(seq); });
  }

  /// Reads every key. Every get is offered at once; a get whose reply has not come within reply_timeout() is
  /// asked again under a new request id (egress can be lost across a failover). Keys missing from the result
  /// got no reply before `timeout`.
  std::map<std::string, KvReply> get_all(const std::vector<std::string>& keys, Ms timeout) {
    std::map<std::string, KvReply> results;
    std::vector<std::string> remaining = keys;
    const auto until = Clock::now() + timeout;
    while (!remaining.empty() && Clock::now() < until) {
      std::map<std::uint64_t, std::string> pending;  // request id -> key
      for (const auto& key : remaining) {
        std::uint64_t id = 0;
        if (offer(make_request(KvOp::get, key), std::chrono::duration_cast<Ms>(until - Clock::now()), &id) == 0) break;
        pending[id] = key;
      }
      {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, std::min(reply_timeout(), std::chrono::duration_cast<Ms>(until - Clock::now())), [&] {
          return std::all_of(pending.begin(), pending.end(),
                             [&](const auto& entry) { return replies_.contains(entry.first); });
        });
        remaining.clear();
        for (const auto& [id, key] : pending) {
          const auto reply = replies_.find(id);
          if (reply != replies_.end()) {
            results[key] = reply->second;
          } else if (!results.contains(key)) {
            remaining.push_back(key);
          }
        }
      }
      if (!remaining.empty()) {
        ++get_retries_;
        std::printf("[ info ] %zu gets without a reply after %lld ms: asking again\n", remaining.size(),
                    static_cast<long long>(reply_timeout().count()));
      }
    }
    return results;
  }

  std::optional<KvReply> reply_to(std::uint64_t seq) {
    std::lock_guard lock(mutex_);
    const auto request = offered_.find(seq);
    if (request == offered_.end()) return std::nullopt;
    const auto reply = replies_.find(request->second.request_id);
    if (reply == replies_.end()) return std::nullopt;
    return reply->second;
  }

  std::size_t acked() const {
    std::lock_guard lock(mutex_);
    return acked_.size();
  }
  std::set<std::uint64_t> acked_seqs() const {
    std::lock_guard lock(mutex_);
    return acked_;
  }
  /// The seqs acknowledged with no log position: by a session reply, which says how far the cluster had applied
  /// the session before the client (re)attached.
  std::set<std::uint64_t> acked_by_open() const {
    std::lock_guard lock(mutex_);
    return acked_by_open_;
  }
  std::map<std::uint64_t, std::string> failures() const {
    std::lock_guard lock(mutex_);
    return failed_;
  }
  std::optional<KvRequest> request(std::uint64_t seq) const {
    std::lock_guard lock(mutex_);
    const auto found = offered_.find(seq);
    if (found == offered_.end()) return std::nullopt;
    return found->second;
  }
  int get_retries() const { return get_retries_; }
  std::vector<std::pair<std::uint64_t, SessionChange>> sessions() const {
    std::lock_guard lock(mutex_);
    return sessions_;
  }
  std::vector<EgressRecord> egress() const {
    std::lock_guard lock(mutex_);
    return egress_;
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> egress_gaps() const {
    std::lock_guard lock(mutex_);
    return egress_gaps_;
  }

  /// From now on, remembers when the first acknowledgement arrives after the client has heard of a leader other
  /// than `old_leader`.
  void watch_for_new_leader(std::uint32_t old_leader) {
    std::lock_guard lock(mutex_);
    old_leader_ = old_leader;
    new_leader_seen_ = false;
    first_ack_under_new_leader_.reset();
    session_after_mark_.reset();
    states_after_mark_.clear();
    mark_ = Clock::now();
  }
  std::optional<Clock::time_point> session_after_mark() const {
    std::lock_guard lock(mutex_);
    return session_after_mark_;
  }
  /// The client's state changes since watch_for_new_leader(), with their times and reasons.
  std::string states_after_mark() const {
    std::lock_guard lock(mutex_);
    return states_after_mark_;
  }
  std::optional<Clock::time_point> first_ack_under_new_leader() const {
    std::lock_guard lock(mutex_);
    return first_ack_under_new_leader_;
  }

  // ClientListener (on the client's I/O thread)
  void on_state(ClientState state, cohort::Reason /*code*/, std::string_view reason) override {
    std::lock_guard lock(mutex_);
    if (old_leader_ != 0)
      states_after_mark_ += fmt::format("+{} ms {} ({}); ", ms_since(mark_), cohort::to_string(state), reason);
  }
  void on_session(std::uint64_t session_id, SessionChange change) override {
    std::lock_guard lock(mutex_);
    sessions_.emplace_back(session_id, change);
    if (old_leader_ != 0 && !session_after_mark_) session_after_mark_ = Clock::now();
  }
  void on_leader(std::uint32_t leader_id, std::uint64_t /*term*/) override {
    std::lock_guard lock(mutex_);
    if (old_leader_ != 0 && leader_id != old_leader_) new_leader_seen_ = true;
  }
  void on_applied(std::uint64_t seq, std::uint64_t position) override {
    std::lock_guard lock(mutex_);
    acked_.insert(seq);
    if (position == 0) acked_by_open_.insert(seq);
    if (new_leader_seen_ && !first_ack_under_new_leader_) first_ack_under_new_leader_ = Clock::now();
    changed_.notify_all();
  }
  void on_rejected(std::uint64_t seq, cohort::Reason /*code*/, std::string_view reason) override {
    std::lock_guard lock(mutex_);
    failed_[seq] = "rejected: " + std::string(reason);
    changed_.notify_all();
  }
  void on_unknown(std::uint64_t seq, cohort::Reason /*code*/, std::string_view reason) override {
    std::lock_guard lock(mutex_);
    failed_[seq] = "unknown: " + std::string(reason);
    changed_.notify_all();
  }
  void on_egress(std::uint64_t egress_seq, std::span<const std::byte> message) override {
    auto reply = services::decode_kv_reply(message);
    std::lock_guard lock(mutex_);
    const std::uint64_t session = sessions_.empty() ? 0 : sessions_.back().first;
    egress_.push_back(EgressRecord{session, egress_seq, reply ? reply->request_id : 0});
    if (!reply) {
      bad_replies_.push_back(reply.error());
      return;
    }
    replies_[reply->request_id] = std::move(reply).value();
    changed_.notify_all();
  }
  void on_egress_gap(std::uint64_t from, std::uint64_t to) override {
    std::lock_guard lock(mutex_);
    egress_gaps_.emplace_back(from, to);
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::uint64_t, KvRequest> offered_;  // by seq
  std::set<std::uint64_t> acked_;
  std::set<std::uint64_t> acked_by_open_;
  std::map<std::uint64_t, std::string> failed_;  // seq -> why it was not applied
  std::map<std::uint64_t, KvReply> replies_;     // by request id
  std::vector<std::string> bad_replies_;
  std::vector<std::pair<std::uint64_t, SessionChange>> sessions_;  // every on_session, in order
  std::vector<EgressRecord> egress_;                               // every egress delivered, in order
  std::vector<std::pair<std::uint64_t, std::uint64_t>> egress_gaps_;
  std::uint32_t old_leader_ = 0;
  bool new_leader_seen_ = false;
  std::optional<Clock::time_point> first_ack_under_new_leader_;
  Clock::time_point mark_;
  std::optional<Clock::time_point> session_after_mark_;
  std::string states_after_mark_;
  std::uint64_t next_request_id_ = 1;  // the application's thread only
  int get_retries_ = 0;
  std::unique_ptr<Client> client_;  // last: destroyed first
};

/// Offers numbered puts through `writer` as fast as its buffer allows, on a thread of its own, until stopped. A put
/// refused for back-pressure is offered again; the stream ends early only if the client closes.
class PutStream {
 public:
  explicit PutStream(KvClient& writer) : writer_(writer), thread_([this](const std::stop_token& stop) { run(stop); }) {}

  /// Stops and joins the thread; returns false if the client closed under the stream.
  bool stop() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
    return !client_closed_;
  }
  std::uint64_t offered() const { return offered_; }

 private:
  void run(const std::stop_token& stop) {
    std::uint64_t n = 0;
    while (!stop.stop_requested()) {
      if (writer_.offer_put(fmt::format("k{}", n), value_for(n), 500ms) != 0) {
        ++offered_;
        ++n;
      } else if (writer_.client().state() == ClientState::closed) {
        client_closed_ = true;
        return;
      }
    }
  }

  KvClient& writer_;
  std::atomic<std::uint64_t> offered_{0};
  std::atomic<bool> client_closed_{false};
  std::jthread thread_;  // last: started once the counters exist
};

// --- the cluster ----------------------------------------------------------------------------------------------

struct NodeProcess {
  std::uint32_t id = 0;
  std::uint16_t peer_port = 0;
  std::uint16_t client_port = 0;
  std::uint16_t admin_port = 0;
  std::filesystem::path data_dir;
  std::unique_ptr<Process> process;
  int starts = 0;

  std::string peer() const { return loopback(peer_port); }
  std::string client() const { return loopback(client_port); }
  std::string admin() const { return loopback(admin_port); }
  bool running() const { return process && !process->wait_exit(0ms); }
};

/// Interrupts a running `cohort stream` (ClusterTest::stream_arguments(); it drains, then asks the ledger) and checks
/// its summary: exit status 0, and every accepted message (more than 1,000) applied exactly once by the
/// ledger's record, in the one session the client opened (never replaced). `out` receives the summary.
inline void stop_stream_expecting_exactly_once(Process& stream, std::string& out) {
  stream.signal(SIGINT);
  const auto status = stream.wait_exit(Ms(40'000 * slowdown()));
  ASSERT_TRUE(status) << "cohort stream did not finish; its stderr:\n" << stream.stderr_text();
  out = stream.stdout_text();
  std::printf("[ info ] cohort stream's summary: %s", out.c_str());
  EXPECT_EQ(*status, 0) << "cohort stream failed";
  ASSERT_FALSE(out.empty());
  EXPECT_NE(out.find("\"ok\":true"), std::string::npos);
  const auto accepted = json_number(out, "accepted");
  ASSERT_TRUE(accepted);
  EXPECT_GT(*accepted, 1000);
  EXPECT_EQ(json_number(out, "applied"), accepted) << "accepted messages not applied";
  EXPECT_EQ(json_number(out, "lost"), 0);
  EXPECT_EQ(json_number(out, "duplicated"), 0);
  EXPECT_EQ(json_number(out, "unknown"), 0);
  EXPECT_EQ(json_number(out, "rejected"), 0);
  EXPECT_EQ(json_number(out, "pending"), 0);
  EXPECT_EQ(json_number(out, "distinct"), accepted) << "the ledger's count of distinct numbers";
  EXPECT_EQ(json_number(out, "missing"), 0);
  EXPECT_EQ(json_number(out, "data_loss"), 0);
  EXPECT_EQ(json_number(out, "opened"), 1);
  EXPECT_EQ(json_number(out, "replaced"), 0);
}

class ClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!HasFailure()) return;
    for (const auto& node : nodes_) {
      if (!node.process) continue;
      const std::string log = without_client_connections(node.process->stderr_text());
      std::printf("---- last log lines of node %u (run %d), client and admin connections left out ----\n%s\n", node.id,
                  node.starts, log.substr(log.size() > 6000 ? log.size() - 6000 : 0).c_str());
    }
    // COHORT_TEST_KEEP_LOGS=<dir>: every node's whole output, every run of it, kept there (the test's own directory
    // goes with it).
    if (const char* keep = std::getenv("COHORT_TEST_KEEP_LOGS")) {
      const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
      const auto to =
          std::filesystem::path(keep) / fmt::format("{}.{}-{}", test->test_suite_name(), test->name(),
                                                    std::chrono::system_clock::now().time_since_epoch().count());
      std::error_code error;
      std::filesystem::create_directories(to, error);
      for (const auto& entry : std::filesystem::directory_iterator(dir_.path(), error))
        if (entry.is_regular_file()) std::filesystem::copy_file(entry.path(), to / entry.path().filename(), error);
      std::printf("---- every node's whole output kept in %s ----\n", to.c_str());
    }
  }

  /// A node's log without the lines of client and admin connections ("connection 12 with ... established: admin",
  /// then every line of connection 12; the status polls of every wait make most of a log), so that the end of the
  /// dump shows what the cluster did.
  static std::string without_client_connections(const std::string& log) {
    std::string kept;
    std::set<std::string> hidden;  // "connection 12 "
    std::size_t begin = 0;
    while (begin < log.size()) {
      std::size_t end = log.find('\n', begin);
      end = end == std::string::npos ? log.size() : end + 1;
      const std::string_view line(log.data() + begin, end - begin);
      begin = end;
      const auto at = line.find("] connection ");
      if (at != std::string_view::npos) {
        const auto id_end = line.find(' ', at + 13);
        const std::string id(line.substr(at + 2, id_end == std::string_view::npos ? 0 : id_end + 1 - (at + 2)));
        if (line.find("established: admin") != std::string_view::npos ||
            line.find("established: client") != std::string_view::npos)
          hidden.insert(id);
        if (hidden.count(id) != 0) continue;
      }
      if (line.find("client connection") != std::string_view::npos) continue;
      kept.append(line);
    }
    return kept;
  }

  /// Chooses `count` nodes' fresh ports and directories without starting them (nothing listens on their ports).
  void plan_nodes(std::size_t count) {
    const auto ports = free_ports(3 * count);
    nodes_.clear();
    for (std::size_t i = 0; i < count; ++i) {
      NodeProcess node;
      node.id = static_cast<std::uint32_t>(i + 1);
      node.peer_port = ports[3 * i];
      node.client_port = ports[3 * i + 1];
      node.admin_port = ports[3 * i + 2];
      node.data_dir = dir_.path() / fmt::format("n{}", node.id);
      nodes_.push_back(std::move(node));
    }
  }

  /// Starts `count` nodes (three by default) on fresh ports; if a port was taken meanwhile ("Address already in
  /// use"), starts over on other ports.
  bool start_cluster(std::vector<std::string> extra = {}, std::size_t count = kNodes) {
    extra_ = std::move(extra);
    for (int attempt = 1; attempt <= 5; ++attempt) {
      plan_nodes(count);
      for (auto& node : nodes_) spawn(node);
      bool port_taken = false;
      bool failed = false;
      for (auto& node : nodes_) {
        if (await_start(node)) continue;
        failed = true;
        port_taken = port_taken || contains(node.process->stderr_text(), "Address already in use");
      }
      if (!failed) return true;
      if (!port_taken) {
        for (auto& node : nodes_)
          ADD_FAILURE() << "node " << node.id << " did not start; stderr:\n" << node.process->stderr_text();
        return false;
      }
      std::printf("[ info ] a port was taken (attempt %d); starting over on other ports\n", attempt);
    }
    ADD_FAILURE() << "could not find free ports in 5 attempts";
    return false;
  }

  std::vector<std::string> args(const NodeProcess& node) const {
    std::vector<std::string> args = {"--node-id",  std::to_string(node.id), "--cluster-id", std::to_string(kClusterId),
                                     "--data-dir", node.data_dir.string()};
    for (const auto& member : nodes_) {
      const std::string peer = member.id == node.id || !peer_route_ ? member.peer() : peer_route_(node, member);
      args.push_back("--member");
      args.push_back(fmt::format("{},{},{},{}", member.id, peer, member.client(), member.admin()));
    }
    args.insert(args.end(), extra_.begin(), extra_.end());
    // COHORT_TEST_NODE_ARGS: more arguments for every node, split at spaces ("--log-level debug").
    if (const char* more = std::getenv("COHORT_TEST_NODE_ARGS")) {
      const std::string_view text(more);
      std::size_t begin = 0;
      while (begin < text.size()) {
        const std::size_t end = std::min(text.find(' ', begin), text.size());
        if (end > begin) args.emplace_back(text.substr(begin, end - begin));
        begin = end + 1;
      }
    }
    return args;
  }

  void spawn(NodeProcess& node) {
    node.process.reset();  // reaps the previous process (killing it if it still runs)
    ++node.starts;
    node.process = std::make_unique<Process>(COHORTD_PATH, args(node), dir_.path(),
                                             fmt::format("node{}-run{}", node.id, node.starts));
  }

  bool await_start(NodeProcess& node) { return node.process->wait_stdout("clients on ", deadline()).has_value(); }

  NodeProcess& node(std::uint32_t id) { return nodes_.at(id - 1); }

  /// Restarts a stopped node on its ports and data directory.
  bool restart(std::uint32_t id) {
    spawn(node(id));
    if (await_start(node(id))) return true;
    ADD_FAILURE() << "node " << id << " did not restart; stderr:\n" << node(id).process->stderr_text();
    return false;
  }

  std::optional<int> kill_node(std::uint32_t id) {
    node(id).process->signal(SIGKILL);
    return node(id).process->wait_exit(deadline());
  }

  StatusResult status(std::uint32_t id, Ms timeout = 300ms, bool with_state_hash = false) {
    return query_status(node(id).client(), kClusterId, timeout * slowdown(), with_state_hash);
  }

  /// Where an admin command for node `id` goes: its admin endpoint.
  AdminTarget admin_target(std::uint32_t id) const {
    return AdminTarget{nodes_.at(id - 1).admin(), kClusterId, id, {}, deadline()};
  }

  /// Every node's id but `excluded`.
  std::vector<std::uint32_t> ids_except(std::uint32_t excluded) const {
    std::vector<std::uint32_t> ids;
    for (const auto& n : nodes_)
      if (n.id != excluded) ids.push_back(n.id);
    return ids;
  }

  std::vector<std::uint32_t> running_ids() const {
    std::vector<std::uint32_t> ids;
    for (const auto& n : nodes_)
      if (n.running()) ids.push_back(n.id);
    return ids;
  }

  /// Polls the nodes `ids` (default: every running one) until exactly one of the reachable ones leads, every
  /// reachable node reports the leader's term, and a majority of the cluster is reachable.
  std::optional<NodeStatus> wait_leader(Ms timeout, std::vector<std::uint32_t> ids = {}, Ms period = 5ms) {
    if (ids.empty()) ids = running_ids();
    std::optional<NodeStatus> found;
    std::string last;
    eventually(
        [&] {
          std::vector<NodeStatus> reachable;
          for (const auto id : ids) {
            auto result = status(id);
            if (result.ok) reachable.push_back(result.status);
          }
          last.clear();
          for (const auto& s : reachable) last += fmt::format("node {} {} t{}; ", s.node_id, s.role, s.term);
          if (reachable.size() < nodes_.size() / 2 + 1) return false;
          const auto leaders =
              std::count_if(reachable.begin(), reachable.end(), [](const NodeStatus& s) { return s.role == "leader"; });
          if (leaders != 1) return false;
          const auto leader =
              *std::find_if(reachable.begin(), reachable.end(), [](const NodeStatus& s) { return s.role == "leader"; });
          if (!std::all_of(reachable.begin(), reachable.end(),
                           [&](const NodeStatus& s) { return s.term == leader.term; }))
            return false;
          found = leader;
          return true;
        },
        timeout, period);
    if (!found) ADD_FAILURE() << "no single leader within " << timeout.count() << " ms; last seen: " << last;
    return found;
  }

  /// Polls the nodes `ids` until each has applied everything the leader (one of them) has committed, then checks
  /// that their state hashes, now at one log position, are equal.
  bool wait_converged(std::vector<std::uint32_t> ids, Ms timeout) {
    std::string last;
    bool diverged = false;
    const bool converged = eventually(
        [&] {
          std::vector<NodeStatus> statuses;
          for (const auto id : ids) {
            auto result = status(id, 300ms, true);
            if (!result.ok) {
              last = fmt::format("node {}: {}", id, result.error);
              return false;
            }
            statuses.push_back(result.status);
          }
          // A node computes its hash at most every 100 ms while it applies: ask again until every answer has one.
          for (const auto& s : statuses)
            if (!s.state_hash_included) return false;
          last.clear();
          for (const auto& s : statuses)
            last += fmt::format("node {} {} commit {} applied {} hash {:016x}; ", s.node_id, s.role, s.commit_index,
                                s.applied_index, s.state_hash);
          const auto leader =
              std::find_if(statuses.begin(), statuses.end(), [](const NodeStatus& s) { return s.role == "leader"; });
          if (leader == statuses.end()) return false;
          const bool caught_up = std::all_of(statuses.begin(), statuses.end(), [&](const NodeStatus& s) {
            return s.applied_index == leader->commit_index;
          });
          if (!caught_up) return false;
          // Equal applied indexes: the hashes describe the same log prefix and must be equal.
          diverged = !std::all_of(statuses.begin(), statuses.end(),
                                  [&](const NodeStatus& s) { return s.state_hash == leader->state_hash; });
          return true;
        },
        timeout, 20ms);
    if (!converged) ADD_FAILURE() << "the replicas did not catch up within " << timeout.count() << " ms: " << last;
    if (diverged) ADD_FAILURE() << "replicas at the same applied index have different state hashes: " << last;
    return converged && !diverged;
  }

  /// `cohort stream`'s arguments for a stream at 1,000 messages a second to this cluster, ended by SIGINT
  /// (stop_stream_expecting_exactly_once).
  std::vector<std::string> stream_arguments() const {
    return {"stream",
            "--members",
            joined(client_endpoints()),
            "--cluster-id",
            std::to_string(kClusterId),
            "--count",
            "1000000",
            "--rate",
            "1000",
            "--json",
            "--drain",
            std::to_string(20 * slowdown())};
  }

  std::vector<std::string> client_endpoints() const {
    std::vector<std::string> endpoints;
    for (const auto& n : nodes_) endpoints.push_back(n.client());
    return endpoints;
  }

  /// Reads `expected` back through a fresh client and checks every value.
  void expect_values(const std::map<std::string, std::string>& expected) {
    KvClient reader(client_endpoints());
    ASSERT_TRUE(reader.client().wait_connected(deadline())) << "the reader did not connect";
    std::vector<std::string> keys;
    for (const auto& [key, value] : expected) keys.push_back(key);
    const auto replies = reader.get_all(keys, deadline());
    std::size_t wrong = 0;
    for (const auto& [key, value] : expected) {
      const auto reply = replies.find(key);
      if (reply == replies.end()) {
        if (++wrong <= 10) ADD_FAILURE() << "no reply to get " << key;
      } else if (reply->second.status != KvStatus::ok || reply->second.value != value) {
        if (++wrong <= 10)
          ADD_FAILURE() << "get " << key << ": " << services::to_string(reply->second.status) << " '"
                        << reply->second.value << "', expected '" << value << "'";
      }
    }
    EXPECT_EQ(wrong, 0U) << "of " << expected.size() << " keys";
    std::printf("[ info ] read back %zu keys (%d rounds of gets asked again)\n", expected.size(), reader.get_retries());
  }

  TempDir dir_;
  std::vector<NodeProcess> nodes_;
  std::vector<std::string> extra_;
  /// If set: the peer endpoint `node` is given for another `member`, instead of the member's own (its own entry is
  /// always its real one, where it listens). Member ids and client endpoints stay alike in every node's list: the
  /// handshake compares ids, so the nodes agree. partition_test.cpp routes each ordered pair through a fault proxy.
  std::function<std::string(const NodeProcess& node, const NodeProcess& member)> peer_route_;
};

}  // namespace cohort::testing
