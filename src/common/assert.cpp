#include "common/assert.h"

#include <cstdio>
#include <cstdlib>

namespace cohort {

void fatal_error(std::string_view message) noexcept {
  std::fprintf(stderr, "cohort: fatal: %.*s\n", static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  std::abort();
}

}  // namespace cohort

namespace cohort::detail {

void assertion_failed(const char* expression, const char* file, int line, const char* function) noexcept {
  // stdio, not the logger: the logger may be the broken part, and this must reach the operator.
  std::fprintf(stderr, "cohort: assertion failed: %s\n  at %s:%d in %s\n", expression, file, line, function);
  std::fflush(stderr);
  std::abort();
}

}  // namespace cohort::detail
