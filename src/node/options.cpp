// validate(NodeOptions): every problem visible without the disk or the network. Each line starts with the
// setting's name as the TOML file spells it (cohortd's configuration), so an operator can find the line to fix.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cohort/node.h"
#include "io/transport.h"
#include "protocol/messages.h"

namespace cohort {

namespace {

constexpr std::uint64_t kMinSegmentSize = 4096;
// Snapshots closer together than this would spend more time writing state than replaying it would save.
constexpr std::uint64_t kMinSnapshotThreshold = std::uint64_t{64} << 10U;
constexpr std::size_t kMaxMessageSizeLimit = std::size_t{16} << 20U;
// A client is disconnected after this many keep-alive intervals of silence (the gateway's rule): a shorter session
// timeout would close the sessions of clients the gateway still holds connected.
constexpr std::int64_t kSessionTimeoutKeepalives = 4;
constexpr std::chrono::milliseconds kMinSessionTimeout{100};
// Longer bounds are typos, not tuning, and they keep cluster-time arithmetic (nanoseconds) far from overflow.
constexpr std::chrono::milliseconds kMaxSessionTimeout = std::chrono::hours(24);
constexpr std::chrono::seconds kMaxTombstoneAge = std::chrono::hours(24 * 366 * 10);

// "twice", "3 times": for messages about repeated ids and endpoints.
std::string times(std::size_t count) { return count == 2 ? "twice" : fmt::format("{} times", count); }

// "a and b", "a, b and c".
std::string join_and(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i];
  }
  return out;
}

void check_members(const NodeOptions& options, std::vector<std::string>& problems) {
  if (options.members.empty()) {
    problems.emplace_back("members: none given; list every voting member, this node included");
    return;
  }
  if (options.members.size() > protocol::kMaxMembers) {
    // The handshake carries the list, and every node compares it with its own.
    problems.push_back(
        fmt::format("members: {} given, at most {} are supported", options.members.size(), protocol::kMaxMembers));
  }

  // Ids: non-zero and unique. std::map keeps the report in id order, whatever the listing order.
  std::map<std::uint32_t, std::size_t> id_counts;
  for (const auto& member : options.members) {
    if (member.id == 0) {
      problems.emplace_back("members: id 0 is not valid (member ids start at 1)");
      continue;
    }
    ++id_counts[member.id];
  }
  for (const auto& [id, count] : id_counts) {
    if (count > 1) problems.push_back(fmt::format("members: id {} appears {}", id, times(count)));
  }

  // Endpoints: each parses, and no two are the same. Port 0 asks for any free port, so it never clashes.
  // Hosts are compared as written: "localhost" and "127.0.0.1" are not resolved here.
  std::vector<std::pair<io::Endpoint, std::vector<std::string>>> users;  // in first-use order
  const auto check_endpoint = [&](const Member& member, const char* role, const std::string& text) {
    auto endpoint = io::parse_endpoint(text);
    if (!endpoint) {
      problems.push_back(fmt::format("members: member {} {} endpoint {}", member.id, role, endpoint.error()));
      return;
    }
    if (endpoint->port == 0) {
      // Other members, and clients redirected, must be able to find every endpoint: port 0 fits a lone node.
      if (options.members.size() > 1)
        problems.push_back(
            fmt::format("members: member {} {} endpoint {} has port 0, which only a single-node "
                        "cluster may use (the others could not find it)",
                        member.id, role, text));
      return;
    }
    const auto user = fmt::format("member {} {}", member.id, role);
    auto found = std::find_if(users.begin(), users.end(), [&](const auto& entry) { return entry.first == *endpoint; });
    if (found == users.end()) {
      users.emplace_back(std::move(endpoint).value(), std::vector<std::string>{user});
    } else {
      found->second.push_back(user);
    }
  };
  for (const auto& member : options.members) {
    check_endpoint(member, "peer", member.peer_endpoint);
    check_endpoint(member, "client", member.client_endpoint);
  }
  // An admin endpoint is the member's own host's business: loopback addresses repeat across members on different
  // hosts, so only its form is checked, and that it is not the member's own peer or client endpoint.
  for (const auto& member : options.members) {
    if (member.admin_endpoint.empty()) continue;
    auto admin = io::parse_endpoint(member.admin_endpoint);
    if (!admin) {
      problems.push_back(fmt::format("members: member {} admin endpoint {}", member.id, admin.error()));
      continue;
    }
    for (const auto& [role, own] :
         {std::pair{"peer", &member.peer_endpoint}, std::pair{"client", &member.client_endpoint}})
      if (auto other = io::parse_endpoint(*own); other && other->port != 0 && *other == *admin)
        problems.push_back(fmt::format("members: member {} admin endpoint {} is also its {} endpoint", member.id,
                                       member.admin_endpoint, role));
  }
  for (const auto& [endpoint, names] : users) {
    if (names.size() > 1) {
      problems.push_back(
          fmt::format("members: {} is used {}: {}", endpoint.to_string(), times(names.size()), join_and(names)));
    }
  }
}

void check_node_id(const NodeOptions& options, std::vector<std::string>& problems) {
  if (options.node_id == 0) {
    problems.emplace_back("node_id: 0 is not valid (node ids start at 1)");
    return;
  }
  // With no members at all, "members" already says so: one cause, one line.
  if (options.members.empty()) return;
  const bool listed = std::any_of(options.members.begin(), options.members.end(),
                                  [&](const Member& member) { return member.id == options.node_id; });
  if (listed) return;
  std::string list;
  for (const auto& member : options.members) list += (list.empty() ? "" : ", ") + std::to_string(member.id);
  problems.push_back(fmt::format("node_id: {} is not among the members ({})", options.node_id, list));
}

void check_timeouts(const NodeOptions& options, std::vector<std::string>& problems) {
  const auto heartbeat = options.heartbeat_interval.count();
  const auto election_min = options.election_timeout_min.count();
  const auto election_max = options.election_timeout_max.count();
  const auto keepalive = options.client_keepalive_interval.count();

  if (heartbeat <= 0) {
    problems.push_back(fmt::format("timeouts.heartbeat_ms: {} ms is not positive", heartbeat));
  } else if (heartbeat >= election_min && election_min > 0) {
    // Followers must hear a heartbeat well before any of them may start an election.
    problems.push_back(fmt::format("timeouts.heartbeat_ms: {} ms must be below timeouts.election_min_ms ({} ms)",
                                   heartbeat, election_min));
  }
  if (election_min <= 0) {
    problems.push_back(fmt::format("timeouts.election_min_ms: {} ms is not positive", election_min));
  } else if (election_min >= election_max) {
    // The range must be non-empty: randomised timeouts are what keep split votes from repeating.
    problems.push_back(
        fmt::format("timeouts.election_min_ms: {} ms must be below timeouts.election_max_ms ({} ms, exclusive)",
                    election_min, election_max));
  }
  if (keepalive <= 0) {
    problems.push_back(fmt::format("timeouts.client_keepalive_ms: {} ms is not positive", keepalive));
  } else if (keepalive >= 1000) {
    // Clients give a connection up after a second of silence by default (ClientOptions::silence_limit).
    problems.push_back(fmt::format(
        "timeouts.client_keepalive_ms: {} ms is not below the clients' default silence limit of 1000 ms", keepalive));
  }
}

void check_sessions(const NodeOptions& options, std::vector<std::string>& problems) {
  const auto timeout = options.session_timeout.count();
  const auto keepalive = options.client_keepalive_interval.count();
  if (options.session_timeout < kMinSessionTimeout) {
    problems.push_back(
        fmt::format("sessions.timeout_ms: {} ms is below the minimum of {} ms", timeout, kMinSessionTimeout.count()));
  } else if (options.session_timeout > kMaxSessionTimeout) {
    problems.push_back(fmt::format("sessions.timeout_ms: {} ms is above the maximum of {} ms (24 h)", timeout,
                                   kMaxSessionTimeout.count()));
  } else if (keepalive > 0 && keepalive > timeout / kSessionTimeoutKeepalives) {
    // A non-positive keep-alive is reported by check_timeouts: one cause, one line. Divided, so that an absurd
    // keep-alive cannot overflow.
    problems.push_back(
        fmt::format("sessions.timeout_ms: {} ms must be at least {} times timeouts.client_keepalive_ms ({} ms): a "
                    "silent client is disconnected only after {} keep-alive intervals, and its session must outlive "
                    "that",
                    timeout, kSessionTimeoutKeepalives, keepalive, kSessionTimeoutKeepalives));
  }
  if (options.max_sessions < 1) {
    problems.emplace_back("sessions.max_sessions: 0 is not valid (at least 1 session)");
  }
  // max_tombstones needs no check: 0 (keep none) is a choice, not a typo.
  if (options.tombstone_max_age.count() < 0 || options.tombstone_max_age > kMaxTombstoneAge) {
    problems.push_back(fmt::format("sessions.tombstone_max_age_s: {} s is outside 0..{} s (10 years)",
                                   options.tombstone_max_age.count(), kMaxTombstoneAge.count()));
  }
  if (options.egress_window_messages < 1) {
    problems.emplace_back("sessions.egress_window_messages: 0 is not valid (at least 1 message)");
  }
  if (options.egress_window_bytes < 1) {
    problems.emplace_back("sessions.egress_window_bytes: 0 bytes is not valid (at least 1 byte)");
  }
}

}  // namespace

std::optional<std::string> validate(const NodeOptions& options) {
  std::vector<std::string> problems;

  check_node_id(options, problems);
  if (options.cluster_id == 0) {
    problems.emplace_back(
        "cluster_id: 0 is not valid (choose a non-zero id shared by the cluster's nodes and clients)");
  }
  check_members(options, problems);
  if (options.data_dir.empty()) problems.emplace_back("data_dir: is empty (the directory for the log and metadata)");
  if (!options.metrics_endpoint.empty())
    if (auto metrics = io::parse_endpoint(options.metrics_endpoint); !metrics)
      problems.push_back(fmt::format("metrics: {}", metrics.error()));
  check_timeouts(options, problems);
  check_sessions(options, problems);
  if (options.segment_size < kMinSegmentSize) {
    problems.push_back(
        fmt::format("segment_size: {} bytes is below the minimum of {} bytes", options.segment_size, kMinSegmentSize));
  }
  if (options.snapshot_threshold != 0 && options.snapshot_threshold < kMinSnapshotThreshold) {
    problems.push_back(fmt::format("snapshot_threshold: {} bytes is below the minimum of {} bytes (0: never by size)",
                                   options.snapshot_threshold, kMinSnapshotThreshold));
  }
  if (options.max_message_size < 1 || options.max_message_size > kMaxMessageSizeLimit) {
    problems.push_back(fmt::format("max_message_size: {} bytes is outside 1..{} bytes (16 MiB)",
                                   options.max_message_size, kMaxMessageSizeLimit));
  }
  // A level cast from an out-of-range integer would silence the node without a word.
  if (options.log_level > LogLevel::off) {
    problems.push_back(fmt::format("log_level: {} is not one of debug, info, warn, error, off",
                                   static_cast<unsigned>(options.log_level)));
  }

  if (problems.empty()) return std::nullopt;
  std::string out;
  for (const auto& problem : problems) {
    if (!out.empty()) out += '\n';
    out += problem;
  }
  return out;
}

}  // namespace cohort
