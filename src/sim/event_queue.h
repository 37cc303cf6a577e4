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
  client,         // a random client offers a request (workload.h)
  transfer,       // the leader is asked to hand leadership over
  outage,         // every node stops at once; each restarts later (the clients stay up)
  client_tick,    // `client`'s timer fires, if it is still the instance `incarnation`
  client_fault,   // a client is cut off or healed (`detail`), restarts, or one of its connections resets
  client_link,    // on `connection`: a connect resolves, or one side hears that it ended (client_network.h)
  client_frame,   // on `connection`: a frame (`bytes`) reaches the node or the client (`detail`)
  power_loss,     // every node loses power at once (sync policy none): page caches lost; each restarts later
  blackout,       // every node stops for minutes (FaultMix::blackout), then all restart
};

struct Event {
  EventKind kind = EventKind::tick;
  std::uint32_t node = 0;  // the node's index, for events addressed to one node
  // The node's incarnation when the event was scheduled: events of an earlier incarnation (timers, storage
  // completions of a node that crashed since) are ignored. For deliver: the network's power-loss generation.
  std::uint64_t incarnation = 0;
  consensus::PersistSeq seq = 0;  // sync: durable up to here
  consensus::Message message;     // deliver
  std::uint32_t client = 0;       // the client's slot (workload.h), for client_tick and client_fault
  std::uint64_t connection = 0;   // client_link, client_frame
  std::uint8_t detail = 0;        // what a client_* event is, in the terms of the part that handles it
  std::vector<std::byte> bytes;   // client_frame: one whole frame
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
