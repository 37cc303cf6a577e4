#pragma once
// `cohort config`: writes the configuration files of a local cluster, one TOML file per node, in the format
// `cohortd --config` reads (config/node1.toml is one such file, annotated). Node i's peer endpoint is
// HOST:(base_port + i) and its client endpoint HOST:(base_port + 100 + i); its data directory is DATA_ROOT/n<i>.

#include <cstdint>
#include <string>

namespace cohort::tool {

struct ConfigGenOptions {
  int nodes = 3;
  int base_port = 7100;
  std::string host = "127.0.0.1";
  std::uint64_t cluster_id = 42;
  std::string data_root = "/tmp/cohort";
  std::string service = "kv";
  std::string sync = "fsync";
  std::string output = ".";  // the directory the files go to (created if missing)
  bool force = false;        // overwrite files that exist
};

/// The text of node `id`'s file (1 <= id <= options.nodes).
std::string node_config_toml(const ConfigGenOptions& options, int id);

/// Writes every node's file and prints what was written and how to start it. Exit status: 0 written; 1 a file
/// could not be written (or exists, without --force); 2 bad arguments.
int run_config(const ConfigGenOptions& options);

}  // namespace cohort::tool
