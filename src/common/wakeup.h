#pragma once
// A counter one thread can sleep on until another bumps it: the doorbell beside an SPSC queue. Read the
// counter, look for work, and sleep only if the counter has not moved since: a bump between the look and the
// sleep is never lost. A mutex and a condition variable, deliberately: a first version slept in
// std::atomic::wait (libstdc++ 12) and the storage benchmark once hung there with both threads asleep, cause
// not pinned down; this is simple to reason about, and the lock guards only the counter, never the data the
// queue carries.

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace cohort {

class Wakeup {
 public:
  std::uint64_t value() {
    const std::lock_guard lock(mutex_);
    return count_;
  }
  void ring() {
    {
      const std::lock_guard lock(mutex_);
      ++count_;
    }
    ready_.notify_all();
  }
  /// Sleeps until the counter differs from `seen`.
  void wait(std::uint64_t seen) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return count_ != seen; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::uint64_t count_ = 0;
};

}  // namespace cohort
