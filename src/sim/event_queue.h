#pragma once
// The event queue: everything that happens in a run is an event at a point of virtual time, and the clock jumps
// from one event to the next. Events at the same time happen in the order they were scheduled, so a run
// depends on nothing but its seed.

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "consensus/log.h"
#include "consensus/messages.h"
#include "sim/virtual_time.h"

namespace cohort::sim {

enum class EventKind : std::uint8_t {
  deliver,        // a message arrives at `node` (network.h)
  tick,           // `node`'s timer fires
  sync,           // the in-memory store of `node` makes its writes durable up to `seq` (storage_model.h)
  storage_write,  // real storage: the storage thread writes what is queued ...
  storage_sync,   // ... and syncs it: two events, so that a crash can fall between them
  crash,          // the periodic crash of a random node
  crash_node,     // a crash aimed at one incarnation of `node` (right after a role change, a commit, a write)
  restart,        // `node` starts again, if it is still the incarnation the crash left
  partition,      // the network splits, or heals
  client,         // a simulated client acts (workload.h)
  transfer        // the leader is asked to hand leadership over
};

struct Event {
  EventKind kind = EventKind::tick;
  std::uint32_t node = 0;  // the node's index, for events addressed to one node
  // The node's incarnation when the event was scheduled: events of an earlier incarnation (timers, storage
  // completions of a node that crashed since) are ignored.
  std::uint64_t incarnation = 0;
  consensus::PersistSeq seq = 0;  // sync: durable up to here
  consensus::Message message;     // deliver
};

class EventQueue {
 public:
  Time now() const noexcept { return now_; }

  void schedule(Duration delay, Event event);

  /// Takes the earliest event (of equal times, the first scheduled) and moves the clock to its time. The queue
  /// is never empty in a run: every node's timer and the clients reschedule themselves.
  Event pop();

 private:
  struct Scheduled {
    Time at;
    std::uint64_t order;  // ties in time break by scheduling order: deterministic
    std::uint32_t slot;
    bool operator>(const Scheduled& other) const { return at != other.at ? at > other.at : order > other.order; }
  };

  Time now_{};
  // Events wait in reusable slots; the heap orders small keys only, so a message is never moved by a heap swap.
  std::vector<Event> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::priority_queue<Scheduled, std::vector<Scheduled>, std::greater<>> queue_;
  std::uint64_t order_ = 0;
};

}  // namespace cohort::sim
