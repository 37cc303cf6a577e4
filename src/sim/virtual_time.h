#pragma once
// Virtual time: the simulator's clock counts nanoseconds since the run began and moves only from one event to
// the next (event_queue.h). Durations are drawn in whole microseconds.

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "common/random.h"

namespace cohort::sim {

using Duration = std::chrono::nanoseconds;
using Time = std::chrono::nanoseconds;  // since the run began; the same type as consensus::Time

inline Duration micros(std::uint64_t count) { return std::chrono::microseconds(static_cast<std::int64_t>(count)); }

inline std::uint64_t as_micros(Duration duration) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(duration).count());
}

/// Around `mean`, uniformly in [mean/2, 3*mean/2]: irregular, but never a burst of zero gaps.
inline Duration around(Random& random, Duration mean) {
  const std::uint64_t us = std::max<std::uint64_t>(as_micros(mean), 2);
  return micros(random.between(us / 2, us + us / 2));
}

}  // namespace cohort::sim
