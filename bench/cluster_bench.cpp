// cluster_bench: end-to-end figures of a real 3-node cluster on this machine. It starts three cohortd processes
// (echo service) on loopback in a fresh directory, connects one client, and measures
//  - commit latency: one 64-byte message at a time, from offer() to the acknowledgement (applied on the leader
//    after a majority stored it), p50/p99/p99.9;
//  - throughput: messages offered as fast as the client buffer allows for a few seconds, acknowledged per second;
//  - the client's heap allocations per message in both (this process runs only the client: the nodes are other
//    processes), with its own I/O thread and in invoker mode (poll() on this thread; its latency too).
// Under each sync policy asked for. The last line is a JSON summary.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cohort/admin.h"
#include "cohort/alloc_counter.h"
#include "cohort/client.h"

namespace {

// Every allocation in this process (tools/cohort/alloc_counter.h): the client's steady state must make none per
// message.
std::uint64_t allocations() { return cohort::tool::allocation_count(); }

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

extern "C" char** environ;

struct Cluster {
  std::vector<pid_t> pids;
  std::vector<std::string> clients;
  std::filesystem::path dir;

  ~Cluster() {
    for (const pid_t pid : pids) kill(pid, SIGKILL);
    for (const pid_t pid : pids) waitpid(pid, nullptr, 0);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

std::uint16_t free_port() {
  // Bind port 0, read the port the kernel chose, and release it for cohortd.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

void start(Cluster& cluster, const std::string& cohortd, const std::string& sync) {
  cluster.dir = std::filesystem::temp_directory_path() / fmt::format("cohort-bench-{}", getpid());
  std::filesystem::create_directories(cluster.dir);
  std::vector<std::string> members;
  for (int i = 1; i <= 3; ++i) {
    const std::string client = fmt::format("127.0.0.1:{}", free_port());
    members.push_back(fmt::format("{},127.0.0.1:{},{}", i, free_port(), client));
    cluster.clients.push_back(client);
  }
  for (int i = 1; i <= 3; ++i) {
    std::vector<std::string> args = {cohortd,
                                     "--node-id",
                                     std::to_string(i),
                                     "--cluster-id",
                                     "7",
                                     "--service",
                                     "echo",
                                     "--sync",
                                     sync,
                                     "--log-level",
                                     "warn",
                                     "--data-dir",
                                     (cluster.dir / fmt::format("n{}", i)).string()};
    for (const std::string& member : members) {
      args.emplace_back("--member");
      args.push_back(member);
    }
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = (cluster.dir / fmt::format("n{}.log", i)).string();
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = 0;
    if (posix_spawn(&pid, cohortd.c_str(), &actions, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("cannot start " + cohortd);
    posix_spawn_file_actions_destroy(&actions);
    cluster.pids.push_back(pid);
  }
}

class Listener final : public cohort::ClientListener {
 public:
  void on_applied(std::uint64_t /*seq*/, std::uint64_t /*position*/) override {
    const std::lock_guard lock(mutex_);
    ++applied_;
    changed_.notify_all();
  }
  std::uint64_t applied() {
    const std::lock_guard lock(mutex_);
    return applied_;
  }
  bool wait_applied(std::uint64_t count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return applied_ >= count; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t applied_ = 0;
};

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<std::size_t>(p * static_cast<double>(values.size())))];
}

struct Figures {
  double p50 = 0, p99 = 0, p999 = 0, throughput = 0;
  double allocations_latency = 0, allocations_throughput = 0;  // per message, own thread
  double invoker_p50 = 0, invoker_p99 = 0, invoker_allocations = 0;
};

// Invoker mode: the same one-at-a-time latency run, the client driven by poll() on this thread (busy-polling, as
// an invoker-mode application with a core to itself would).
void measure_invoker(const std::vector<std::string>& members, std::size_t samples, Figures& figures) {
  Listener listener;
  cohort::ClientOptions options;
  options.cluster_id = 7;
  options.members = members;
  options.threading = cohort::ClientThreading::invoker;
  cohort::Client client(options, listener);
  if (!client.wait_connected(20s)) throw std::runtime_error("invoker mode: no session within 20 s");
  const std::vector<std::byte> message(64, std::byte{0x5A});
  std::uint64_t sent = 0;
  const auto one = [&] {
    if (client.offer(message).status != cohort::OfferStatus::accepted) throw std::runtime_error("offer refused");
    ++sent;
    const auto deadline = Clock::now() + 5s;
    while (listener.applied() < sent) {
      client.poll();
      if (Clock::now() > deadline) throw std::runtime_error("invoker mode: no acknowledgement within 5 s");
    }
  };
  for (int i = 0; i < 1000; ++i) one();
  std::vector<double> latencies;
  latencies.reserve(samples);
  const std::uint64_t allocated = allocations();
  for (std::size_t i = 0; i < samples; ++i) {
    const auto begin = Clock::now();
    one();
    latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
  }
  figures.invoker_allocations =
      static_cast<double>(allocations() - allocated) / static_cast<double>(std::max<std::size_t>(samples, 1));
  figures.invoker_p50 = percentile(latencies, 0.50);
  figures.invoker_p99 = percentile(latencies, 0.99);
  client.close(1s);
}

Figures measure(const std::string& cohortd, const std::string& sync, std::size_t samples, double seconds) {
  Cluster cluster;
  start(cluster, cohortd, sync);
  Listener listener;
  cohort::ClientOptions options;
  options.cluster_id = 7;
  options.members = cluster.clients;
  options.max_buffered_messages = 8192;
  cohort::Client client(options, listener);
  if (!client.wait_connected(20s)) throw std::runtime_error("the cluster did not elect a leader within 20 s");
  const std::vector<std::byte> message(64, std::byte{0x5A});

  // Warm-up, then one message at a time.
  std::uint64_t sent = 0;
  for (int i = 0; i < 1000; ++i) {
    client.offer(message);
    listener.wait_applied(++sent, 5s);
  }
  std::vector<double> latencies;
  latencies.reserve(samples);
  Figures figures;
  std::uint64_t allocated = allocations();
  for (std::size_t i = 0; i < samples; ++i) {
    const auto begin = Clock::now();
    if (client.offer(message).status != cohort::OfferStatus::accepted) throw std::runtime_error("offer refused");
    if (!listener.wait_applied(++sent, 5s)) throw std::runtime_error("no acknowledgement within 5 s");
    latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
  }

  figures.allocations_latency =
      static_cast<double>(allocations() - allocated) / static_cast<double>(std::max<std::size_t>(samples, 1));

  // Throughput: keep the client's buffer full; first for a while unmeasured, so the buffers reach their size.
  for (const auto warm = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(std::min(seconds, 1.0)));
       Clock::now() < warm;) {
    if (client.offer(message).status != cohort::OfferStatus::accepted) std::this_thread::sleep_for(50us);
  }
  const std::uint64_t before = listener.applied();
  allocated = allocations();
  const auto begin = Clock::now();
  const auto end = begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    if (client.offer(message).status != cohort::OfferStatus::accepted) std::this_thread::sleep_for(50us);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  const std::uint64_t acknowledged = listener.applied() - before;
  figures.allocations_throughput =
      static_cast<double>(allocations() - allocated) / static_cast<double>(std::max<std::uint64_t>(acknowledged, 1));
  const double throughput = static_cast<double>(acknowledged) / elapsed;
  client.close(5s);
  figures.p50 = percentile(latencies, 0.50);
  figures.p99 = percentile(latencies, 0.99);
  figures.p999 = percentile(latencies, 0.999);
  figures.throughput = throughput;
  measure_invoker(cluster.clients, samples, figures);
  return figures;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cluster_bench: commit latency and throughput of a 3-node cohortd cluster on this machine"};
  std::string cohortd = COHORTD_PATH;
  std::size_t samples = 5000;
  double seconds = 3;
  bool quick = false;
  std::vector<std::string> policies = {"fsync", "none"};
  app.add_option("--cohortd", cohortd, "the cohortd binary");
  app.add_option("--samples", samples, "messages sent one at a time for the latency figures");
  app.add_option("--seconds", seconds, "length of the throughput run");
  app.add_option("--sync", policies, "sync policies to measure")->delimiter(',');
  app.add_flag("--quick", quick, "a short run (for the smoke test)");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    samples = 200;
    seconds = 0.3;
  }
  try {
    std::string json = "{";
    for (const std::string& sync : policies) {
      const Figures f = measure(cohortd, sync, samples, seconds);
      std::printf(
          "3 nodes, echo service, sync %-5s: commit latency (64 B, one at a time) p50 %.0f us, p99 %.0f us, "
          "p99.9 %.0f us; throughput (64 B, pipelined) %.0f messages/s\n"
          "  client allocations per message: %.3f one at a time, %.3f pipelined (own thread); invoker mode: "
          "%.3f, commit latency p50 %.0f us, p99 %.0f us\n",
          sync.c_str(), f.p50, f.p99, f.p999, f.throughput, f.allocations_latency, f.allocations_throughput,
          f.invoker_allocations, f.invoker_p50, f.invoker_p99);
      std::fflush(stdout);
      json += fmt::format(
          "{}\"{}\": {{\"p50_us\": {:.0f}, \"p99_us\": {:.0f}, \"p999_us\": {:.0f}, \"per_s\": {:.0f}, "
          "\"client_allocations_per_message\": {:.3f}, \"client_allocations_per_message_pipelined\": {:.3f}, "
          "\"invoker_p50_us\": {:.0f}, \"invoker_p99_us\": {:.0f}, \"invoker_allocations_per_message\": {:.3f}}}",
          json.size() > 1 ? ", " : "", sync, f.p50, f.p99, f.p999, f.throughput, f.allocations_latency,
          f.allocations_throughput, f.invoker_p50, f.invoker_p99, f.invoker_allocations);
    }
    std::printf("%s}\n", json.c_str());
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cluster_bench: %s\n", error.what());
    return 1;
  }
}
