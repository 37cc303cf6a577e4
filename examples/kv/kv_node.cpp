// kv-node: one node of a cluster running the built-in key-value service (cohort::services::KvService). The same
// lines as examples/counter/counter_node.cpp; only the service differs.
//
//   kv-node --node-id 1 --cluster-id 42 --data-dir /tmp/kv/1
//     --member 1,127.0.0.1:7101,127.0.0.1:7201 --member 2,... --member 3,...   (README.md has all three)

#include <charconv>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include <cohort/node.h>
#include <cohort/services/kv_service.h>
#include <CLI/CLI.hpp>

namespace {

// "ID,PEER_HOST:PORT,CLIENT_HOST:PORT"; the node's own validation checks the endpoints.
bool parse_member(const std::string& text, cohort::Member& member) {
  const auto first = text.find(',');
  const auto second = first == std::string::npos ? first : text.find(',', first + 1);
  if (second == std::string::npos || text.find(',', second + 1) != std::string::npos) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + first, member.id);
  if (error != std::errc{} || end != text.data() + first) return false;
  member.peer_endpoint = text.substr(first + 1, second - first - 1);
  member.client_endpoint = text.substr(second + 1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  cohort::NodeOptions options;
  std::vector<std::string> members;
  CLI::App app{"kv-node: one node of a Cohort cluster running the key-value service"};
  app.add_option("--node-id", options.node_id, "this node's id, one of the members' ids")->required();
  app.add_option("--cluster-id", options.cluster_id, "the cluster's id, shared by its nodes and clients")->required();
  app.add_option("--data-dir", options.data_dir, "directory for this node's log (created if missing)")->required();
  app.add_option("--member", members, "ID,PEER_HOST:PORT,CLIENT_HOST:PORT, once per voting member (this one too)")
      ->required();
  CLI11_PARSE(app, argc, argv);
  for (const auto& text : members) {
    cohort::Member member;
    if (!parse_member(text, member)) {
      std::fprintf(stderr, "kv-node: --member '%s' is not ID,PEER_HOST:PORT,CLIENT_HOST:PORT\n", text.c_str());
      return 2;
    }
    options.members.push_back(member);
  }

  cohort::services::KvService service;
  // The node logs to stderr (options.log and options.log_level choose otherwise): stdout carries only the lines below.
  cohort::Node node(options, service);
  if (auto error = node.start()) {
    std::fprintf(stderr, "kv-node: cannot start: %s\n", error->c_str());
    return 2;
  }
  std::printf("listening on %s\nclients on %s\n", node.peer_endpoint().c_str(), node.client_endpoint().c_str());
  std::fflush(stdout);
  return node.run();  // until SIGTERM or SIGINT: 0 after a graceful stop
}
