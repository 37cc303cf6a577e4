#include "common/assert.h"

#include <cstdio>
#include <cstdlib>

namespace cohort::detail {

void assertion_failed(const char* expression, std::source_location where) noexcept {
  // stdio, not the logger: the logger may be the broken part, and this must reach the operator.
  std::fprintf(stderr, "cohort: assertion failed: %s\n  at %s:%u in %s\n", expression, where.file_name(),
               static_cast<unsigned>(where.line()), where.function_name());
  std::fflush(stderr);
  std::abort();
}

}  // namespace cohort::detail
