#include "cohort/local_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

extern "C" char** environ;

namespace cohort::tool {
namespace {

/// A port the kernel had free a moment ago (bind port 0, read it, release it for cohortd).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("socket: {}", std::generic_category().message(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok)
    throw std::runtime_error(
        fmt::format("cannot find a free loopback port: {}", std::generic_category().message(error)));
  return ntohs(address.sin_port);
}

}  // namespace

std::optional<std::string> find_cohortd() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    // Installed side by side, or in the build tree (build/X/tools/cohort and build/X/tools/cohortd).
    for (const std::filesystem::path& candidate : {self.parent_path() / "cohortd", self.parent_path() / "../cohortd"})
      if (::access(candidate.c_str(), X_OK) == 0) return std::filesystem::weakly_canonical(candidate).string();
  }
  if (const char* path = std::getenv("PATH")) {  // NOLINT(concurrency-mt-unsafe): nothing sets the environment
    std::stringstream dirs(path);
    for (std::string dir; std::getline(dirs, dir, ':');) {
      const std::filesystem::path candidate = std::filesystem::path(dir) / "cohortd";
      if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  return std::nullopt;
}

std::optional<std::chrono::microseconds> process_cpu_time(pid_t pid) {
  std::ifstream file(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(file, stat)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
  const std::size_t end = stat.rfind(')');
  if (end == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(end + 2));
  std::string skip;
  for (int field = 3; field < 14; ++field) fields >> skip;  // state .. cmajflt
  unsigned long long user = 0;
  unsigned long long system = 0;
  if (!(fields >> user >> system)) return std::nullopt;
  const long ticks = ::sysconf(_SC_CLK_TCK);
  return std::chrono::microseconds((user + system) * 1'000'000ULL / static_cast<unsigned long long>(ticks));
}

LocalCluster::LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {
  if (options_.nodes < 1 || options_.nodes > 9) throw std::runtime_error("a local cluster has 1 to 9 nodes");
  dir_ = options_.dir.empty() ? std::filesystem::temp_directory_path() / fmt::format("cohort-cluster-{}", ::getpid())
                              : options_.dir;
  remove_dir_ = !options_.keep;
  std::error_code error;
  std::filesystem::create_directories(dir_, error);
  if (error) throw std::runtime_error(fmt::format("cannot create {}: {}", dir_.string(), error.message()));
  for (int id = 1; id <= options_.nodes; ++id) {
    const std::string client = fmt::format("127.0.0.1:{}", free_port());
    members_.push_back(fmt::format("{},127.0.0.1:{},{}", id, free_port(), client));
    clients_.push_back(client);
  }
  pids_.assign(static_cast<std::size_t>(options_.nodes), 0);
  try {
    for (int index = 0; index < options_.nodes; ++index) start_node(index);
  } catch (...) {
    stop();  // no destructor runs for an object whose constructor threw
    throw;
  }
}

namespace {
// An interrupt (the tool's own handler) must not leave a child unreaped.
void reap(pid_t pid) {
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}
}  // namespace

LocalCluster::~LocalCluster() { stop(); }

void LocalCluster::stop() {
  for (pid_t& pid : pids_) {
    if (pid == 0) continue;
    ::kill(pid, SIGKILL);
    reap(pid);
    pid = 0;
  }
  if (remove_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    remove_dir_ = false;
  }
}

void LocalCluster::kill_node(int index) {
  pid_t& pid = pids_.at(static_cast<std::size_t>(index));
  if (pid == 0) return;
  ::kill(pid, SIGKILL);
  reap(pid);
  pid = 0;
}

void LocalCluster::start_node(int index) {
  pid_t& pid = pids_.at(static_cast<std::size_t>(index));
  if (pid != 0) return;
  const int id = index + 1;
  std::vector<std::string> args = {options_.cohortd,
                                   "--node-id",
                                   std::to_string(id),
                                   "--cluster-id",
                                   std::to_string(options_.cluster_id),
                                   "--service",
                                   options_.service,
                                   "--sync",
                                   options_.sync,
                                   "--log-level",
                                   "warn",
                                   "--data-dir",
                                   (dir_ / fmt::format("n{}", id)).string()};
  for (const std::string& member : members_) {
    args.emplace_back("--member");
    args.push_back(member);
  }
  args.insert(args.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const std::string log = (dir_ / fmt::format("n{}.log", id)).string();
  // fork + exec rather than posix_spawn, for the parent-death signal: a bench killed by a timeout or a signal must
  // not leave nodes running (on a 2-core machine they would skew every later measurement). Between fork and exec the
  // child calls only async-signal-safe functions: this process has other threads.
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child < 0)
    throw std::runtime_error(
        fmt::format("cannot start {}: fork: {}", options_.cohortd, std::generic_category().message(errno)));
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent went before the signal was armed
    // A process group of its own: a Ctrl-C at the terminal reaches the tool alone, which stops its nodes itself.
    ::setpgid(0, 0);
    const int null = ::open("/dev/null", O_RDONLY);
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (null < 0 || out < 0 || ::dup2(null, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) ::_exit(127);
    ::execve(options_.cohortd.c_str(), argv.data(), environ);
    ::_exit(127);  // exec failed: the caller sees the node exit
  }
  pid = child;
  // A binary that cannot run exits at once: say so now rather than after a session timeout.
  ::usleep(20'000);
  int status = 0;
  if (::waitpid(child, &status, WNOHANG) == child) {
    pid = 0;
    std::ifstream file(log);
    std::string said((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (said.size() > 2000) said = "..." + said.substr(said.size() - 2000);
    throw std::runtime_error(fmt::format("node {}: {} exited at once (status {}){}", id, options_.cohortd,
                                         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                                         said.empty() ? std::string() : ":\n" + said));
  }
}

std::chrono::microseconds LocalCluster::cpu_time() const {
  std::chrono::microseconds total{0};
  for (const pid_t pid : pids_)
    if (pid != 0) total += process_cpu_time(pid).value_or(std::chrono::microseconds{0});
  return total;
}

}  // namespace cohort::tool
