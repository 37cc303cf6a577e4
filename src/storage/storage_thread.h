#pragma once
// The storage thread: one per node. It takes batches from the event-loop thread through a bounded SPSC
// queue, performs everything queued as one group (one gather write per segment run, one fdatasync), and
// hands the batches back with their results through a second SPSC queue, calling `wake` so the loop thread
// collects them. The loop thread never waits on the disk.
//
// Threading contract: submit(), has_room() and poll() are called by one thread only (the loop thread); `wake`
// runs on the storage thread and must be thread-safe and quick (post to the loop, write an eventfd).

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "common/spsc_queue.h"
#include "common/wakeup.h"
#include "storage/batch.h"
#include "storage/log_writer.h"

namespace cohort::storage {

class StorageThread {
 public:
  struct Done {
    std::unique_ptr<Batch> batch;
    BatchResult result;
    // The group commit that performed it (every batch of one group has the same): its write and its sync.
    std::chrono::nanoseconds write_time{0};
    std::chrono::nanoseconds sync_time{0};
    std::size_t group_batches = 0;
  };

  StorageThread(LogWriter& writer, std::function<void()> wake, std::size_t queue_depth = kBatchesInFlight);
  /// Performs whatever is still queued, then stops. A graceful stop waits for its results first.
  ~StorageThread();
  StorageThread(const StorageThread&) = delete;
  StorageThread& operator=(const StorageThread&) = delete;

  /// Whether a batch can be submitted now. If not, the caller keeps adding to the batch it is building: the
  /// next group commit takes it whole.
  bool has_room() const noexcept { return in_flight_ < depth_; }
  void submit(std::unique_ptr<Batch> batch);
  /// A batch performed, in submission order, or nullopt if none is ready.
  std::optional<Done> poll();
  std::size_t in_flight() const noexcept { return in_flight_; }

  /// Groups performed and batches per group so far (read on the loop thread while running: approximate).
  std::uint64_t groups() const noexcept { return groups_.load(std::memory_order_relaxed); }

 private:
  void run();

  LogWriter& writer_;
  std::function<void()> wake_;
  std::size_t depth_;
  std::size_t in_flight_ = 0;  // loop thread only
  SpscQueue<std::unique_ptr<Batch>> requests_;
  SpscQueue<Done> results_;
  Wakeup doorbell_;  // rung by every submit and by the destructor; the storage thread sleeps on it when idle
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> groups_{0};
  std::thread thread_;
};

}  // namespace cohort::storage
