#pragma once
// What a node's or a client's event-loop thread does when it has nothing to do, as Aeron's agents choose an idle
// strategy. `block` (the default) sleeps in epoll until something arrives: no CPU spent while idle, but every
// message wakes a sleeping thread, which costs tens of microseconds when the wake-up crosses CPUs. `yield` and
// `spin` poll instead and never sleep: the lowest latency, for a deployment that gives Cohort cores of its own, at
// the price of a CPU kept busy all the time. `yield` gives the CPU to another runnable thread between polls (on a
// machine with fewer cores than busy threads, the only polling that works); `spin` does not.

#include <cstdint>
#include <optional>
#include <string_view>

namespace cohort {

enum class IdleStrategy : std::uint8_t { block, yield, spin };

/// "block", "yield", "spin".
const char* to_string(IdleStrategy strategy) noexcept;
/// The strategy named `name` (as to_string gives it), or nullopt.
std::optional<IdleStrategy> parse_idle_strategy(std::string_view name) noexcept;

}  // namespace cohort
