#include "sim/network.h"

#include <algorithm>
#include <type_traits>
#include <variant>

#include <fmt/format.h>

namespace cohort::sim {

std::string describe(const consensus::Message& message) {
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
        } else if constexpr (std::is_same_v<Body, consensus::SnapshotChunk>) {
          return fmt::format("{} at={}/{} bytes {}+{} of {}", head, body.position.index.value(),
                             body.position.term.value(), body.offset, body.data.size(), body.size);
        } else if constexpr (std::is_same_v<Body, consensus::SnapshotAck>) {
          return fmt::format("{} at={}/{} received={}", head, body.position.index.value(), body.position.term.value(),
                             body.received);
        } else {
          return head;
        }
      },
      message.body);
}

Network::Network(std::size_t nodes, const FaultMix& mix, const Phase& phase, Random& random, EventQueue& events,
                 const Trace& trace, Stats& stats)
    : nodes_(nodes),
      mix_(mix),
      phase_(phase),
      random_(random),
      events_(events),
      trace_(trace),
      stats_(stats),
      blocked_(nodes * nodes, false) {}

bool Network::cut(const consensus::Message& message) const {
  return blocked_[(message.from.value() - 1) * nodes_ + (message.to.value() - 1)];
}

void Network::transmit(const consensus::Message& message) {
  const std::uint32_t from = message.from.value() - 1;
  const bool faults = phase_ == Phase::safety;
  if (cut(message) || (faults && random_.chance(mix_.drop_per_mille, 1000))) {
    ++stats_.dropped;
    trace_.line(from, "lost {}", describe(message));
    return;
  }
  const bool duplicate = faults && random_.chance(mix_.duplicate_per_mille, 1000);
  for (int copy = duplicate ? 2 : 1; copy > 0; --copy) {
    Duration delay = micros(random_.between(100, std::max<std::uint64_t>(as_micros(mix_.delay_max), 100)));
    if (faults && random_.chance(mix_.long_delay_per_mille, 1000)) delay = micros(random_.between(50'000, 2'000'000));
    Event event;
    event.kind = EventKind::deliver;
    event.node = message.to.value() - 1;
    event.incarnation = generation_;
    event.message = message;  // copied: the duplicate needs it too, and a message is small here
    events_.schedule(delay, std::move(event));
  }
  if (duplicate) ++stats_.duplicated;
}

void Network::heal() {
  std::fill(blocked_.begin(), blocked_.end(), false);
  partitioned_ = false;
}

void Network::partition(std::optional<std::uint32_t> leader) {
  if (phase_ != Phase::safety) return;
  Event next;
  next.kind = EventKind::partition;
  const std::size_t n = nodes_;
  if (partitioned_) {
    heal();
    trace_.line(kCluster, "network heals");
    events_.schedule(around(random_, mix_.partition_every), next);
    return;
  }
  partitioned_ = true;
  ++stats_.partitions;
  const auto block = [&](std::size_t from, std::size_t to) { blocked_[from * n + to] = true; };
  std::string what;
  switch (random_.below(3)) {
    case 0: {  // symmetric: two sides that cannot hear each other
      std::vector<bool> side(n);
      for (std::size_t i = 0; i < n; ++i) side[i] = random_.chance(1, 2);
      for (std::size_t a = 0; a < n; ++a)
        for (std::size_t b = 0; b < n; ++b)
          if (side[a] != side[b]) block(a, b);
      for (std::size_t i = 0; i < n; ++i) what += side[i] ? 'A' : 'B';
      what = "symmetric partition " + what;
      break;
    }
    case 1: {  // one-way: some links drop in one direction only
      const std::uint64_t links = random_.between(1, n * n);
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
      // value_or draws the random node even when there is a leader: a lazy draw would change every seed's run.
      const std::size_t isolated = leader.value_or(random_node());
      const bool inbound_only = random_.chance(1, 3);
      for (std::size_t other = 0; other < n; ++other) {
        if (other == isolated) continue;
        block(other, isolated);
        if (!inbound_only) block(isolated, other);
      }
      what = fmt::format("isolates n{}{}", isolated + 1, inbound_only ? " (inbound only)" : "");
      break;
    }
  }
  trace_.line(kCluster, "network: {}", what);
  events_.schedule(micros(random_.between(200'000, 5'000'000)), next);
}

}  // namespace cohort::sim
