// cohort-kv: the key-value store's command-line client. One request per invocation (put, get, delete, cas), a
// bulk writer and checker for demos and tests (load, verify), and the cluster's status as each node sees it.
// Every request goes through the log, reads included, so what `get` prints is linearizable.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include "cohort/admin.h"
#include "cohort/client.h"
#include "cohort/services/kv_codec.h"

namespace {

using namespace std::chrono_literals;
using cohort::services::KvOp;
using cohort::services::KvReply;
using cohort::services::KvRequest;
using cohort::services::KvStatus;
using Clock = std::chrono::steady_clock;

// A live progress line rewrites itself on a terminal; elsewhere (a log file) each update is a line of its own.
bool interactive() { return isatty(fileno(stderr)) != 0; }
const char* line_start() { return interactive() ? "\r\033[K" : ""; }

// Collects acknowledgements and replies from the client's I/O thread for the thread that waits on them.
class Listener final : public cohort::ClientListener {
 public:
  explicit Listener(bool verbose) : verbose_(verbose) {}

  void on_state(cohort::ClientState state, cohort::Reason /*code*/, std::string_view reason) override {
    if (verbose_)
      std::fprintf(stderr, "%sclient %s: %.*s\n", line_start(), cohort::to_string(state),
                   static_cast<int>(reason.size()), reason.data());
  }
  void on_leader(std::uint32_t leader, std::uint64_t term) override {
    leader_ = leader;
    if (verbose_)
      std::fprintf(stderr, "%sleader is node %u (term %llu)\n", line_start(), leader,
                   static_cast<unsigned long long>(term));
  }
  void on_applied(std::uint64_t seq, std::uint64_t /*position*/) override {
    const std::lock_guard lock(mutex_);
    applied_.push_back(seq);
    ++acknowledged_;
    changed_.notify_all();
  }
  void on_rejected(std::uint64_t seq, cohort::Reason /*code*/, std::string_view reason) override {
    std::fprintf(stderr, "message %llu rejected: %.*s\n", static_cast<unsigned long long>(seq),
                 static_cast<int>(reason.size()), reason.data());
  }
  void on_egress(std::uint64_t /*egress_seq*/, std::span<const std::byte> message) override {
    auto reply = cohort::services::decode_kv_reply(message);
    if (!reply) return;
    const std::lock_guard lock(mutex_);
    replies_[reply->request_id] = std::move(*reply);
    changed_.notify_all();
  }

  std::optional<KvReply> wait_reply(std::uint64_t id, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return replies_.contains(id); })) return std::nullopt;
    KvReply reply = std::move(replies_.at(id));
    replies_.erase(id);
    return reply;
  }
  std::uint64_t acknowledged() {
    const std::lock_guard lock(mutex_);
    return acknowledged_;
  }
  std::uint32_t leader() const { return leader_; }

 private:
  bool verbose_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::uint64_t> applied_;
  std::uint64_t acknowledged_ = 0;
  std::map<std::uint64_t, KvReply> replies_;
  std::atomic<std::uint32_t> leader_{0};
};

std::vector<std::byte> encode(const KvRequest& request) {
  auto bytes = cohort::services::encode_kv_request(request);
  if (!bytes) throw std::runtime_error(bytes.error());
  return std::move(*bytes);
}

// Offers until accepted (waiting while the buffer is full).
std::uint64_t offer(cohort::Client& client, const std::vector<std::byte>& bytes) {
  for (;;) {
    const cohort::Offer offer = client.offer(bytes);
    if (offer.status == cohort::OfferStatus::accepted) return offer.seq;
    if (offer.status != cohort::OfferStatus::back_pressured)
      throw std::runtime_error(fmt::format("offer refused: {}", cohort::to_string(offer.status)));
    std::this_thread::sleep_for(1ms);
  }
}

// One request, one reply. A reply lost in a failover (egress is not resent by this version) is asked for
// again with a new request id; only reads and idempotent writes are repeated that way.
std::optional<KvReply> request(cohort::Client& client, Listener& listener, KvRequest kv, std::uint64_t& next_id,
                               Clock::time_point deadline, bool repeatable) {
  while (Clock::now() < deadline) {
    kv.request_id = next_id++;
    offer(client, encode(kv));
    if (auto reply = listener.wait_reply(
            kv.request_id,
            repeatable ? 2000ms : std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())))
      return reply;
    if (!repeatable) break;
  }
  return std::nullopt;
}

int print_reply(const std::optional<KvReply>& reply) {
  if (!reply) {
    std::fprintf(stderr, "no reply within the deadline\n");
    return 1;
  }
  switch (reply->status) {
    case KvStatus::ok: std::printf("%s\n", reply->value.empty() ? "ok" : reply->value.c_str()); return 0;
    case KvStatus::not_found: std::printf("(not found)\n"); return 3;
    case KvStatus::cas_failed: std::printf("cas failed: current value %s\n", reply->value.c_str()); return 4;
    case KvStatus::bad_request: std::fprintf(stderr, "bad request: %s\n", reply->value.c_str()); return 2;
  }
  return 1;
}

std::string key_of(const std::string& prefix, std::uint64_t i) { return fmt::format("{}{}", prefix, i); }
std::string value_of(std::uint64_t i) { return fmt::format("value-{}", i); }

// Writes count keys as fast as the client buffer allows, with a live progress line; every write is
// acknowledged before it returns.
int load(cohort::Client& client, Listener& listener, const std::string& prefix, std::uint64_t count, std::uint64_t rate,
         Clock::time_point deadline) {
  const auto start = Clock::now();
  auto last_print = start;
  std::uint64_t offered = 0;
  while (listener.acknowledged() < count && Clock::now() < deadline) {
    // With a rate, offer only as many as the elapsed time allows.
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const std::uint64_t allowed =
        rate == 0 ? count
                  : std::min<std::uint64_t>(count, static_cast<std::uint64_t>(elapsed * static_cast<double>(rate)) + 1);
    while (offered < allowed) {
      KvRequest kv;
      kv.op = KvOp::put;
      kv.request_id = 1'000'000'000 + offered;
      kv.key = key_of(prefix, offered);
      kv.value = value_of(offered);
      const cohort::Offer offer = client.offer(encode(kv));
      if (offer.status != cohort::OfferStatus::accepted) break;
      ++offered;
    }
    std::this_thread::sleep_for(2ms);
    if (Clock::now() - last_print > 100ms) {
      last_print = Clock::now();
      const double seconds = std::chrono::duration<double>(last_print - start).count();
      std::fprintf(stderr, "%swritten %llu/%llu acknowledged (%s, leader node %u, %.0f writes/s)%s", line_start(),
                   static_cast<unsigned long long>(listener.acknowledged()), static_cast<unsigned long long>(count),
                   cohort::to_string(client.state()), listener.leader(),
                   static_cast<double>(listener.acknowledged()) / seconds, interactive() ? "" : "\n");
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr, "%s", line_start());
  std::printf("acknowledged %llu of %llu writes in %.2f s\n", static_cast<unsigned long long>(listener.acknowledged()),
              static_cast<unsigned long long>(count), seconds);
  return listener.acknowledged() >= count ? 0 : 1;
}

int verify(cohort::Client& client, Listener& listener, const std::string& prefix, std::uint64_t count,
           Clock::time_point deadline) {
  std::uint64_t next_id = 1;
  std::uint64_t good = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    KvRequest kv;
    kv.op = KvOp::get;
    kv.key = key_of(prefix, i);
    const auto reply = request(client, listener, kv, next_id, deadline, true);
    if (!reply) {
      std::fprintf(stderr, "no reply for %s\n", kv.key.c_str());
      break;
    }
    if (reply->status == KvStatus::ok && reply->value == value_of(i))
      ++good;
    else
      std::fprintf(stderr, "%s: expected %s, got %s %s\n", kv.key.c_str(), value_of(i).c_str(),
                   cohort::services::to_string(reply->status), reply->value.c_str());
  }
  std::printf("verified %llu/%llu keys\n", static_cast<unsigned long long>(good),
              static_cast<unsigned long long>(count));
  return good == count ? 0 : 1;
}

// Exits 1 if a member is unreachable, reports a configuration problem, or lists other members than the rest.
int status(const std::vector<std::string>& members, std::uint64_t cluster_id) {
  int unreachable = 0;
  int troubled = 0;
  std::set<std::uint64_t> configurations;
  for (const std::string& member : members) {
    const cohort::StatusResult result = cohort::query_status(member, cluster_id, 1000ms, true);
    if (!result.ok) {
      std::printf("%-21s unreachable (%s)\n", member.c_str(), result.error.c_str());
      ++unreachable;
      continue;
    }
    const cohort::NodeStatus& s = result.status;
    std::printf(
        "%-21s node %u %-13s %-10s term %llu leader %u commit %llu applied %llu hash %s sessions %llu "
        "members %s (configuration %016llx)\n",
        member.c_str(), s.node_id, s.role.c_str(), s.standing.c_str(), static_cast<unsigned long long>(s.term),
        s.leader_id, static_cast<unsigned long long>(s.commit_index), static_cast<unsigned long long>(s.applied_index),
        // A node computes it at most ten times a second while it applies: "-" if this answer came between two.
        s.state_hash_included ? fmt::format("{:016x}", s.state_hash).c_str() : "-",
        static_cast<unsigned long long>(s.open_sessions), fmt::format("[{}]", fmt::join(s.members, ",")).c_str(),
        static_cast<unsigned long long>(s.configuration_id));
    for (const std::string& problem : s.problems) std::printf("%-21s   problem: %s\n", "", problem.c_str());
    if (s.entry_faults != 0)
      std::printf("%-21s   %u committed entries could not be applied as they are (see the node's log)\n", "",
                  s.entry_faults);
    if (!s.problems.empty()) ++troubled;
    configurations.insert(s.configuration_id);
  }
  if (configurations.size() > 1)
    std::printf("the members disagree on the member list: %zu configurations (every node must list the same)\n",
                configurations.size());
  return unreachable == 0 && troubled == 0 && configurations.size() <= 1 ? 0 : 1;
}

// The first credential in a file of the nodes' credentials_file format: a line's bytes, without a trailing '\r';
// empty lines and lines starting with '#' skipped. Throws if there is none.
std::string first_credential(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line.front() != '#') return line;
  }
  throw std::runtime_error(fmt::format("{} holds no credential", path));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cohort-kv: the Cohort key-value store's command-line client"};
  app.require_subcommand(1);
  std::uint64_t cluster_id = 0;
  std::vector<std::string> members;
  int timeout_s = 30;
  bool verbose = false;
  app.add_option("--cluster-id", cluster_id, "the cluster's id")->required();
  app.add_option("--members", members, "client endpoints of the members, host:port,...")->required()->delimiter(',');
  app.add_option("--timeout", timeout_s, "seconds to wait for the whole command");
  app.add_flag("-v,--verbose", verbose, "report connection changes on stderr");
  std::string credential_file;
  app.add_option("--credential-file", credential_file,
                 "present the first credential in FILE (one per line, '#' starts a comment), for a cluster whose "
                 "nodes have a credentials_file")
      ->check(CLI::ExistingFile);

  std::string key;
  std::string value;
  std::string expected;
  std::uint64_t ttl_ms = 0;
  bool absent = false;
  std::string prefix = "key-";
  std::uint64_t count = 1000;
  auto* put = app.add_subcommand("put", "store VALUE under KEY");
  put->add_option("key", key)->required();
  put->add_option("value", value)->required();
  put->add_option("--ttl-ms", ttl_ms, "delete the key this many milliseconds (cluster time) later");
  auto* get = app.add_subcommand("get", "print KEY's value");
  get->add_option("key", key)->required();
  auto* del = app.add_subcommand("delete", "delete KEY");
  del->add_option("key", key)->required();
  auto* cas = app.add_subcommand("cas", "set KEY to NEW only if it holds EXPECTED (or, with --absent, does not exist)");
  cas->add_option("key", key)->required();
  cas->add_option("expected", expected);
  cas->add_option("new", value);
  cas->add_flag("--absent", absent, "the key must not exist");
  auto* load_cmd = app.add_subcommand("load", "write COUNT keys PREFIX0.. with a live progress line");
  load_cmd->add_option("--count", count);
  load_cmd->add_option("--prefix", prefix);
  std::uint64_t rate = 0;
  load_cmd->add_option("--rate", rate, "writes per second (0: as fast as the client buffer allows)");
  auto* verify_cmd = app.add_subcommand("verify", "read back the keys `load` wrote and check every value");
  verify_cmd->add_option("--count", count);
  verify_cmd->add_option("--prefix", prefix);
  auto* status_cmd = app.add_subcommand("status", "how each member sees the cluster");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;  // --help is not an error; bad arguments exit 2 (docs/operations.md)
  }
  try {
    if (status_cmd->parsed()) return status(members, cluster_id);
    const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    Listener listener(verbose);
    cohort::ClientOptions options;
    options.cluster_id = cluster_id;
    options.members = members;
    if (!credential_file.empty()) options.credential = first_credential(credential_file);
    options.max_buffered_messages = 4096;
    // The client gives up by itself, and its reason names the last failure (refused at X, no leader at Y, ...).
    options.connect_timeout = std::chrono::seconds(timeout_s);
    if (auto problems = cohort::validate(options)) {
      std::fprintf(stderr, "cohort-kv: %s\n", problems->c_str());
      return 2;
    }
    cohort::Client client(options, listener);
    if (!client.wait_connected(std::chrono::seconds(timeout_s) + std::chrono::seconds(1))) {
      std::fprintf(stderr, "cannot reach the cluster's leader: %s\n", client.state_reason().second.c_str());
      return 1;
    }
    int result = 0;
    if (load_cmd->parsed()) {
      result = load(client, listener, prefix, count, rate, deadline);
    } else if (verify_cmd->parsed()) {
      result = verify(client, listener, prefix, count, deadline);
    } else {
      KvRequest kv;
      kv.key = key;
      if (put->parsed()) {
        kv.op = ttl_ms > 0 ? KvOp::put_with_ttl : KvOp::put;
        kv.value = value;
        kv.ttl_ms = ttl_ms;
      } else if (get->parsed()) {
        kv.op = KvOp::get;
      } else if (del->parsed()) {
        kv.op = KvOp::remove;
      } else {
        kv.op = KvOp::compare_and_set;
        if (absent) {  // cas KEY NEW --absent: the one positional after the key is the new value
          kv.value = value.empty() ? expected : value;
        } else {
          if (value.empty() && !cas->count("new")) {
            std::fprintf(stderr, "cas needs EXPECTED and NEW (or NEW and --absent)\n");
            return 2;
          }
          kv.value = value;
          kv.expected = expected;
        }
      }
      std::uint64_t next_id = 1;
      // Only a read is repeated if its reply is lost; a write's acknowledgement is its answer then.
      result = print_reply(request(client, listener, kv, next_id, deadline, kv.op == KvOp::get));
    }
    client.close(std::chrono::seconds(5));  // drains first
    return result;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cohort-kv: %s\n", error.what());
    return 1;
  }
}
