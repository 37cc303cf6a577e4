// cohortd: a Cohort node with a built-in service (kv, counter or echo) chosen by configuration. It is the node
// library (include/cohort/node.h) plus services/registry.h; a user's own node is the same dozen lines with their
// own service (examples/).

#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

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
  cohort::io::init_logging(fmt::format("node {}", config->node.node_id), config->log_level);
  auto service = cohort::services::make_service(config->service);
  if (service == nullptr) {
    spdlog::error("service: unknown service '{}'", config->service);
    return cohortd::kBadConfigExitCode;
  }
  // The count and the file, never a credential: logs travel further than the file does.
  if (config->credentials_file.empty()) {
    spdlog::info("sessions: every client is accepted (no sessions.credentials_file)");
  } else {
    spdlog::info("sessions: only clients with a credential listed in {} are accepted ({} listed)",
                 config->credentials_file, config->credential_count);
  }
  cohort::Node node(config->node, *service);
  if (auto error = node.start()) {
    spdlog::error("{}", *error);
    std::fprintf(stderr, "cohortd: refusing to start: %s\n", error->c_str());
    return cohortd::kBadConfigExitCode;
  }
  // Scripts and tests wait for these lines to learn the ports.
  std::printf("listening on %s\nclients on %s\n", node.peer_endpoint().c_str(), node.client_endpoint().c_str());
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
