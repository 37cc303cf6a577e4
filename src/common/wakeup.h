#pragma once
// A counter one thread can sleep on until another bumps it: the doorbell beside an SPSC queue. Read the
// counter, look for work, and sleep only if the counter has not moved since: a bump between the look and the
// sleep is never lost, because the sleep returns at once when the value differs. 32 bits, so that libstdc++
// waits on the counter's own futex (after a short spin) rather than on a proxy shared with other atomics.

#include <atomic>
#include <cstdint>

namespace cohort {

class Wakeup {
 public:
  std::uint32_t value() const noexcept { return count_.load(std::memory_order_acquire); }
  void ring() noexcept {
    count_.fetch_add(1, std::memory_order_acq_rel);
    count_.notify_all();
  }
  /// Sleeps until the counter differs from `seen`.
  void wait(std::uint32_t seen) const noexcept { count_.wait(seen, std::memory_order_acquire); }

 private:
  std::atomic<std::uint32_t> count_{0};
};

}  // namespace cohort
