#pragma once
// Assertions for programmer errors. They stay on in every build type: a broken invariant in a replicated
// system must stop the process loudly, never continue with corrupted state. Expected failures (a bad frame,
// a peer gone, a full disk) are never asserted; they are values (see result.h).
// (__FILE__ and __LINE__ rather than std::source_location, which clang 14 with libstdc++ 12 lacks.)

#include <string_view>

namespace cohort {
/// Stops the process with `message`, for damage found while running that no code path can work around (a
/// durable log record that fails its checksum when read back). Not for programmer errors (COHORT_ASSERT) nor
/// for failures a caller can handle (Result).
[[noreturn]] void fatal_error(std::string_view message) noexcept;
}  // namespace cohort

namespace cohort::detail {
[[noreturn]] void assertion_failed(const char* expression, const char* file, int line, const char* function) noexcept;
}  // namespace cohort::detail

#define COHORT_ASSERT(condition)                                                                              \
  do {                                                                                                        \
    if (!(condition)) [[unlikely]]                                                                            \
      ::cohort::detail::assertion_failed(#condition, __FILE__, __LINE__, static_cast<const char*>(__func__)); \
  } while (false)

#define COHORT_UNREACHABLE() \
  ::cohort::detail::assertion_failed("unreachable", __FILE__, __LINE__, static_cast<const char*>(__func__))
