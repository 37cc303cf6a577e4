#include "io/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace cohort::io {

bool init_logging(std::string_view identity, std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_logger_mt("cohort");
  spdlog::set_default_logger(logger);
  spdlog::set_level(parsed);
  spdlog::set_pattern(fmt::format("%Y-%m-%dT%H:%M:%S.%f [{}] %l: %v", identity));
  return true;
}

}  // namespace cohort::io
