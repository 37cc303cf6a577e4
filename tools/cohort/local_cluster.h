#pragma once
// A cluster of cohortd processes on loopback, started by a tool (`cohort bench`) in a directory of its own: each
// node gets free ports, its data directory and a log file there. The processes are killed and the directory
// removed (unless kept) when the LocalCluster goes.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cohort::tool {

struct LocalClusterOptions {
  std::string cohortd;  // the binary
  int nodes = 3;        // 1 to 9
  std::uint64_t cluster_id = 7;
  std::string service = "echo";
  std::string sync = "fsync";            // cohortd --sync
  std::filesystem::path dir;             // empty: a fresh directory under the temp directory
  bool keep = false;                     // leave the directory (logs, data) behind; else it is removed
  std::vector<std::string> extra_flags;  // passed to every node
};

/// The cohortd next to the running program (/proc/self/exe), else the one on PATH; nullopt if neither exists.
std::optional<std::string> find_cohortd();

class LocalCluster {
 public:
  /// Starts every node; throws std::runtime_error naming what failed.
  explicit LocalCluster(LocalClusterOptions options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const std::vector<std::string>& client_endpoints() const noexcept { return clients_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }
  int size() const noexcept { return static_cast<int>(pids_.size()); }
  /// 0 when node `index` (0-based) is not running.
  pid_t pid(int index) const { return pids_.at(static_cast<std::size_t>(index)); }

  /// SIGKILL, and waits for the process to be gone.
  void kill_node(int index);
  /// Starts node `index` again on its ports and data directory.
  void start_node(int index);

  /// User plus system CPU time of every running node, from /proc.
  std::chrono::microseconds cpu_time() const;

 private:
  /// Kills every node; removes the directory if it was ours.
  void stop();

  LocalClusterOptions options_;
  std::filesystem::path dir_;
  bool remove_dir_ = false;
  std::vector<std::string> members_;  // --member values
  std::vector<std::string> clients_;
  std::vector<pid_t> pids_;
};

/// User plus system CPU time of a process so far (its threads included), from /proc/PID/stat; nullopt if it is gone.
std::optional<std::chrono::microseconds> process_cpu_time(pid_t pid);

}  // namespace cohort::tool
