// counter-cli: sends one command to the counter cluster and prints the service's reply.
//
//   counter-cli --cluster-id 42 --members 127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203 add 5
//
// Exit status: 0 when the reply is printed, 1 when the service answered "error: ..." or no reply came in time.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <cohort/client.h>
#include <fmt/format.h>
#include <CLI/CLI.hpp>

namespace {

// Listener callbacks run on the client's I/O thread; main() waits for the first outcome under the mutex.
class ReplyListener final : public cohort::ClientListener {
 public:
  // The service answers each command with one egress message, and this session sends only one command.
  void on_egress(std::uint64_t /*egress_seq*/, std::span<const std::byte> message) override {
    finish(std::string(reinterpret_cast<const char*>(message.data()), message.size()), std::nullopt);
  }
  void on_rejected(std::uint64_t /*seq*/, cohort::Reason /*code*/, std::string_view reason) override {
    finish(std::nullopt, "the command was not applied: " + std::string(reason));
  }
  void on_state(cohort::ClientState state, cohort::Reason /*code*/, std::string_view reason) override {
    // Closed without our asking: the cluster refused us for good (e.g. another cluster id).
    if (state == cohort::ClientState::closed) finish(std::nullopt, "connection closed: " + std::string(reason));
  }

  /// The reply, or an error message; nullopt reply and nullopt error if nothing came within `timeout`.
  std::pair<std::optional<std::string>, std::optional<std::string>> wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    done_.wait_for(lock, timeout, [this] { return reply_ || error_; });
    return {reply_, error_};
  }

 private:
  void finish(std::optional<std::string> reply, std::optional<std::string> error) {
    {
      const std::lock_guard lock(mutex_);
      if (reply_ || error_) return;  // the first outcome wins
      reply_ = std::move(reply);
      error_ = std::move(error);
    }
    done_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable done_;
  std::optional<std::string> reply_;
  std::optional<std::string> error_;
};

}  // namespace

int main(int argc, char** argv) {
  cohort::ClientOptions options;
  std::vector<std::string> words;
  int timeout_ms = 10000;
  CLI::App app{"counter-cli: send one command to the example counter cluster and print its reply"};
  app.add_option("--cluster-id", options.cluster_id, "the cluster's id")->required();
  // One string, split below: a vector option would swallow the command words that follow it.
  std::string members;
  app.add_option("--members", members, "client endpoints HOST:PORT, comma-separated (any one will do)")->required();
  app.add_option("--timeout-ms", timeout_ms, "how long to wait for the reply")->check(CLI::PositiveNumber);
  app.add_option("command", words, "add N | get | reset-after MS  (use -- before a negative N)")->required();
  CLI11_PARSE(app, argc, argv);
  for (std::size_t at = 0; at <= members.size();) {
    const std::size_t comma = std::min(members.find(',', at), members.size());
    if (comma > at) options.members.push_back(members.substr(at, comma - at));
    at = comma + 1;
  }
  std::string command;
  for (const auto& word : words) command += (command.empty() ? "" : " ") + word;

  // Gives up by itself if no leader answers in time; its reason then names the last failure.
  options.connect_timeout = std::chrono::milliseconds(timeout_ms);
  if (auto problems = cohort::validate(options)) {
    std::fprintf(stderr, "counter-cli: %s\n", problems->c_str());
    return 2;
  }

  ReplyListener listener;
  cohort::Client client(options, listener);
  // The offer is buffered until the client has found the leader and opened a session, then sent; it is
  // applied once even if the client has to reconnect meanwhile.
  const auto offer = client.offer({reinterpret_cast<const std::byte*>(command.data()), command.size()});
  if (offer.status != cohort::OfferStatus::accepted) {
    std::fprintf(stderr, "counter-cli: command not accepted: %s\n", cohort::to_string(offer.status));
    return 1;
  }
  // A little longer than the client's own connect_timeout, so its reason arrives as the error.
  const auto [reply, error] = listener.wait(std::chrono::milliseconds(timeout_ms) + std::chrono::milliseconds(500));
  const std::string state = fmt::format("{}: {}", cohort::to_string(client.state()), client.state_reason().second);
  client.close();
  if (error) {
    std::fprintf(stderr, "counter-cli: %s\n", error->c_str());
    return 1;
  }
  if (!reply) {
    std::fprintf(stderr, "counter-cli: no reply within %d ms (the client was %s)\n", timeout_ms, state.c_str());
    return 1;
  }
  std::printf("%s\n", reply->c_str());
  return reply->starts_with("error:") ? 1 : 0;
}
