#pragma once
// Every heap allocation the `cohort` tool's process makes is counted (alloc_counter.cpp replaces the global
// operator new), so `cohort bench` can show that the client makes none per message in steady state.

#include <cstdint>

namespace cohort::tool {

std::uint64_t allocation_count() noexcept;

}  // namespace cohort::tool
