#pragma once
// `cohort status | leader | members | snapshot | transfer-leadership | shutdown`: the operator's commands against a
// running cluster, over the admin part of the client protocol (include/cohort/admin.h).
//
// The nodes are named by a node's configuration file (--config: every member's client and admin endpoint, the
// cluster id), or by endpoints (--members: client endpoints; --admin: admin endpoints), whose node ids the tool
// learns from each node's status. Looking (status, leader, members) uses any endpoint. Changing (snapshot,
// transfer-leadership, shutdown) uses the node's admin endpoint, or its client endpoint with --credential-file.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cohort::tool {

struct AdminOptions {
  std::string config;                // a cohortd configuration file
  std::vector<std::string> members;  // client endpoints
  std::vector<std::string> admin;    // admin endpoints
  std::optional<std::uint64_t> cluster_id;
  std::string credential_file;           // its first credential goes with commands sent to a client endpoint
  std::chrono::milliseconds timeout{0};  // 0: the command's own default
  bool json = false;
  bool state_hash = false;  // status: have each node compute its state hash (serializes its state)
  std::uint32_t node = 0;   // snapshot, shutdown: one node (0: --all)
  bool all = false;
  std::uint32_t to = 0;  // transfer-leadership
};

int run_status(const AdminOptions& options);
int run_leader(const AdminOptions& options);
int run_members(const AdminOptions& options);
int run_snapshot(const AdminOptions& options);
int run_transfer_leadership(const AdminOptions& options);
int run_shutdown(const AdminOptions& options);

}  // namespace cohort::tool
