// The counter's logic. Every replica runs these callbacks on the same committed messages in the same order, so
// each one must compute the same result from its state and its arguments alone (see README.md, "Rules").

#include "counter_service.h"

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace counter {

namespace {

// The only timer this service arms. Re-arming an id replaces its deadline, which is what a second reset-after
// should do; the cluster drops a firing that an earlier arming had already queued.
constexpr cohort::TimerId kResetTimer = 1;
constexpr std::int64_t kMaxResetMs = std::int64_t{365} * 24 * 3600 * 1000;
constexpr std::size_t kSnapshotSize = 8;

std::string_view as_text(cohort::Bytes bytes) { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

// The whole text as a decimal integer, or nullopt.
std::optional<std::int64_t> parse_integer(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

void CounterService::on_start(cohort::Cluster& /*cluster*/, std::optional<cohort::Bytes> snapshot) {
  value_ = 0;
  if (!snapshot) return;  // a new cluster: the log replays from its first entry
  // Throwing stops the node: a snapshot this service cannot read is corrupt, and guessing would fork the state.
  if (snapshot->size() != kSnapshotSize) throw std::runtime_error("counter snapshot: not 8 bytes");
  // Little-endian whatever the host, so the bytes written by on_take_snapshot are the same on every replica.
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < kSnapshotSize; ++i)
    bits |= std::uint64_t{std::to_integer<std::uint8_t>((*snapshot)[i])} << (8 * i);
  value_ = static_cast<std::int64_t>(bits);
}

void CounterService::on_message(cohort::Cluster& cluster, cohort::SessionId session, cohort::ClusterTime timestamp,
                                cohort::Bytes message) {
  // Every replica calls send(); only the leader transmits. A false return (the client has gone) needs nothing.
  const std::string answer = execute(cluster, timestamp, as_text(message));
  cluster.send(session, {reinterpret_cast<const std::byte*>(answer.data()), answer.size()});
}

std::string CounterService::execute(cohort::Cluster& cluster, cohort::ClusterTime timestamp, std::string_view text) {
  const auto space = text.find(' ');
  const std::string_view command = text.substr(0, space);
  const std::string_view argument = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);

  if (command == "get" && space == std::string_view::npos) return std::to_string(value_);
  if (command == "add") {
    const auto delta = parse_integer(argument);
    if (!delta) return "error: add takes one integer, e.g. add 5";
    // Signed overflow is undefined behaviour, which could differ between builds: wrap around explicitly.
    value_ = static_cast<std::int64_t>(static_cast<std::uint64_t>(value_) + static_cast<std::uint64_t>(*delta));
    return std::to_string(value_);
  }
  if (command == "reset-after") {
    const auto ms = parse_integer(argument);
    if (!ms || *ms < 1 || *ms > kMaxResetMs)
      return "error: reset-after takes 1 to 31536000000 ms, e.g. reset-after 5000";
    // Cluster time, never the system clock: `timestamp` is the same on every replica, the clock is not.
    const cohort::ClusterTime deadline = timestamp + std::chrono::milliseconds(*ms);
    cluster.schedule_timer(kResetTimer, deadline);
    return "reset at " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(deadline).count());
  }
  return "error: unknown command (add N, get, reset-after MS)";
}

void CounterService::on_timer(cohort::Cluster& /*cluster*/, cohort::TimerId id, cohort::ClusterTime /*timestamp*/) {
  // The firing is an entry of the log, so every replica resets at the same point between the same messages.
  if (id == kResetTimer) value_ = 0;
}

void CounterService::on_take_snapshot(cohort::Cluster& /*cluster*/, std::vector<std::byte>& out) {
  const auto bits = static_cast<std::uint64_t>(value_);
  for (std::size_t i = 0; i < kSnapshotSize; ++i) out.push_back(static_cast<std::byte>((bits >> (8 * i)) & 0xFFU));
}

}  // namespace counter
