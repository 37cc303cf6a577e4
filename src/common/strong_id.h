#pragma once
// Strong types for numbers that must not be mixed up: a term is not a log index, a log index is not a node id
// (redpanda's raft/fundamental.h does the same). Arithmetic is explicit through value().

#include <compare>
#include <cstdint>
#include <functional>

namespace cohort {

template <typename Tag, typename T>
struct StrongId {
  T value_ = 0;

  constexpr StrongId() = default;
  constexpr explicit StrongId(T v) : value_(v) {}
  constexpr T value() const noexcept { return value_; }
  constexpr StrongId next() const noexcept { return StrongId(value_ + 1); }
  constexpr StrongId prev() const noexcept { return StrongId(value_ - 1); }
  friend constexpr auto operator<=>(StrongId, StrongId) = default;
};

using Term = StrongId<struct TermTag, std::uint64_t>;
using LogIndex = StrongId<struct LogIndexTag, std::uint64_t>;
using NodeId = StrongId<struct NodeIdTag, std::uint32_t>;

}  // namespace cohort

template <typename Tag, typename T>
struct std::hash<cohort::StrongId<Tag, T>> {
  std::size_t operator()(cohort::StrongId<Tag, T> id) const noexcept { return std::hash<T>{}(id.value()); }
};
