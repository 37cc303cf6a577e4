#include "sim/event_queue.h"

#include <utility>

#include "common/assert.h"

namespace cohort::sim {

void EventQueue::schedule(Duration delay, Event event) {
  std::uint32_t slot = 0;
  if (free_slots_.empty()) {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.push_back(std::move(event));
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
    slots_[slot] = std::move(event);
  }
  queue_.push(Scheduled{now_ + delay, order_++, slot});
}

Event EventQueue::pop() {
  COHORT_ASSERT(!queue_.empty());
  const Scheduled next = queue_.top();
  queue_.pop();
  now_ = next.at;
  Event event = std::move(slots_[next.slot]);
  free_slots_.push_back(next.slot);
  return event;
}

}  // namespace cohort::sim
