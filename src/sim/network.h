#pragma once
// The network: a message a node releases travels as a deliver event. In the safety phase the fault mix may
// lose it, duplicate it, or hold it back for up to 2 s (reordering heavily); partitions cut links, both ways or
// one way, until the next partition event heals them.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/random.h"
#include "consensus/messages.h"
#include "sim/event_queue.h"
#include "sim/fault_mix.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace cohort::sim {

/// A message in one line, for the trace.
std::string describe(const consensus::Message& message);

class Network {
 public:
  /// `phase` is the run's: faults strike only while it is the safety phase.
  Network(std::size_t nodes, const FaultMix& mix, const Phase& phase, Random& random, EventQueue& events,
          const Trace& trace, Stats& stats);

  /// A message leaves its node: lost, or delivered once (twice, if duplicated) after a delay.
  void transmit(const consensus::Message& message);

  /// The link the message travels is cut. Checked again on arrival: a partition may begin while it is in flight.
  bool cut(const consensus::Message& message) const;

  /// The partition event: heals a partitioned network, or else cuts it in one of three shapes (one of which
  /// isolates `leader`, or a random node if there is none); either way the next partition event is scheduled.
  void partition(std::optional<std::uint32_t> leader);

  /// Every link works again (the liveness phase begins).
  void heal();
  /// Some link is cut.
  bool partitioned() const noexcept { return partitioned_; }
  /// Every machine lost power: every connection between the nodes died with the kernels, and what was in flight
  /// on them never arrives (the runtime's transport is TCP: a new process reads nothing sent to an old one).
  void power_loss() noexcept { ++generation_; }
  /// The deliver event carries a message sent before the last power loss.
  bool lost_in_power_loss(const Event& event) const noexcept { return event.incarnation != generation_; }

 private:
  std::uint32_t random_node() { return static_cast<std::uint32_t>(random_.below(nodes_)); }

  std::size_t nodes_;
  const FaultMix& mix_;
  const Phase& phase_;
  Random& random_;
  EventQueue& events_;
  const Trace& trace_;
  Stats& stats_;
  std::vector<bool> blocked_;  // [from * nodes_ + to], by node index: the link drops everything
  bool partitioned_ = false;
  std::uint64_t generation_ = 0;  // power losses so far: a deliver event carries the one it was sent in
};

}  // namespace cohort::sim
