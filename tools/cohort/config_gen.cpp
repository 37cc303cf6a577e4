#include "cohort/config_gen.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace cohort::tool {
namespace {

constexpr int kClientPortOffset = 100;
constexpr int kAdminPortOffset = 200;

std::string endpoint(const ConfigGenOptions& options, int port) {
  return options.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", options.host, port)
                                                     : fmt::format("{}:{}", options.host, port);
}
int peer_port(const ConfigGenOptions& options, int id) { return options.base_port + id; }
int client_port(const ConfigGenOptions& options, int id) { return options.base_port + kClientPortOffset + id; }
int admin_port(const ConfigGenOptions& options, int id) { return options.base_port + kAdminPortOffset + id; }

/// `text` as a TOML string, escaped by toml++ (the library cohortd reads the file with): paths and host names reach
/// the file as given, whatever they hold.
std::string quoted(const std::string& text) {
  std::ostringstream out;
  out << toml::value<std::string>(text);
  return out.str();
}

}  // namespace

std::string node_config_toml(const ConfigGenOptions& options, int id) {
  std::string out = fmt::format(
      "# cohortd configuration: node {} of a local {}-node cluster, written by `cohort config`.\n"
      "#   cohortd --config node{}.toml\n"
      "# config/node1.toml in the source tree describes every setting; flags override any setting here.\n\n"
      "node_id = {}\ncluster_id = {}\ndata_dir = {}\nservice = {}\nsync = {}\nlog_level = \"info\"\n",
      id, options.nodes, id, id, options.cluster_id,
      quoted((std::filesystem::path(options.data_root) / fmt::format("n{}", id)).string()), quoted(options.service),
      quoted(options.sync));
  out +=
      "\n# Every voting member, this node included: identical in every node's file. The admin endpoint takes the\n"
      "# commands that change a node (cohort snapshot, transfer-leadership, shutdown): on loopback, only from its "
      "host.\n";
  for (int member = 1; member <= options.nodes; ++member)
    out += fmt::format("\n[[members]]\nid = {}\npeer = {}\nclient = {}\nadmin = {}\n", member,
                       quoted(endpoint(options, peer_port(options, member))),
                       quoted(endpoint(options, client_port(options, member))),
                       quoted(fmt::format("127.0.0.1:{}", admin_port(options, member))));
  return out;
}

int run_config(const ConfigGenOptions& options) {
  if (admin_port(options, options.nodes) > 65535) {
    std::fprintf(stderr, "cohort config: --base-port %d leaves no room for %d nodes (admin ports end at %d > 65535)\n",
                 options.base_port, options.nodes, admin_port(options, options.nodes));
    return 2;
  }
  const std::filesystem::path dir(options.output);
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    std::fprintf(stderr, "cohort config: cannot create %s: %s\n", dir.c_str(), error.message().c_str());
    return 1;
  }
  // Every file is checked before any is written: a refusal leaves the directory as it was.
  if (!options.force) {
    for (int id = 1; id <= options.nodes; ++id) {
      const auto path = dir / fmt::format("node{}.toml", id);
      if (std::filesystem::exists(path)) {
        std::fprintf(stderr, "cohort config: %s exists (--force overwrites it)\n", path.c_str());
        return 1;
      }
    }
  }
  std::string members;
  for (int id = 1; id <= options.nodes; ++id) {
    const auto path = dir / fmt::format("node{}.toml", id);
    std::ofstream file(path, std::ios::trunc);
    file << node_config_toml(options, id);
    file.close();
    if (!file) {
      std::fprintf(stderr, "cohort config: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("wrote %s\n", path.c_str());
    members += fmt::format("{}{}", id == 1 ? "" : ",", endpoint(options, client_port(options, id)));
  }
  std::printf("start each node: cohortd --config %s\n", (dir / "nodeN.toml").c_str());
  std::printf("clients: --cluster-id %llu --members %s\n", static_cast<unsigned long long>(options.cluster_id),
              members.c_str());
  std::printf("operate: cohort status --config %s\n", (dir / "node1.toml").c_str());
  return 0;
}

}  // namespace cohort::tool
