#pragma once
// A log-bucketed latency histogram, as HdrHistogram keeps one: recording is an index computation and an increment
// (no allocation, no lock: one histogram per recording thread, merged at the end), and any percentile is read back
// within 1/64 (1.6%) of the recorded value, at every scale from nanoseconds to hours.

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace cohort::tool {

class Histogram {
 public:
  /// Values below kExact get a bucket each; above, every power of two is split into kSubBuckets buckets.
  static constexpr std::uint64_t kExact = 128;
  static constexpr std::uint64_t kSubBuckets = kExact / 2;
  static constexpr std::size_t kBuckets = kExact + (64 - 7) * kSubBuckets;

  void record(std::uint64_t value) noexcept {
    ++counts_[index(value)];
    ++count_;
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }

  void merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  void clear() noexcept { *this = Histogram(); }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const noexcept { return max_; }

  /// The smallest recorded value (to the bucket's precision) that at least `fraction` of the values are at or
  /// below; 0 when empty. The exact maximum for fraction 1.
  std::uint64_t percentile(double fraction) const noexcept {
    if (count_ == 0) return 0;
    const double wanted = std::clamp(fraction, 0.0, 1.0) * static_cast<double>(count_);
    const std::uint64_t rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted + 0.999999));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      // A bucket's middle stands for its values, but never beyond what was recorded.
      if (seen >= rank) return std::clamp(middle(i), min_, max_);
    }
    return max_;
  }

  /// Calls visit(value, count) for every non-empty bucket, in ascending order (for plots).
  template <typename Visit>
  void for_each(Visit&& visit) const {
    for (std::size_t i = 0; i < kBuckets; ++i)
      if (counts_[i] != 0) visit(std::clamp(middle(i), min_, max_), counts_[i]);
  }

  static std::size_t index(std::uint64_t value) noexcept {
    if (value < kExact) return static_cast<std::size_t>(value);
    // value >> shift lies in [kSubBuckets, kExact): its low bits pick the bucket within the power of two.
    const int shift = static_cast<int>(std::bit_width(value)) - 7;
    return static_cast<std::size_t>(kExact + static_cast<std::uint64_t>(shift - 1) * kSubBuckets +
                                    ((value >> shift) - kSubBuckets));
  }

  static std::uint64_t lowest(std::size_t bucket) noexcept {
    if (bucket < kExact) return bucket;
    const std::uint64_t above = bucket - kExact;
    const std::uint64_t shift = above / kSubBuckets + 1;
    return (kSubBuckets + above % kSubBuckets) << shift;
  }

 private:
  static std::uint64_t middle(std::size_t bucket) noexcept {
    if (bucket < kExact) return bucket;
    const std::uint64_t width = std::uint64_t{1} << ((bucket - kExact) / kSubBuckets + 1);
    return lowest(bucket) + width / 2;
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace cohort::tool
