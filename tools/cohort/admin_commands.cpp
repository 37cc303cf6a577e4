#include "cohort/admin_commands.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <cohort/admin.h>
#include <fmt/format.h>
#include <toml++/toml.h>

#include "cohort/json.h"
#include "cohortd/config.h"

namespace cohort::tool {
namespace {

// One node as the tool knows it: from the configuration file (id and endpoints), or from an endpoint given, whose
// id its status tells.
struct KnownNode {
  std::uint32_t id = 0;  // 0 until its status names it
  std::string client;    // "" if not known
  std::string admin;     // "" if not known
  std::optional<NodeStatus> status;
  std::string error;  // why there is no status

  const std::string& endpoint() const { return client.empty() ? admin : client; }
  std::string name() const { return id != 0 ? fmt::format("node {}", id) : endpoint(); }
};

struct Cluster {
  std::uint64_t cluster_id = 0;
  std::vector<KnownNode> nodes;
  std::string credential;  // from --credential-file
};

std::chrono::milliseconds timeout_or(const AdminOptions& options, std::chrono::milliseconds fallback) {
  return options.timeout.count() > 0 ? options.timeout : fallback;
}

// The cluster id and the members' endpoints from a node's configuration file, and nothing else: the tool must work
// with a file that cohortd completes with flags (a data directory given by the systemd unit), or whose credentials
// file only the service may read. Says what is wrong and returns false if those parts are unusable.
bool read_config(const std::string& path, Cluster& cluster) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& error) {
    std::fprintf(stderr, "cohort: %s: %s\n", path.c_str(), std::string(error.description()).c_str());
    return false;
  }
  const auto cluster_id = table["cluster_id"].value<std::int64_t>();
  if (cluster_id && *cluster_id > 0) cluster.cluster_id = static_cast<std::uint64_t>(*cluster_id);
  const toml::array* members = table["members"].as_array();
  if (members == nullptr || members->empty()) {
    std::fprintf(stderr, "cohort: %s: no [[members]]\n", path.c_str());
    return false;
  }
  for (std::size_t i = 0; i < members->size(); ++i) {
    const toml::table* member = members->get(i)->as_table();
    const auto id = member != nullptr ? (*member)["id"].value<std::int64_t>() : std::nullopt;
    const auto client = member != nullptr ? (*member)["client"].value<std::string>() : std::nullopt;
    if (!id || *id < 1 || *id > 0xFFFFFFFF || !client) {
      std::fprintf(stderr, "cohort: %s: members[%zu] needs an id (1..4294967295) and a client endpoint\n", path.c_str(),
                   i);
      return false;
    }
    cluster.nodes.push_back(KnownNode{
        static_cast<std::uint32_t>(*id), *client, (*member)["admin"].value<std::string>().value_or(""), {}, {}});
  }
  return true;
}

std::optional<Cluster> load(const AdminOptions& options) {
  Cluster cluster;
  if (!options.config.empty() && !read_config(options.config, cluster)) return std::nullopt;
  if (options.cluster_id) cluster.cluster_id = *options.cluster_id;
  if (cluster.cluster_id == 0) {
    std::fprintf(stderr, "cohort: the cluster id is unknown: give --cluster-id, or --config\n");
    return std::nullopt;
  }
  for (const std::string& endpoint : options.members) cluster.nodes.push_back(KnownNode{0, endpoint, {}, {}, {}});
  for (const std::string& endpoint : options.admin) cluster.nodes.push_back(KnownNode{0, {}, endpoint, {}, {}});
  if (cluster.nodes.empty()) {
    std::fprintf(stderr, "cohort: no nodes: give --config, --members or --admin\n");
    return std::nullopt;
  }
  if (!options.credential_file.empty()) {
    auto credentials = cohortd::read_credentials(options.credential_file);
    if (!credentials) {
      std::fprintf(stderr, "cohort: --credential-file: %s\n", credentials.error().c_str());
      return std::nullopt;
    }
    cluster.credential = credentials->front();
  }
  return cluster;
}

// Asks every node for its status at once (an unreachable address costs one timeout, not one per node), learns the
// ids of nodes given by endpoint, and merges a node given both by client and by admin endpoint.
void probe(Cluster& cluster, std::chrono::milliseconds timeout, bool state_hash) {
  std::vector<std::future<StatusResult>> answers;
  answers.reserve(cluster.nodes.size());
  for (const KnownNode& node : cluster.nodes)
    answers.push_back(std::async(std::launch::async, [&cluster, endpoint = node.endpoint(), timeout, state_hash] {
      // A node computes its state hash at most every 100 ms while it applies: an answer without one is asked again.
      StatusResult result = query_status(endpoint, cluster.cluster_id, timeout, state_hash);
      for (int retry = 0; retry < 10 && state_hash && result.ok && !result.status.state_hash_included; ++retry) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        result = query_status(endpoint, cluster.cluster_id, timeout, state_hash);
      }
      return result;
    }));
  for (std::size_t i = 0; i < cluster.nodes.size(); ++i) {
    KnownNode& node = cluster.nodes[i];
    StatusResult result = answers[i].get();
    if (!result.ok) {
      node.error = result.error;
      continue;
    }
    if (node.id != 0 && node.id != result.status.node_id) {
      node.error = fmt::format("{} is node {}, not node {}", node.endpoint(), result.status.node_id, node.id);
      continue;
    }
    node.id = result.status.node_id;
    node.status = std::move(result.status);
  }
  std::vector<KnownNode> merged;
  for (KnownNode& node : cluster.nodes) {
    const auto same = std::find_if(merged.begin(), merged.end(),
                                   [&](const KnownNode& other) { return node.id != 0 && other.id == node.id; });
    if (same == merged.end()) {
      merged.push_back(std::move(node));
      continue;
    }
    if (same->client.empty()) same->client = node.client;
    if (same->admin.empty()) same->admin = node.admin;
    if (!same->status) {
      same->status = std::move(node.status);
      same->error = std::move(node.error);
    }
  }
  std::stable_sort(merged.begin(), merged.end(), [](const KnownNode& a, const KnownNode& b) {
    return (a.id == 0 ? UINT32_MAX : a.id) < (b.id == 0 ? UINT32_MAX : b.id);
  });
  cluster.nodes = std::move(merged);
}

KnownNode* find(Cluster& cluster, std::uint32_t id) {
  const auto found =
      std::find_if(cluster.nodes.begin(), cluster.nodes.end(), [&](const KnownNode& node) { return node.id == id; });
  return found == cluster.nodes.end() ? nullptr : &*found;
}

// The reachable node that leads in the highest term, if any.
const KnownNode* leader_of(const Cluster& cluster) {
  const KnownNode* leader = nullptr;
  for (const KnownNode& node : cluster.nodes)
    if (node.status && node.status->role == "leader" && (leader == nullptr || node.status->term > leader->status->term))
      leader = &node;
  return leader;
}

// Where a command that changes `node` goes: with a credential, its client endpoint (the operator chose it); else
// its admin endpoint. nullopt (after saying why) if there is neither.
std::optional<AdminTarget> target_of(const Cluster& cluster, const KnownNode& node, std::chrono::milliseconds timeout) {
  AdminTarget target;
  target.cluster_id = cluster.cluster_id;
  target.node_id = node.id;
  target.timeout = timeout;
  if (!cluster.credential.empty() && !node.client.empty()) {
    target.endpoint = node.client;
    target.credential = cluster.credential;
  } else if (!node.admin.empty()) {
    target.endpoint = node.admin;
  } else {
    std::fprintf(stderr,
                 "%s: no admin endpoint is known for it (give --config with its member's admin endpoint, or --admin), "
                 "and no --credential-file for its client endpoint\n",
                 node.name().c_str());
    return std::nullopt;
  }
  return target;
}

std::string uptime_text(std::chrono::milliseconds uptime) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(uptime).count();
  if (seconds < 60) return fmt::format("{}s", seconds);
  if (seconds < 3600) return fmt::format("{}m{:02}s", seconds / 60, seconds % 60);
  if (seconds < 86400) return fmt::format("{}h{:02}m", seconds / 3600, seconds / 60 % 60);
  return fmt::format("{}d{:02}h", seconds / 86400, seconds / 3600 % 24);
}

std::string status_json(const KnownNode& node) {
  std::string out = fmt::format("{{\"node_id\":{},\"endpoint\":{},\"reachable\":{}", node.id,
                                json_string(node.endpoint()), node.status ? "true" : "false");
  if (!node.status) return out + fmt::format(",\"error\":{}}}", json_string(node.error));
  const NodeStatus& s = *node.status;
  out += fmt::format(
      ",\"role\":{},\"standing\":{},\"term\":{},\"leader_id\":{},\"commit_index\":{},\"applied_index\":{},"
      "\"last_index\":{},\"snapshot_index\":{},\"snapshot_term\":{},\"open_sessions\":{},\"uptime_ms\":{},"
      "\"entry_faults\":{},\"configuration_id\":{}",
      json_string(s.role), json_string(s.standing), s.term, s.leader_id, s.commit_index, s.applied_index, s.last_index,
      s.snapshot_index, s.snapshot_term, s.open_sessions, s.uptime.count(), s.entry_faults, s.configuration_id);
  if (s.state_hash_included) out += fmt::format(",\"state_hash\":\"{:016x}\"", s.state_hash);
  out += ",\"members\":[";
  for (std::size_t i = 0; i < s.members.size(); ++i) out += fmt::format("{}{}", i == 0 ? "" : ",", s.members[i]);
  out += "],\"problems\":[";
  for (std::size_t i = 0; i < s.problems.size(); ++i) {
    if (i > 0) out += ',';
    out += json_string(s.problems[i]);
  }
  return out + "]}";
}

int unreachable_count(const Cluster& cluster) {
  return static_cast<int>(std::count_if(cluster.nodes.begin(), cluster.nodes.end(),
                                        [](const KnownNode& node) { return !node.status.has_value(); }));
}

}  // namespace

int run_status(const AdminOptions& options) {
  auto cluster = load(options);
  if (!cluster) return 2;
  probe(*cluster, timeout_or(options, std::chrono::milliseconds(3000)), options.state_hash);
  if (options.json) {
    std::string out = fmt::format("{{\"cluster_id\":{},\"nodes\":[", cluster->cluster_id);
    for (std::size_t i = 0; i < cluster->nodes.size(); ++i) {
      if (i > 0) out += ',';
      out += status_json(cluster->nodes[i]);
    }
    std::printf("%s]}\n", out.c_str());
  } else {
    std::printf("%-5s %-22s %-13s %6s %6s %10s %10s %10s %16s %8s %8s %s\n", "NODE", "ENDPOINT", "ROLE", "TERM",
                "LEADER", "COMMIT", "APPLIED", "LAST", "SNAPSHOT@TERM", "SESSIONS", "UPTIME",
                options.state_hash ? "STANDING  STATE-HASH" : "STANDING");
    for (const KnownNode& node : cluster->nodes) {
      const std::string id = node.id != 0 ? std::to_string(node.id) : "?";
      if (!node.status) {
        std::printf("%-5s %-22s unreachable: %s\n", id.c_str(), node.endpoint().c_str(), node.error.c_str());
        continue;
      }
      const NodeStatus& s = *node.status;
      const std::string snapshot =
          s.snapshot_index == 0 ? std::string("-") : fmt::format("{}@{}", s.snapshot_index, s.snapshot_term);
      const std::string leader = s.leader_id == 0 ? std::string("-") : std::to_string(s.leader_id);
      std::string standing = s.standing;
      if (s.state_hash_included) standing += fmt::format("  {:016x}", s.state_hash);
      std::printf("%-5s %-22s %-13s %6llu %6s %10llu %10llu %10llu %16s %8llu %8s %s\n", id.c_str(),
                  node.endpoint().c_str(), s.role.c_str(), static_cast<unsigned long long>(s.term), leader.c_str(),
                  static_cast<unsigned long long>(s.commit_index), static_cast<unsigned long long>(s.applied_index),
                  static_cast<unsigned long long>(s.last_index), snapshot.c_str(),
                  static_cast<unsigned long long>(s.open_sessions), uptime_text(s.uptime).c_str(), standing.c_str());
    }
    for (const KnownNode& node : cluster->nodes) {
      if (!node.status) continue;
      if (node.status->entry_faults > 0)
        std::printf("node %u: %u committed entries could not be applied as they are (its log names each)\n", node.id,
                    node.status->entry_faults);
      for (const std::string& problem : node.status->problems) std::printf("node %u: %s\n", node.id, problem.c_str());
    }
  }
  return unreachable_count(*cluster) == 0 ? 0 : 1;
}

int run_leader(const AdminOptions& options) {
  auto cluster = load(options);
  if (!cluster) return 2;
  probe(*cluster, timeout_or(options, std::chrono::milliseconds(3000)), false);
  const KnownNode* leader = leader_of(*cluster);
  if (leader == nullptr) {
    // A reachable follower may know of a leader the tool cannot reach: worth saying.
    std::string heard;
    for (const KnownNode& node : cluster->nodes)
      if (node.status && node.status->leader_id != 0)
        heard =
            fmt::format(" (node {} names node {} as leader, which did not answer)", node.id, node.status->leader_id);
    if (options.json)
      std::printf("{\"leader_id\":0,\"reachable\":%d}\n",
                  static_cast<int>(cluster->nodes.size()) - unreachable_count(*cluster));
    std::fprintf(stderr, "no leader: none of the %d reachable nodes leads%s\n",
                 static_cast<int>(cluster->nodes.size()) - unreachable_count(*cluster), heard.c_str());
    return 1;
  }
  if (options.json) {
    std::printf("{\"leader_id\":%u,\"term\":%llu,\"endpoint\":%s}\n", leader->id,
                static_cast<unsigned long long>(leader->status->term), json_string(leader->endpoint()).c_str());
  } else {
    std::printf("node %u leads in term %llu (%s)\n", leader->id, static_cast<unsigned long long>(leader->status->term),
                leader->endpoint().c_str());
  }
  return 0;
}

int run_members(const AdminOptions& options) {
  auto cluster = load(options);
  if (!cluster) return 2;
  probe(*cluster, timeout_or(options, std::chrono::milliseconds(3000)), false);
  // Each reachable node's member list: they must agree.
  std::map<std::vector<std::uint32_t>, std::vector<std::uint32_t>> lists;  // list -> the nodes that hold it
  for (const KnownNode& node : cluster->nodes)
    if (node.status) lists[node.status->members].push_back(node.id);
  const auto list_text = [](const std::vector<std::uint32_t>& ids) {
    std::string out;
    for (const std::uint32_t id : ids) out += fmt::format("{}{}", out.empty() ? "" : ", ", id);
    return out;
  };
  if (options.json) {
    std::string out = "{\"nodes\":[";
    for (std::size_t i = 0; i < cluster->nodes.size(); ++i) {
      const KnownNode& node = cluster->nodes[i];
      out += fmt::format("{}{{\"node_id\":{},\"client\":{},\"admin\":{},\"reachable\":{}", i == 0 ? "" : ",", node.id,
                         json_string(node.client), json_string(node.admin), node.status ? "true" : "false");
      if (node.status)
        out += fmt::format(",\"role\":{},\"members\":[{}]", json_string(node.status->role),
                           list_text(node.status->members));
      else
        out += fmt::format(",\"error\":{}", json_string(node.error));
      out += "}";
    }
    std::printf("%s],\"agreed\":%s}\n", out.c_str(), lists.size() == 1 ? "true" : "false");
  } else {
    std::printf("%-5s %-22s %-22s %s\n", "NODE", "CLIENT", "ADMIN", "ROLE (or why unreachable)");
    for (const KnownNode& node : cluster->nodes) {
      const std::string id = node.id != 0 ? std::to_string(node.id) : "?";
      const std::string state = node.status ? node.status->role : fmt::format("unreachable: {}", node.error);
      std::printf("%-5s %-22s %-22s %s\n", id.c_str(), node.client.empty() ? "-" : node.client.c_str(),
                  node.admin.empty() ? "-" : node.admin.c_str(), state.c_str());
    }
    for (const auto& [list, holders] : lists)
      std::printf("members [%s], as nodes %s list them\n", list_text(list).c_str(), list_text(holders).c_str());
  }
  if (lists.empty()) {
    std::fprintf(stderr, "no node answered\n");
    return 1;
  }
  if (lists.size() > 1) {
    std::fprintf(stderr, "the nodes disagree on the member list (cohort status shows what each refuses)\n");
    return 1;
  }
  return 0;
}

namespace {

// The nodes --node or --all name, after a probe that learned the ids of those given by endpoint. Says what is
// wrong and returns nothing if --node names no known node.
std::optional<std::vector<KnownNode*>> chosen(Cluster& cluster, const AdminOptions& options, const char* command) {
  std::vector<KnownNode*> nodes;
  if (options.all) {
    for (KnownNode& node : cluster.nodes) nodes.push_back(&node);
    return nodes;
  }
  if (KnownNode* node = find(cluster, options.node)) return std::vector<KnownNode*>{node};
  std::string known;
  for (const KnownNode& node : cluster.nodes)
    known += fmt::format("{}{}", known.empty() ? "" : ", ",
                         node.id != 0 ? std::to_string(node.id) : node.endpoint() + " (unreachable)");
  std::fprintf(stderr, "cohort %s: node %u is not among the nodes given (%s)\n", command, options.node, known.c_str());
  return std::nullopt;
}

}  // namespace

namespace {

// Sends a command to each of `nodes` in turn, through its admin target: prints why for each that fails, and hands
// each that succeeds to `done`. A node whose id is unknown (an endpoint that never answered) cannot be addressed.
// Exit status: 0 if every one succeeded.
int act_on_each(const Cluster& cluster, const std::vector<KnownNode*>& nodes, std::chrono::milliseconds timeout,
                AdminResult (*command)(const AdminTarget&),
                const std::function<void(const KnownNode&, const AdminResult&)>& done) {
  int exit_code = 0;
  for (const KnownNode* node : nodes) {
    if (node->id == 0) {
      std::fprintf(stderr, "%s: unreachable: %s\n", node->endpoint().c_str(), node->error.c_str());
      exit_code = 1;
      continue;
    }
    const auto target = target_of(cluster, *node, timeout);
    if (!target) {
      exit_code = 1;
      continue;
    }
    const AdminResult result = command(*target);
    if (!result.ok) {
      std::fprintf(stderr, "node %u: %s\n", node->id, result.error.c_str());
      exit_code = 1;
      continue;
    }
    done(*node, result);
  }
  return exit_code;
}

}  // namespace

int run_snapshot(const AdminOptions& options) {
  auto cluster = load(options);
  if (!cluster) return 2;
  probe(*cluster, timeout_or(options, std::chrono::milliseconds(3000)), false);
  const auto nodes = chosen(*cluster, options, "snapshot");
  if (!nodes) return 1;
  return act_on_each(*cluster, *nodes, timeout_or(options, std::chrono::milliseconds(60000)), request_snapshot,
                     [](const KnownNode& node, const AdminResult& result) {
                       std::printf("node %u: snapshot at index %llu (term %llu), %llu bytes\n", node.id,
                                   static_cast<unsigned long long>(result.index),
                                   static_cast<unsigned long long>(result.term),
                                   static_cast<unsigned long long>(result.size));
                     });
}

int run_transfer_leadership(const AdminOptions& options) {
  auto cluster = load(options);
  if (!cluster) return 2;
  probe(*cluster, timeout_or(options, std::chrono::milliseconds(3000)), false);
  const KnownNode* leader = leader_of(*cluster);
  if (leader == nullptr) {
    std::fprintf(stderr, "cohort transfer-leadership: no reachable node leads (cohort status shows each node)\n");
    return 1;
  }
  if (leader->id == options.to) {
    std::printf("node %u leads already\n", options.to);
    return 0;
  }
  const auto target = target_of(*cluster, *leader, timeout_or(options, std::chrono::milliseconds(10000)));
  if (!target) return 1;
  const AdminResult result = transfer_leadership(*target, options.to);
  if (!result.ok) {
    std::fprintf(stderr, "node %u (the leader) could not hand over to node %u: %s\n", leader->id, options.to,
                 result.error.c_str());
    return 1;
  }
  std::printf("node %u leads now (node %u handed over)\n", options.to, leader->id);
  return 0;
}

int run_shutdown(const AdminOptions& options) {
  auto cluster = load(options);
  if (!cluster) return 2;
  probe(*cluster, timeout_or(options, std::chrono::milliseconds(3000)), false);
  auto nodes = chosen(*cluster, options, "shutdown");
  if (!nodes) return 1;
  // The leader last: each follower stopped first spares the cluster a handover.
  std::stable_partition(nodes->begin(), nodes->end(),
                        [](const KnownNode* node) { return !node->status || node->status->role != "leader"; });
  return act_on_each(
      *cluster, *nodes, timeout_or(options, std::chrono::milliseconds(30000)), request_shutdown,
      [](const KnownNode& node, const AdminResult& /*result*/) { std::printf("node %u stopped\n", node.id); });
}

}  // namespace cohort::tool
