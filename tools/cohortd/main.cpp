// cohortd: a Cohort node with a built-in service (kv, counter, echo or ledger) chosen by configuration. It is the node
// library (include/cohort/node.h) plus services/registry.h; a user's own node is the same dozen lines with their
// own service (examples/).

#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <spdlog/logger.h>

#include "cohort/log.h"
#include "cohort/node.h"
#include "cohortd/config.h"
#include "io/logging.h"
#include "services/registry.h"

static int run(int argc, char** argv) {
  auto config = cohortd::load_config(argc, argv);
  if (!config) {
    std::fprintf(config.error().exit_code == 0 ? stdout : stderr, "%s\n", config.error().message.c_str());
    return config.error().exit_code;
  }
  // Log lines go to stderr or the log file, never stdout: stdout carries only the two lines below.
  if (config->log_file.empty()) {
    config->node.log = cohort::stderr_log_sink();
  } else {
    std::string error;
    config->node.log = cohort::file_log_sink(config->log_file, {}, error);
    if (!config->node.log) {
      std::fprintf(stderr, "cohortd: refusing to start: log_file: %s\n", error.c_str());
      return cohortd::kBadConfigExitCode;
    }
  }
  // cohortd's own lines look like the node's: same place, same tag, same level.
  const auto log =
      cohort::io::make_logger(config->node.log, config->node.log_level, fmt::format("node {}", config->node.node_id));
  auto service = cohort::services::make_service(config->service);
  if (service == nullptr) {
    log->error("service: unknown service '{}'", config->service);
    return cohortd::kBadConfigExitCode;
  }
  // The count and the file, never a credential: logs travel further than the file does.
  if (config->credentials_file.empty()) {
    log->info("sessions: every client is accepted (no sessions.credentials_file)");
  } else {
    log->info("sessions: only clients with a credential listed in {} are accepted ({} listed)",
              config->credentials_file, config->credential_count);
  }
  if (!config->admin_credentials_file.empty())
    log->info("admin commands on the client endpoint: with a credential listed in {}", config->admin_credentials_file);
  cohort::Node node(config->node, *service);
  if (auto error = node.start()) {
    log->error("{}", *error);
    std::fprintf(stderr, "cohortd: refusing to start: %s\n", error->c_str());
    return cohortd::kBadConfigExitCode;
  }
  // Scripts and tests wait for these lines to learn the ports; "clients on" comes last, the sign the node is up.
  std::printf("listening on %s\n", node.peer_endpoint().c_str());
  if (const std::string admin = node.admin_endpoint(); !admin.empty()) std::printf("admin on %s\n", admin.c_str());
  if (const std::string metrics = node.metrics_endpoint(); !metrics.empty())
    std::printf("metrics on %s\n", metrics.c_str());
  std::printf("clients on %s\n", node.client_endpoint().c_str());
  std::fflush(stdout);
  return node.run();
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cohortd: fatal: %s\n", error.what());
    return 1;
  }
}
