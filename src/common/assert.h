#pragma once
// Assertions for programmer errors. They stay on in every build type: a broken invariant in a replicated
// system must stop the process loudly, never continue with corrupted state. Expected failures (a bad frame,
// a peer gone, a full disk) are never asserted; they are values (see result.h).

#include <source_location>

namespace cohort::detail {
[[noreturn]] void assertion_failed(const char* expression, std::source_location where) noexcept;
}  // namespace cohort::detail

#define COHORT_ASSERT(condition)                                                       \
  do {                                                                                 \
    if (!(condition)) [[unlikely]]                                                     \
      ::cohort::detail::assertion_failed(#condition, std::source_location::current()); \
  } while (false)

#define COHORT_UNREACHABLE() ::cohort::detail::assertion_failed("unreachable", std::source_location::current())
