#pragma once
// What a run leaves besides its outcome: the trace, one line per event for a person reproducing a seed, and the
// fingerprint, a hash of every event and its effect for comparing runs (Outcome::fingerprint).

#include <cstdint>
#include <cstdio>
#include <utility>

#include <fmt/format.h>

#include "sim/event_queue.h"

namespace cohort::sim {

/// The subject of a trace line about no node in particular.
inline constexpr std::uint32_t kCluster = ~std::uint32_t{0};

class Trace {
 public:
  /// Writes nothing if `out` is null. Each line starts with the virtual time of `clock`.
  Trace(std::FILE* out, const EventQueue& clock) : out_(out), clock_(clock) {}

  std::FILE* file() const noexcept { return out_; }

  /// One line about the node with index `node` (shown as n1, n2, ...) or, with kCluster, about the cluster.
  template <typename... Args>
  void line(std::uint32_t node, fmt::format_string<Args...> format, Args&&... args) const {
    if (out_ == nullptr) return;
    const std::uint64_t us = as_micros(clock_.now());
    if (node == kCluster)
      fmt::print(out_, "{:>4}.{:06} -- ", us / 1'000'000, us % 1'000'000);
    else
      fmt::print(out_, "{:>4}.{:06} n{} ", us / 1'000'000, us % 1'000'000, node + 1);
    fmt::print(out_, format, std::forward<Args>(args)...);
    std::fputc('\n', out_);
  }

  /// One line about the client in slot `client` (shown as c1, c2, ...).
  template <typename... Args>
  void client(std::uint32_t client, fmt::format_string<Args...> format, Args&&... args) const {
    if (out_ == nullptr) return;
    const std::uint64_t us = as_micros(clock_.now());
    fmt::print(out_, "{:>4}.{:06} c{} ", us / 1'000'000, us % 1'000'000, client + 1);
    fmt::print(out_, format, std::forward<Args>(args)...);
    std::fputc('\n', out_);
  }

 private:
  std::FILE* out_;
  const EventQueue& clock_;
};

/// Equal runs have equal fingerprints. What is mixed in, and in which order, is part of the simulator's
/// behaviour: a change of it changes every seed's fingerprint.
class Fingerprint {
 public:
  void mix(std::uint64_t value) noexcept { value_ ^= value + 0x9E3779B97F4A7C15ULL + (value_ << 6U) + (value_ >> 2U); }
  std::uint64_t value() const noexcept { return value_; }

 private:
  std::uint64_t value_ = 0;
};

}  // namespace cohort::sim
