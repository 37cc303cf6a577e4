#include "storage/storage_thread.h"

#include <vector>

namespace cohort::storage {

StorageThread::StorageThread(LogWriter& writer, std::function<void()> wake, std::size_t queue_depth)
    : writer_(writer),
      wake_(std::move(wake)),
      depth_(queue_depth),
      requests_(queue_depth),
      // Every batch in flight has a slot here, so the storage thread never finds the result queue full.
      results_(queue_depth),
      thread_([this] { run(); }) {}

StorageThread::~StorageThread() {
  stopping_.store(true, std::memory_order_release);
  doorbell_.ring();
  thread_.join();
}

void StorageThread::submit(std::unique_ptr<Batch> batch) {
  COHORT_ASSERT(has_room() && batch != nullptr);
  const bool pushed = requests_.try_push(batch);
  COHORT_ASSERT(pushed);
  ++in_flight_;
  doorbell_.ring();
}

std::optional<StorageThread::Done> StorageThread::poll() {
  auto done = results_.try_pop();
  if (done) --in_flight_;
  return done;
}

void StorageThread::run() {
  std::vector<std::unique_ptr<Batch>> group;
  std::vector<Batch*> pointers;
  group.reserve(depth_);
  pointers.reserve(depth_);
  while (true) {
    const std::uint32_t seen = doorbell_.value();
    while (auto batch = requests_.try_pop()) group.push_back(std::move(*batch));
    if (group.empty()) {
      if (stopping_.load(std::memory_order_acquire)) return;
      doorbell_.wait(seen);
      continue;
    }
    // Group commit: everything queued goes out in one write per segment run and one sync.
    pointers.clear();
    for (const auto& batch : group) pointers.push_back(batch.get());
    std::optional<IoError> error;
    const auto started = std::chrono::steady_clock::now();
    auto written_at = started;
    if (auto written = writer_.write(pointers); !written) {
      error = written.error();
    } else {
      written_at = std::chrono::steady_clock::now();
      if (auto synced = writer_.sync(); !synced) error = synced.error();
    }
    const auto finished = std::chrono::steady_clock::now();
    for (auto& batch : group) {
      Done done;
      done.write_time = written_at - started;
      done.sync_time = finished - written_at;
      done.group_batches = group.size();
      done.result.completion = batch->completion();
      done.result.error = error;
      done.batch = std::move(batch);
      const bool pushed = results_.try_push(done);
      COHORT_ASSERT(pushed);
    }
    group.clear();
    groups_.fetch_add(1, std::memory_order_relaxed);
    wake_();
  }
}

}  // namespace cohort::storage
