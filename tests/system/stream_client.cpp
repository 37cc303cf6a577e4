// cohort-stream-client: a test-only client (tests/system) that streams messages through the public cohort::Client
// and prints every event it hears, so a system test can run it as a real process, stop it (SIGSTOP), kill it, and
// read what it saw while it runs and after it is gone.
//
//   cohort-stream-client --cluster-id 42 --member 127.0.0.1:7201 --member 127.0.0.1:7202 --count 300 --rate 100
//
// It offers --count messages at --rate per second (0: as fast as the client buffer allows; while the buffer is
// full it waits and offers again), then waits until every accepted message has a fate (or --drain-timeout-ms
// passes), closes the client and exits: 0 if every accepted message had its fate before the close, 1 if the drain
// timed out (the close gave the rest `unknown`), 2 on bad arguments or an offer refused for good.
//
// Messages: --service kv (default) puts key "s<seq>" with value "v<seq>" and request id <seq>, seq being the
// client's seq for the message (they run 1, 2, 3...: the program checks it); --service counter adds 1 with
// request id <seq> (cohortd's built-in counter, src/services/counter_service.h).
//
// stdout, one line per event, each flushed at once (a reader sees it even if the process is killed right after):
//   accepted SEQ                     the client accepted message SEQ
//   applied SEQ                      its fates: exactly one per accepted seq
//   rejected SEQ REASON
//   unknown SEQ REASON
//   state STATE REASON               connecting, connected, reconnecting, closed
//   session ID opened|resumed|replaced
//   egress SEQ REQUEST_ID            an egress message (in the current session) and its reply's request id
//                                    ("?" if it does not decode)
//   egress_gap FROM TO               egress FROM..TO of the current session will never arrive
//   done accepted=A applied=B rejected=C unknown=D
// The client library's own log goes to stderr (ClientOptions::log); with --library-logging the program leaves the
// client's log options at their defaults (so a test can check that the library writes nothing to stdout).

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cohort/client.h"
#include "cohort/services/kv_codec.h"
#include "services/counter_service.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Prints the events (on the client's I/O thread) and counts the fates for the thread that waits on them.
class Printer final : public cohort::ClientListener {
 public:
  explicit Printer(bool kv) : kv_(kv) {}

  /// One line on stdout, flushed at once; lines from the two threads never interleave.
  void line(const std::string& text) {
    const std::lock_guard lock(print_mutex_);
    std::fputs(text.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

  void on_state(cohort::ClientState state, cohort::Reason /*code*/, std::string_view reason) override {
    line(fmt::format("state {} {}", cohort::to_string(state), reason));
  }
  void on_session(std::uint64_t session_id, cohort::SessionChange change) override {
    line(fmt::format("session {} {}", session_id, cohort::to_string(change)));
  }
  void on_applied(std::uint64_t seq, std::uint64_t /*position*/) override {
    line(fmt::format("applied {}", seq));
    count(applied_);
  }
  void on_rejected(std::uint64_t seq, cohort::Reason /*code*/, std::string_view reason) override {
    line(fmt::format("rejected {} {}", seq, reason));
    count(rejected_);
  }
  void on_unknown(std::uint64_t seq, cohort::Reason /*code*/, std::string_view reason) override {
    line(fmt::format("unknown {} {}", seq, reason));
    count(unknown_);
  }
  void on_egress(std::uint64_t egress_seq, std::span<const std::byte> message) override {
    std::optional<std::uint64_t> request_id;
    if (kv_) {
      if (const auto reply = cohort::services::decode_kv_reply(message)) request_id = reply->request_id;
    } else if (const auto reply = cohort::services::decode_counter_reply(message)) {
      request_id = reply->request_id;
    }
    line(request_id ? fmt::format("egress {} {}", egress_seq, *request_id) : fmt::format("egress {} ?", egress_seq));
  }
  void on_egress_gap(std::uint64_t from, std::uint64_t to) override { line(fmt::format("egress_gap {} {}", from, to)); }

  /// Waits until `accepted` messages have their fates; false if `timeout` passes first.
  bool wait_fates(std::uint64_t accepted, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return applied_ + rejected_ + unknown_ >= accepted; });
  }

  std::string summary(std::uint64_t accepted) {
    const std::lock_guard lock(mutex_);
    return fmt::format("done accepted={} applied={} rejected={} unknown={}", accepted, applied_, rejected_, unknown_);
  }

 private:
  void count(std::uint64_t& counter) {
    const std::lock_guard lock(mutex_);
    ++counter;
    changed_.notify_all();
  }

  const bool kv_;
  std::mutex print_mutex_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t applied_ = 0;
  std::uint64_t rejected_ = 0;
  std::uint64_t unknown_ = 0;
};

std::vector<std::byte> message_for(bool kv, std::uint64_t seq) {
  if (!kv) return cohort::services::encode_counter_request({cohort::services::CounterOp::add, seq, 1});
  cohort::services::KvRequest request;
  request.op = cohort::services::KvOp::put;
  request.request_id = seq;
  request.key = fmt::format("s{}", seq);
  request.value = fmt::format("v{}", seq);
  auto bytes = cohort::services::encode_kv_request(request);
  if (!bytes) throw std::runtime_error("cannot encode a kv put: " + bytes.error());
  return std::move(bytes).value();
}

int run(int argc, char** argv) {
  CLI::App app{"cohort-stream-client: stream messages to a Cohort cluster and print every client event (tests)"};
  std::uint64_t cluster_id = 0;
  std::vector<std::string> members;
  std::uint64_t count = 100;
  double rate = 0;
  std::string service = "kv";
  int drain_timeout_ms = 30'000;
  bool library_logging = false;
  app.add_option("--cluster-id", cluster_id, "the cluster's id")->required();
  app.add_option("--member", members, "a member's client endpoint, HOST:PORT; repeated for each")->required();
  app.add_option("--count", count, "messages to offer")->check(CLI::Range(std::uint64_t{0}, std::uint64_t{10'000'000}));
  app.add_option("--rate", rate, "messages per second (0: as fast as the client buffer allows)")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--service", service, "kv (puts of s<seq>) or counter (adds of 1)")
      ->check(CLI::IsMember({"kv", "counter"}));
  app.add_option("--drain-timeout-ms", drain_timeout_ms, "wait this long for the last fates after the last offer")
      ->check(CLI::Range(0, 3'600'000));
  app.add_flag("--library-logging", library_logging,
               "leave the client's log options at their defaults (default: its log goes to stderr)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;  // --help is not an error
  }
  const bool kv = service == "kv";
  Printer printer(kv);
  cohort::ClientOptions options;
  options.cluster_id = cluster_id;
  options.members = members;
  // stdout is the event stream: the client library's log goes to stderr.
  if (!library_logging) {
    options.log = cohort::stderr_log_sink("stream-client");
    options.log_level = cohort::LogLevel::info;
  }
  cohort::Client client(options, printer);

  // Paced from the previous offer, not from the start: after a pause (a SIGSTOP) the stream goes on at its rate
  // instead of catching up in a burst.
  const auto period = rate > 0 ? std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate))
                               : Clock::duration::zero();
  auto next = Clock::now();
  std::uint64_t accepted = 0;
  int status = 0;
  while (accepted < count) {
    if (rate > 0) {
      std::this_thread::sleep_until(next);
      next = std::max(next + period, Clock::now());
    }
    const std::uint64_t seq = accepted + 1;
    const cohort::Offer offer = client.offer(message_for(kv, seq));
    if (offer.status == cohort::OfferStatus::back_pressured) {
      std::this_thread::sleep_for(5ms);
      continue;
    }
    if (offer.status != cohort::OfferStatus::accepted) {
      std::fprintf(stderr, "cohort-stream-client: message %llu refused: %s\n", static_cast<unsigned long long>(seq),
                   cohort::to_string(offer.status));
      status = 2;
      break;
    }
    if (offer.seq != seq) {  // the key names the seq: they must agree
      std::fprintf(stderr, "cohort-stream-client: the client numbered message %llu as %llu\n",
                   static_cast<unsigned long long>(seq), static_cast<unsigned long long>(offer.seq));
      status = 2;
      break;
    }
    ++accepted;
    printer.line(fmt::format("accepted {}", seq));
  }
  if (!printer.wait_fates(accepted, std::chrono::milliseconds(drain_timeout_ms)) && status == 0) status = 1;
  client.close();  // what still has no fate gets `unknown`; the I/O thread is joined
  printer.line(printer.summary(accepted));
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cohort-stream-client: fatal: %s\n", error.what());
    return 2;
  }
}
