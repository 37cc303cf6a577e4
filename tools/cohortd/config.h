#pragma once
// cohortd's configuration: a TOML file (--config FILE), then command-line flags, which win over the file; the
// merged result is checked by cohort::validate(). config/node1.toml documents every setting.
//
//   auto config = cohortd::load_config(argc, argv);
//   if (!config) {
//     std::fprintf(config.error().exit_code == 0 ? stdout : stderr, "%s\n", config.error().message.c_str());
//     return config.error().exit_code;
//   }

#include <cstddef>
#include <string>
#include <vector>

#include <cohort/node.h>

#include "common/result.h"

namespace cohortd {

struct DaemonConfig {
  cohort::NodeOptions node;            // node.authenticator is set when credentials_file is; log_level maps to
                                       // node.log_level (trace as debug); node.log is main's to set (log_file)
  std::string service = "kv";          // kv, counter, echo, ledger
  std::string log_file;                // log_file: every log line is appended there; empty: to stderr
  std::string credentials_file;        // sessions.credentials_file; empty: every client is accepted
  std::string admin_credentials_file;  // admin_credentials_file (node.admin_authenticator); empty: none
  std::size_t credential_count = 0;    // how many credentials it holds, for the start-up log (never the credentials)
};

/// load_config's exit code when a setting is refused (or a flag is unknown, or lacks its value).
inline constexpr int kBadConfigExitCode = 2;

/// Why load_config produced no configuration. main prints `message` (to stdout if exit_code is 0, else to
/// stderr), then exits with `exit_code`.
struct ConfigExit {
  int exit_code = 0;    // 0: --help or --version was asked for; kBadConfigExitCode: the configuration is refused
  std::string message;  // the help text or version; or every problem, one per line, each naming the setting
};

/// The allowed credentials in a credentials file: one per line, the line's bytes without its newline (and
/// without a trailing '\r', so a file written on Windows works); empty lines and lines starting with '#' are
/// skipped. The error is the reason the file gives none: it cannot be read, or it holds no credential.
cohort::Result<std::vector<std::string>, std::string> read_credentials(const std::string& path);

/// Parses cohortd's command line (argv[0] is the program name) and the TOML file it names, if any.
cohort::Result<DaemonConfig, ConfigExit> load_config(int argc, char** argv);

/// The same, for tests: `args` are the arguments after the program name.
cohort::Result<DaemonConfig, ConfigExit> load_config(const std::vector<std::string>& args);

}  // namespace cohortd
