// `cohort bench` (bench.h). Threads: the main thread offers (open loop) and reads the figures between phases; each
// client's I/O thread runs its Driver's callbacks, which record latencies and, in the closed-loop phases, offer the
// next message; in --failover a killer thread kills leaders and watches for the next one. A Driver's histogram is
// written only by its client's thread and read only once every message offered has been answered: the release
// increment of `answered_` after each record, and the main thread's acquire read of it, order the two.

#include "cohort/bench.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cohort/admin.h"
#include "cohort/alloc_counter.h"
#include "cohort/client.h"
#include "cohort/floor.h"
#include "cohort/histogram.h"
#include "cohort/local_cluster.h"
#include "cohort/stream_report.h"

namespace cohort::tool {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
std::int64_t to_ns(double seconds) { return static_cast<std::int64_t>(seconds * 1e9); }

// Ctrl-C (or SIGTERM) ends a run early and cleanly: the main thread's waits throw Interrupted, and unwinding closes
// the clients, stops the nodes and removes the run's directory (a data directory can be gigabytes). A second one
// ends the process at once.
std::atomic<int> g_interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free, "counted in a signal handler");

std::atomic<int> g_interrupt_signal{0};

extern "C" void on_interrupt(int signal) {
  g_interrupt_signal.store(signal, std::memory_order_relaxed);
  if (g_interrupts.fetch_add(1, std::memory_order_relaxed) > 0) {
    ::signal(signal, SIG_DFL);
    ::raise(signal);
  }
}

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

void check_interrupt() {
  if (g_interrupts.load(std::memory_order_relaxed) > 0) throw Interrupted();
}

void sleep_until_ns(std::int64_t when) {
  check_interrupt();
  std::this_thread::sleep_until(Clock::time_point(std::chrono::nanoseconds(when)));
}

/// Client::wait_connected, cut short by an interrupt (within 50 ms).
bool wait_connected(Client& client, std::chrono::seconds timeout) {
  for (const auto until = Clock::now() + timeout; Clock::now() < until;) {
    check_interrupt();
    if (client.wait_connected(50ms)) return true;
  }
  return false;
}

/// A sleep that an interrupt cuts short (within 10 ms).
void pause_for(std::chrono::duration<double> length) {
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(length);
  for (auto now = Clock::now(); now < until; now = Clock::now()) {
    check_interrupt();
    std::this_thread::sleep_for(std::min<Clock::duration>(until - now, 10ms));
  }
}

/// Messages a client may hold unanswered.
constexpr std::size_t kMaxInFlight = 16384;
/// Slots in a client's ring of send times: a power of two (a seq's slot is seq & mask), and four times the client's
/// buffer, because the client frees a message's place in its buffer before it tells the listener: a later offer
/// must not take the slot of an answer still on its way. Each slot also names its seq, so a late answer is checked.
constexpr std::size_t kSendTimeSlots = 4 * kMaxInFlight;
/// A client whose buffer stays full this long (the cluster stopped answering) fails the run.
constexpr auto kOfferTimeout = std::chrono::seconds(60);
/// How long the answers to every offered message may take once a phase stops offering.
constexpr auto kAnswerTimeout = 60s;

/// One client of the benchmark and what it measured.
class Driver final : public ClientListener {
 public:
  Driver(const std::vector<std::string>& members, std::uint64_t cluster_id, std::size_t size, IdleStrategy idle)
      : message_(size, std::byte{0x5A}), intended_(kSendTimeSlots) {
    ClientOptions options;
    options.idle = idle;
    options.cluster_id = cluster_id;
    options.members = members;
    options.max_buffered_messages = kMaxInFlight;
    // A cluster gone for this long ends the run (offers then fail) instead of leaving it waiting forever.
    options.give_up_after = std::chrono::seconds(30);
    options.max_buffered_bytes = std::max<std::size_t>(64U << 20U, 4 * size);
    client_ = std::make_unique<Client>(options, *this);
  }
  ~Driver() override { client_.reset(); }  // its thread stops before the listener goes
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  Client& client() { return *client_; }

  /// Latencies of messages intended for [from, until) are recorded; closed loop: each answer before `refill_until`
  /// offers the next message.
  void start_phase(std::int64_t from, std::int64_t until, std::int64_t refill_until) {
    histogram_.clear();
    record_from_.store(from, std::memory_order_relaxed);
    record_until_.store(until, std::memory_order_relaxed);
    refill_until_.store(refill_until, std::memory_order_release);
  }

  /// Offers one message meant to go at `intended` (ns); false if the client's buffer is full.
  bool offer(std::int64_t intended) {
    const std::lock_guard lock(offer_mutex_);
    const std::uint64_t seq = offered_.load(std::memory_order_relaxed) + 1;
    intended_[seq & (kSendTimeSlots - 1)] = SendTime{seq, intended};
    const Offer offer = client_->offer(message_);
    switch (offer.status) {
      case OfferStatus::accepted:
        if (offer.seq != seq) throw std::logic_error("the client numbered an offer out of turn");
        offered_.store(seq, std::memory_order_release);
        return true;
      case OfferStatus::back_pressured: return false;
      case OfferStatus::too_large:
        throw std::runtime_error(fmt::format("the client refuses {}-byte messages as too large", message_.size()));
      case OfferStatus::closed: break;
    }
    throw std::runtime_error(fmt::format("the client closed: {}", client_->state_reason().second));
  }

  /// Offers what the closed loop could not (its buffer was full when an answer came).
  void top_up(std::int64_t now) {
    while (deficit_.load(std::memory_order_acquire) > 0 && now < refill_until_.load(std::memory_order_relaxed)) {
      if (!offer(now)) return;
      deficit_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::uint64_t offered() const { return offered_.load(std::memory_order_acquire); }
  std::uint64_t answered() const { return answered_.load(std::memory_order_acquire); }
  std::uint64_t applied() const { return applied_.load(std::memory_order_relaxed); }
  std::uint64_t rejected() const { return rejected_.load(std::memory_order_relaxed); }
  std::uint64_t unknown() const { return unknown_.load(std::memory_order_relaxed); }
  const Histogram& histogram() const { return histogram_; }

  /// Failover: the first answer to a message meant to go after `from` is kept (first_answer_after()).
  void watch_from(std::int64_t from) {
    first_answer_after_.store(0, std::memory_order_relaxed);
    watch_from_.store(from, std::memory_order_release);
  }
  std::int64_t first_answer_after() const { return first_answer_after_.load(std::memory_order_acquire); }

  void on_applied(std::uint64_t seq, std::uint64_t /*position*/) override {
    applied_.fetch_add(1, std::memory_order_relaxed);
    answer(seq);
  }
  void on_rejected(std::uint64_t seq, Reason /*reason*/, std::string_view /*text*/) override {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    answer(seq);
  }
  void on_unknown(std::uint64_t seq, Reason /*reason*/, std::string_view /*text*/) override {
    unknown_.fetch_add(1, std::memory_order_relaxed);
    answer(seq);
  }

 private:
  void answer(std::uint64_t seq) {
    const std::int64_t now = now_ns();
    SendTime sent;
    {
      const std::lock_guard lock(offer_mutex_);  // the slot was written under it, perhaps on another thread
      sent = intended_[seq & (kSendTimeSlots - 1)];
    }
    // Another seq in the slot: this answer is older than the ring (cannot happen with kSendTimeSlots; never misread).
    const std::int64_t intended = sent.seq == seq ? sent.at : std::numeric_limits<std::int64_t>::min();
    if (sent.seq == seq && intended >= record_from_.load(std::memory_order_relaxed) &&
        intended < record_until_.load(std::memory_order_relaxed))
      histogram_.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - intended)));
    const std::int64_t watch = watch_from_.load(std::memory_order_acquire);
    if (watch != 0 && intended > watch && first_answer_after_.load(std::memory_order_relaxed) == 0)
      first_answer_after_.store(now, std::memory_order_release);
    // The next message of a closed loop is offered before this answer counts: once every offer is answered, no
    // callback is about to offer (or record) more.
    if (now < refill_until_.load(std::memory_order_acquire)) {
      try {
        if (!offer(now)) deficit_.fetch_add(1, std::memory_order_acq_rel);
      } catch (const std::exception&) {
        // A callback must not throw: the main thread finds the closed client on its next offer.
        refill_until_.store(0, std::memory_order_relaxed);
      }
    }
    answered_.fetch_add(1, std::memory_order_release);
  }

  struct SendTime {
    std::uint64_t seq = 0;
    std::int64_t at = 0;  // ns
  };

  std::vector<std::byte> message_;
  std::mutex offer_mutex_;          // offers from the main thread and from callbacks: seq order = slot order
  std::vector<SendTime> intended_;  // seq s's send time at s & (kSendTimeSlots - 1)
  Histogram histogram_;             // client thread only, during a phase
  std::atomic<std::int64_t> record_from_{0};
  std::atomic<std::int64_t> record_until_{0};
  std::atomic<std::int64_t> refill_until_{0};
  std::atomic<std::int64_t> watch_from_{0};
  std::atomic<std::int64_t> first_answer_after_{0};
  std::atomic<std::uint64_t> offered_{0};
  std::atomic<std::uint64_t> answered_{0};
  std::atomic<std::uint64_t> applied_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> unknown_{0};
  std::atomic<std::uint64_t> deficit_{0};
  std::unique_ptr<Client> client_;  // last: built once the listener's state is, gone before it
};

using Drivers = std::vector<std::unique_ptr<Driver>>;

Drivers connect_drivers(const BenchOptions& options, const std::vector<std::string>& members, int clients,
                        std::size_t size) {
  const IdleStrategy idle = parse_idle_strategy(options.idle).value_or(IdleStrategy::block);
  Drivers drivers;
  for (int i = 0; i < clients; ++i)
    drivers.push_back(std::make_unique<Driver>(members, options.cluster_id, size, idle));
  for (auto& driver : drivers)
    if (!wait_connected(driver->client(), 30s))
      throw std::runtime_error(fmt::format("no session within 30 s ({})", driver->client().state_reason().second));
  return drivers;
}

void wait_answered(const Drivers& drivers) {
  const auto deadline = Clock::now() + kAnswerTimeout;
  for (const auto& driver : drivers) {
    while (driver->answered() < driver->offered()) {
      if (Clock::now() > deadline)
        throw std::runtime_error(fmt::format("{} messages still unanswered after {} s",
                                             driver->offered() - driver->answered(), kAnswerTimeout.count()));
      pause_for(1ms);
    }
  }
}

std::chrono::microseconds own_cpu_time() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return std::chrono::seconds(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         std::chrono::microseconds(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

/// Counters read at the start and the end of a measured time.
struct Mark {
  std::int64_t at = 0;
  std::uint64_t applied = 0;
  std::chrono::microseconds node_cpu{0};
  std::chrono::microseconds client_cpu{0};
  std::uint64_t allocations = 0;
};

Mark mark(const Drivers& drivers, const LocalCluster* cluster) {
  Mark m;
  m.at = now_ns();
  for (const auto& driver : drivers) m.applied += driver->applied();
  if (cluster != nullptr) m.node_cpu = cluster->cpu_time();
  m.client_cpu = own_cpu_time();
  m.allocations = allocation_count();
  return m;
}

struct Phase {
  std::string name;  // latency or throughput
  Histogram latency;
  double seconds = 0;
  std::uint64_t messages = 0;           // applied in the measured time
  double node_cpu_us_per_message = -1;  // -1: not known (a cluster this tool did not start)
  double client_cpu_us_per_message = 0;
  double client_allocations_per_message = 0;

  double per_second() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
};

Phase finish_phase(std::string name, const Drivers& drivers, const Mark& begin, const Mark& end,
                   const LocalCluster* cluster) {
  wait_answered(drivers);
  Phase phase;
  phase.name = std::move(name);
  for (const auto& driver : drivers) phase.latency.merge(driver->histogram());
  phase.seconds = static_cast<double>(end.at - begin.at) / 1e9;
  phase.messages = end.applied - begin.applied;
  const double messages = static_cast<double>(std::max<std::uint64_t>(phase.messages, 1));
  if (cluster != nullptr)
    phase.node_cpu_us_per_message = static_cast<double>((end.node_cpu - begin.node_cpu).count()) / messages;
  phase.client_cpu_us_per_message = static_cast<double>((end.client_cpu - begin.client_cpu).count()) / messages;
  phase.client_allocations_per_message = static_cast<double>(end.allocations - begin.allocations) / messages;
  return phase;
}

/// Sleeps until `until`, offering what closed loops could not in the meantime.
void wait_topping_up(const Drivers& drivers, std::int64_t until) {
  for (std::int64_t now = now_ns(); now < until; now = now_ns()) {
    for (const auto& driver : drivers) driver->top_up(now);
    sleep_until_ns(std::min(until, now + 1'000'000));
  }
}

/// Closed loop: every client keeps `in_flight` messages outstanding, each answer sends the next.
Phase run_closed_loop(const std::string& name, const Drivers& drivers, std::size_t in_flight, double warmup_s,
                      double duration_s, const LocalCluster* cluster) {
  const std::int64_t start = now_ns();
  const std::int64_t from = start + to_ns(warmup_s);
  const std::int64_t until = from + to_ns(duration_s);
  for (const auto& driver : drivers) driver->start_phase(from, until, until);
  for (const auto& driver : drivers)
    for (std::size_t i = 0; i < in_flight; ++i)
      if (!driver->offer(now_ns())) throw std::runtime_error("the client's buffer is full before the window is");
  wait_topping_up(drivers, from);
  const Mark begin = mark(drivers, cluster);
  wait_topping_up(drivers, until);
  const Mark end = mark(drivers, cluster);
  return finish_phase(name, drivers, begin, end, cluster);
}

/// Open loop: message i goes at start + i / rate, to client i % clients, whether or not earlier ones were
/// answered; a full buffer delays the message but not its intended time.
Phase run_open_loop(const Drivers& drivers, double rate, double warmup_s, double duration_s,
                    const LocalCluster* cluster, const std::atomic<bool>* stop = nullptr) {
  const std::int64_t start = now_ns();
  const std::int64_t from = start + to_ns(warmup_s);
  const std::int64_t until = from + to_ns(duration_s);
  for (const auto& driver : drivers) driver->start_phase(from, until, 0);
  const double period_ns = 1e9 / rate;
  std::optional<Mark> begin;
  for (std::uint64_t i = 0;; ++i) {
    const std::int64_t intended = start + static_cast<std::int64_t>(static_cast<double>(i) * period_ns);
    if (intended >= until || (stop != nullptr && stop->load(std::memory_order_acquire))) break;
    if (!begin && intended >= from) begin = mark(drivers, cluster);
    // Sleeping costs a wake-up: only for gaps worth one; a late sender catches up at once.
    if (intended > now_ns() + 20'000) sleep_until_ns(intended);
    Driver& driver = *drivers[i % drivers.size()];
    for (const auto give_up = Clock::now() + kOfferTimeout; !driver.offer(intended);) {
      if (stop != nullptr && stop->load(std::memory_order_acquire)) break;
      if (Clock::now() > give_up)
        throw std::runtime_error(fmt::format("the cluster answered nothing for {} s", kOfferTimeout.count()));
      check_interrupt();
      std::this_thread::sleep_for(50us);
    }
  }
  if (!begin) begin = mark(drivers, cluster);
  const Mark end = mark(drivers, cluster);
  return finish_phase("latency", drivers, *begin, end, cluster);
}

// ---- Output -------------------------------------------------------------------------------------------------------

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

std::string ratio(double figure, double floor) {
  return floor > 0 ? fmt::format(" ({:.2f}x floor)", figure / floor) : std::string();
}

/// figure / floor as a JSON number, or null when the floor has no figure (JSON has no inf or nan).
std::string json_ratio(double figure, double floor) {
  return floor > 0 && std::isfinite(figure / floor) ? fmt::format("{:.3f}", figure / floor) : std::string("null");
}

LatencyFigures figures_of(const Histogram& h) {
  return LatencyFigures{us(h.percentile(0.5)),   us(h.percentile(0.9)), us(h.percentile(0.99)),
                        us(h.percentile(0.999)), us(h.max()),           h.count()};
}

std::string latency_text(const LatencyFigures& f) {
  return fmt::format("p50 {:.0f} us, p90 {:.0f} us, p99 {:.0f} us, p99.9 {:.0f} us, max {:.0f} us", f.p50_us, f.p90_us,
                     f.p99_us, f.p999_us, f.max_us);
}

std::string cpu_json(const Phase& p) {
  return fmt::format(
      R"("node_cpu_us_per_message":{},"client_cpu_us_per_message":{:.2f},)"
      R"("client_allocations_per_message":{:.3f})",
      p.node_cpu_us_per_message < 0 ? std::string("null") : fmt::format("{:.2f}", p.node_cpu_us_per_message),
      p.client_cpu_us_per_message, p.client_allocations_per_message);
}

std::string cpu_text(const Phase& p) {
  std::string text = "CPU per message: ";
  if (p.node_cpu_us_per_message >= 0) text += fmt::format("nodes {:.2f} us, ", p.node_cpu_us_per_message);
  return text + fmt::format("client {:.2f} us; client allocations per message {:.3f}", p.client_cpu_us_per_message,
                            p.client_allocations_per_message);
}

/// Runs gnuplot on `script`; throws with its complaint if it fails.
void gnuplot(const std::string& script) {
  FILE* pipe = ::popen("gnuplot 2>&1", "w");
  if (pipe == nullptr) throw std::runtime_error("cannot run gnuplot (install gnuplot-nox)");
  std::fwrite(script.data(), 1, script.size(), pipe);
  const int status = ::pclose(pipe);
  if (status != 0)
    throw std::runtime_error(fmt::format("gnuplot failed (status {}); is it installed (gnuplot-nox)?", status));
}

/// The latency distribution as a percentile plot (x: 1 / (1 - percentile), log scale), the floor's percentiles
/// beside it.
void plot_latency(const std::string& file, const std::string& title, const Histogram& h,
                  const std::optional<LatencyFigures>& floor) {
  std::string data = "$cohort << EOD\n";
  std::uint64_t seen = 0;
  h.for_each([&](std::uint64_t value, std::uint64_t count) {
    seen += count;
    const double below = static_cast<double>(seen) / static_cast<double>(h.count());
    if (below < 1.0) data += fmt::format("{} {:.2f}\n", 1.0 / (1.0 - below), us(value));
  });
  data += "EOD\n";
  std::string plot = "plot $cohort using 1:2 with lines lw 2 title 'Cohort'";
  if (floor) {
    data += fmt::format("$floor << EOD\n2 {:.2f}\n10 {:.2f}\n100 {:.2f}\n1000 {:.2f}\nEOD\n", floor->p50_us,
                        floor->p90_us, floor->p99_us, floor->p999_us);
    plot += ", $floor using 1:2 with linespoints lw 2 title 'floor (minimal replicator)'";
  }
  gnuplot(
      fmt::format("set terminal svg size 800,480 dynamic\nset output '{}'\nset title '{}'\n"
                  "set logscale x\nset xlabel 'percentile'\nset ylabel 'latency (us)'\nset grid\n"
                  "set xtics ('50%' 2, '90%' 10, '99%' 100, '99.9%' 1000, '99.99%' 10000)\nset key top left\n"
                  "{}{}\n",
                  file, title, data, plot));
}

// ---- The modes ----------------------------------------------------------------------------------------------------

struct Target {
  std::unique_ptr<LocalCluster> cluster;  // null: a running cluster named by --members
  std::vector<std::string> members;
};

std::filesystem::path bench_dir(const BenchOptions& options) {
  return options.dir.empty() ? std::filesystem::temp_directory_path() / fmt::format("cohort-bench-{}", ::getpid())
                             : std::filesystem::path(options.dir);
}

Target start_target(const BenchOptions& options, const std::string& sync, const std::filesystem::path& dir) {
  Target target;
  if (!options.members.empty()) {
    target.members = options.members;
    return target;
  }
  LocalClusterOptions cluster;
  cluster.cohortd = options.cohortd;
  cluster.nodes = options.nodes;
  cluster.cluster_id = options.cluster_id;
  cluster.sync = sync;
  cluster.dir = dir / fmt::format("cluster-{}", sync);
  cluster.keep = options.keep;
  cluster.extra_flags = {"--idle", options.idle};
  if (!options.json) std::fprintf(stderr, "starting %d cohortd nodes in %s\n", options.nodes, cluster.dir.c_str());
  target.cluster = std::make_unique<LocalCluster>(cluster);
  target.members = target.cluster->client_endpoints();
  return target;
}

/// The floor, and the options it was measured with.
struct Floor {
  FloorOptions options;
  FloorFigures figures;
};

std::optional<Floor> measure_floor_for(const BenchOptions& options, const std::string& sync, std::size_t size,
                                       std::size_t window, const std::filesystem::path& dir) {
  if (!options.floor) return std::nullopt;
  if (!options.json) std::fprintf(stderr, "measuring this machine's floor (sync %s, %zu B)\n", sync.c_str(), size);
  FloorOptions floor;
  floor.message_size = size;
  floor.fsync = sync == "fsync";
  floor.dir = dir / "floor";
  floor.rate = options.rate;
  floor.seconds = std::min(options.duration_s, 3.0);
  floor.window = window;
  return Floor{floor, measure_floor(floor)};
}

std::string config_json(const BenchOptions& o) {
  return fmt::format(R"({{"nodes":{},"target":{},"clients":{},"size":{},"sync":{},"mode":{},"rate":{},"window":{},)"
                     R"("duration_s":{},"warmup_s":{},"idle":{},"service":"echo"}})",
                     o.members.empty() ? o.nodes : static_cast<int>(o.members.size()),
                     json_string(o.members.empty() ? "local" : "running"), o.clients, o.size, json_string(o.sync),
                     json_string(o.mode), o.rate, o.window, o.duration_s, o.warmup_s, json_string(o.idle));
}

int run_single(const BenchOptions& options) {
  const std::filesystem::path dir = bench_dir(options);
  std::filesystem::create_directories(dir);
  // The floor forks: before any thread of ours exists.
  const std::optional<Floor> measured = measure_floor_for(
      options, options.sync, options.size, options.window * static_cast<std::size_t>(options.clients), dir);
  const std::optional<FloorFigures> floor = measured ? std::optional(measured->figures) : std::nullopt;
  Target target = start_target(options, options.sync, dir);
  Drivers drivers = connect_drivers(options, target.members, options.clients, options.size);
  std::optional<Phase> latency;
  std::optional<Phase> throughput;
  if (options.mode != "throughput") {
    if (!options.json) std::fprintf(stderr, "latency: %s\n", options.rate > 0 ? "open loop" : "one at a time");
    latency = options.rate > 0
                  ? run_open_loop(drivers, options.rate, options.warmup_s, options.duration_s, target.cluster.get())
                  : run_closed_loop("latency", drivers, 1, options.warmup_s, options.duration_s, target.cluster.get());
  }
  if (options.mode != "latency") {
    if (!options.json) std::fprintf(stderr, "throughput: %zu in flight per client\n", options.window);
    throughput = run_closed_loop("throughput", drivers, options.window, options.warmup_s, options.duration_s,
                                 target.cluster.get());
  }
  std::uint64_t offered = 0;
  std::uint64_t applied = 0;
  std::uint64_t rejected = 0;
  std::uint64_t unknown = 0;
  for (const auto& driver : drivers) {
    offered += driver->offered();
    applied += driver->applied();
    rejected += driver->rejected();
    unknown += driver->unknown();
  }
  drivers.clear();
  const bool all_answered = applied == offered;

  if (!options.plot.empty() && latency) {
    try {
      plot_latency(
          options.plot,
          fmt::format("cohort bench: {} nodes, sync {}, {} B, {}", target.members.size(), options.sync, options.size,
                      options.rate > 0 ? fmt::format("{:.0f} msg/s", options.rate) : std::string("one at a time")),
          latency->latency, floor ? std::optional(floor->replicator) : std::nullopt);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "cohort bench: no plot: %s\n", error.what());  // the figures are printed all the same
    }
  }

  if (options.json) {
    std::string out = fmt::format(R"({{"config":{},"floor":{})", config_json(options),
                                  measured ? floor_json(measured->options, measured->figures) : std::string("null"));
    if (latency) {
      out += fmt::format(R"(,"latency":{{"messages_per_s":{:.0f},"latency_us":{},{})", latency->per_second(),
                         latency_json(figures_of(latency->latency)), cpu_json(*latency));
      if (floor)
        out += fmt::format(R"(,"p50_vs_floor":{},"p99_vs_floor":{})",
                           json_ratio(us(latency->latency.percentile(0.5)), floor->replicator.p50_us),
                           json_ratio(us(latency->latency.percentile(0.99)), floor->replicator.p99_us));
      out += "}";
    } else {
      out += R"(,"latency":null)";
    }
    if (throughput) {
      out += fmt::format(R"(,"throughput":{{"messages_per_s":{:.0f},"mb_per_s":{:.2f},"latency_us":{},{})",
                         throughput->per_second(), throughput->per_second() * static_cast<double>(options.size) / 1e6,
                         latency_json(figures_of(throughput->latency)), cpu_json(*throughput));
      if (floor)
        out += fmt::format(R"(,"vs_floor":{})", json_ratio(throughput->per_second(), floor->replicator_messages_per_s));
      out += "}";
    } else {
      out += R"(,"throughput":null)";
    }
    out += fmt::format(R"(,"messages":{{"offered":{},"applied":{},"rejected":{},"unknown":{},"all_answered":{}}}}})",
                       offered, applied, rejected, unknown, all_answered ? "true" : "false");
    std::printf("%s\n", out.c_str());
  } else {
    fmt::print("cohort bench: {} node{} ({}), echo service, sync {}, {} client{}, {} B messages, idle {}\n",
               target.members.size(), target.members.size() == 1 ? "" : "s", target.cluster ? "local" : "running",
               options.sync, options.clients, options.clients == 1 ? "" : "s", options.size, options.idle);
    if (floor) {
      fmt::print("floor:      TCP round trip {}\n", latency_text(floor->tcp_round_trip));
      fmt::print("            fdatasync {}\n", latency_text(floor->fdatasync));
      fmt::print("            minimal replicator (3 processes, sync {}) {}; {:.0f} msg/s at {} in flight\n",
                 options.sync, latency_text(floor->replicator), floor->replicator_messages_per_s,
                 options.window * static_cast<std::size_t>(options.clients));
    }
    if (latency) {
      fmt::print("latency:    {}, {:.0f} s after {:.0f} s warm-up, {} messages\n",
                 options.rate > 0 ? fmt::format("open loop at {:.0f} msg/s", options.rate) : "one at a time",
                 options.duration_s, options.warmup_s, latency->latency.count());
      fmt::print("            {}\n", latency_text(figures_of(latency->latency)));
      if (floor)
        fmt::print("            p50{}, p99{}\n", ratio(us(latency->latency.percentile(0.5)), floor->replicator.p50_us),
                   ratio(us(latency->latency.percentile(0.99)), floor->replicator.p99_us));
      fmt::print("            {}\n", cpu_text(*latency));
    }
    if (throughput) {
      fmt::print("throughput: {:.0f} msg/s{}, {:.1f} MB/s, {} in flight per client\n", throughput->per_second(),
                 floor ? ratio(throughput->per_second(), floor->replicator_messages_per_s) : std::string(),
                 throughput->per_second() * static_cast<double>(options.size) / 1e6, options.window);
      fmt::print("            latency under that load: {}\n", latency_text(figures_of(throughput->latency)));
      fmt::print("            {}\n", cpu_text(*throughput));
    }
    fmt::print("messages:   {} offered, {} applied, {} rejected, {} unknown{}\n", offered, applied, rejected, unknown,
               all_answered ? "" : "  <- NOT every message was applied");
  }
  return all_answered ? 0 : 1;
}

/// The leader's index in the local cluster, and its term; nullopt if no node says it leads.
std::optional<std::pair<int, std::uint64_t>> find_leader(const LocalCluster& cluster, std::uint64_t cluster_id,
                                                         std::uint64_t above_term) {
  std::optional<std::pair<int, std::uint64_t>> best;
  for (int i = 0; i < cluster.size(); ++i) {
    if (cluster.pid(i) == 0) continue;
    const StatusResult result =
        query_status(cluster.client_endpoints()[static_cast<std::size_t>(i)], cluster_id, 200ms);
    if (result.ok && result.status.role == "leader" && result.status.term > above_term &&
        (!best || result.status.term > best->second))
      best = {i, result.status.term};
  }
  return best;
}

struct FailoverRound {
  int killed = 0;  // node id
  double new_leader_ms = 0;
  double outage_ms = 0;
};

std::vector<FailoverRound> kill_leaders(LocalCluster& cluster, const BenchOptions& options, const Drivers& drivers) {
  std::vector<FailoverRound> rounds;
  pause_for(std::chrono::duration<double>(options.warmup_s));
  for (int round = 0; round < options.rounds; ++round) {
    std::optional<std::pair<int, std::uint64_t>> leader;
    for (const auto deadline = Clock::now() + 20s; !leader && Clock::now() < deadline; pause_for(10ms))
      leader = find_leader(cluster, options.cluster_id, 0);
    if (!leader) throw std::runtime_error("no node says it leads, 20 s after the last round");
    const std::int64_t killed_at = now_ns();
    for (const auto& driver : drivers) driver->watch_from(killed_at);
    cluster.kill_node(leader->first);
    FailoverRound result;
    result.killed = leader->first + 1;
    std::optional<std::pair<int, std::uint64_t>> next;
    for (const auto deadline = Clock::now() + 30s; !next && Clock::now() < deadline; pause_for(2ms))
      next = find_leader(cluster, options.cluster_id, leader->second);
    if (!next) throw std::runtime_error("no new leader within 30 s of the kill");
    result.new_leader_ms = static_cast<double>(now_ns() - killed_at) / 1e6;
    std::int64_t first = 0;
    for (const auto deadline = Clock::now() + 30s; first == 0 && Clock::now() < deadline; pause_for(1ms)) {
      for (const auto& driver : drivers) {
        const std::int64_t answered = driver->first_answer_after();
        if (answered != 0 && (first == 0 || answered < first)) first = answered;
      }
    }
    if (first == 0) throw std::runtime_error("the client was not served within 30 s of the kill");
    result.outage_ms = static_cast<double>(first - killed_at) / 1e6;
    for (const auto& driver : drivers) driver->watch_from(0);
    if (!options.json)
      std::fprintf(stderr, "round %d: killed leader %d; new leader after %.0f ms; client served again after %.0f ms\n",
                   round + 1, result.killed, result.new_leader_ms, result.outage_ms);
    rounds.push_back(result);
    cluster.start_node(leader->first);
    pause_for(2s);  // the restarted node catches up before the next leader goes
  }
  return rounds;
}

std::pair<double, double> median_max(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return {values[values.size() / 2], values.back()};
}

int run_failover(const BenchOptions& options) {
  if (!options.members.empty()) throw std::runtime_error("--failover kills nodes: only with a local cluster");
  if (options.nodes < 3) throw std::runtime_error("--failover needs at least 3 nodes");
  if (options.rate <= 0) throw std::runtime_error("--failover sends at --rate: give one above 0");
  const std::filesystem::path dir = bench_dir(options);
  std::filesystem::create_directories(dir);
  Target target = start_target(options, options.sync, dir);
  Drivers drivers = connect_drivers(options, target.members, options.clients, options.size);
  // The sender runs on a thread of its own and the nodes are killed and started from this one: a node started with
  // a parent-death signal (local_cluster.cpp) dies with the thread that started it, which must outlive the run.
  std::atomic<bool> stop{false};
  std::exception_ptr failure;
  std::thread sender([&] {
    try {
      // Long enough for every round; the rounds end it. No CPU figure: nodes come and go.
      run_open_loop(drivers, options.rate, 0, 1e6, nullptr, &stop);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  std::vector<FailoverRound> rounds;
  try {
    rounds = kill_leaders(*target.cluster, options, drivers);
  } catch (...) {
    stop.store(true, std::memory_order_release);
    sender.join();
    throw;
  }
  stop.store(true, std::memory_order_release);
  sender.join();
  if (failure) std::rethrow_exception(failure);
  std::uint64_t offered = 0;
  std::uint64_t applied = 0;
  for (const auto& driver : drivers) {
    offered += driver->offered();
    applied += driver->applied();
  }
  drivers.clear();
  std::vector<double> outages;
  std::vector<double> elections;
  for (const FailoverRound& r : rounds) {
    outages.push_back(r.outage_ms);
    elections.push_back(r.new_leader_ms);
  }
  const auto [outage_median, outage_max] = median_max(outages);
  const auto [election_median, election_max] = median_max(elections);
  if (options.json) {
    std::string list;
    for (const FailoverRound& r : rounds)
      list += fmt::format(R"({}{{"killed":{},"new_leader_ms":{:.1f},"outage_ms":{:.1f}}})", list.empty() ? "" : ",",
                          r.killed, r.new_leader_ms, r.outage_ms);
    std::printf(
        R"({"config":%s,"failover":{"rounds":[%s],"outage_ms":{"median":%.1f,"max":%.1f},)"
        R"("new_leader_ms":{"median":%.1f,"max":%.1f}},"messages":{"offered":%llu,"applied":%llu,"all_answered":%s}})"
        "\n",
        config_json(options).c_str(), list.c_str(), outage_median, outage_max, election_median, election_max,
        static_cast<unsigned long long>(offered), static_cast<unsigned long long>(applied),
        applied == offered ? "true" : "false");
  } else {
    fmt::print("failover: {} rounds, leader killed with SIGKILL under {:.0f} msg/s\n", rounds.size(), options.rate);
    fmt::print("  client served again after the kill: median {:.0f} ms, max {:.0f} ms\n", outage_median, outage_max);
    fmt::print("  a new leader after the kill:        median {:.0f} ms, max {:.0f} ms\n", election_median,
               election_max);
    fmt::print("messages: {} offered, {} applied{}\n", offered, applied,
               applied == offered ? "" : "  <- NOT every message was applied");
  }
  return applied == offered ? 0 : 1;
}

// ---- Sweep --------------------------------------------------------------------------------------------------------

constexpr int kSweepClients[] = {1, 4, 16, 64, 256};
constexpr std::size_t kSweepSizes[] = {64, 1024, 16384};
constexpr const char* kSweepPolicies[] = {"none", "fsync"};
constexpr const char* kSweepBegin = "<!-- cohort bench --sweep: begin -->";
constexpr const char* kSweepEnd = "<!-- cohort bench --sweep: end -->";

struct SweepPoint {
  std::string sync;
  std::size_t size = 0;
  int clients = 0;
  Phase phase;
  double floor_per_s = 0;
};

std::string size_name(std::size_t size) {
  return size >= 1024 ? fmt::format("{} KiB", size / 1024) : fmt::format("{} B", size);
}

void plot_sweep(const std::filesystem::path& file, const std::string& title, const std::string& ylabel,
                const std::vector<SweepPoint>& points, const std::string& sync, double (*figure)(const SweepPoint&)) {
  std::string data;
  std::string plot = "plot ";
  int block = 0;
  for (const std::size_t size : kSweepSizes) {
    data += fmt::format("$d{} << EOD\n", block);
    for (const SweepPoint& p : points)
      if (p.sync == sync && p.size == size) data += fmt::format("{} {:.3f}\n", p.clients, figure(p));
    data += "EOD\n";
    plot += fmt::format("{}$d{} using 1:2 with linespoints lw 2 title '{}'", block == 0 ? "" : ", ", block,
                        size_name(size));
    ++block;
  }
  gnuplot(
      fmt::format("set terminal svg size 640,400 dynamic\nset output '{}'\nset title '{}'\nset logscale x 2\n"
                  "set logscale y\nset xlabel 'clients'\nset ylabel '{}'\nset grid\nset key bottom right\n{}{}\n",
                  file.string(), title, ylabel, data, plot));
}

int run_sweep(const BenchOptions& options) {
  if (options.output.empty()) throw std::runtime_error("--sweep writes its table into --output FILE.md");
  const std::filesystem::path dir = bench_dir(options);
  std::filesystem::create_directories(dir);
  const std::filesystem::path output(options.output);
  const std::filesystem::path charts = output.parent_path() / "bench";
  std::filesystem::create_directories(charts);
  std::vector<SweepPoint> points;
  for (const char* sync : kSweepPolicies) {
    std::vector<double> floors;
    for (const std::size_t size : kSweepSizes) {
      const std::optional<Floor> floor = measure_floor_for(options, sync, size, options.window, dir);
      floors.push_back(floor ? floor->figures.replicator_messages_per_s : 0);
    }
    Target target = start_target(options, sync, dir);
    for (std::size_t s = 0; s < std::size(kSweepSizes); ++s) {
      for (const int clients : kSweepClients) {
        // The same messages in flight in all, spread over the clients: what grows is the number of sessions.
        const std::size_t window = std::max<std::size_t>(1, options.window / static_cast<std::size_t>(clients));
        std::fprintf(stderr, "sweep: sync %s, %s, %d clients, %zu in flight each\n", sync,
                     size_name(kSweepSizes[s]).c_str(), clients, window);
        Drivers drivers = connect_drivers(options, target.members, clients, kSweepSizes[s]);
        SweepPoint point{
            sync, kSweepSizes[s], clients,
            run_closed_loop("throughput", drivers, window, options.warmup_s, options.duration_s, target.cluster.get()),
            floors[s]};
        for (const auto& driver : drivers)
          if (driver->applied() != driver->offered())
            throw std::runtime_error("a message of the sweep was not applied");
        points.push_back(std::move(point));
      }
    }
  }

  std::string table = fmt::format(
      "{}\n`cohort bench --sweep --nodes {} --window {} --duration {} --warmup {}`: {} nodes, echo service, {} "
      "messages "
      "in flight in all (spread over the clients), {} s measured after {} s warm-up per point. Latency is from offer "
      "to acknowledgement at that load. The floor: the minimal replicator with {} in flight.\n\n"
      "| sync | size | clients | msg/s | MB/s | vs floor | p50 us | p99 us | node CPU us/msg |\n"
      "|---|---|---|---|---|---|---|---|---|\n",
      kSweepBegin, options.nodes, options.window, options.duration_s, options.warmup_s, options.nodes, options.window,
      options.duration_s, options.warmup_s, options.window);
  for (const SweepPoint& p : points)
    table +=
        fmt::format("| {} | {} | {} | {:.0f} | {:.1f} | {:.2f}x | {:.0f} | {:.0f} | {} |\n", p.sync, size_name(p.size),
                    p.clients, p.phase.per_second(), p.phase.per_second() * static_cast<double>(p.size) / 1e6,
                    p.floor_per_s > 0 ? p.phase.per_second() / p.floor_per_s : 0.0, us(p.phase.latency.percentile(0.5)),
                    us(p.phase.latency.percentile(0.99)),
                    p.phase.node_cpu_us_per_message < 0 ? std::string("-")
                                                        : fmt::format("{:.2f}", p.phase.node_cpu_us_per_message));
  table += "\n";
  for (const char* sync : kSweepPolicies) {
    const std::string throughput_svg = fmt::format("sweep-{}-throughput.svg", sync);
    const std::string latency_svg = fmt::format("sweep-{}-p99.svg", sync);
    plot_sweep(charts / throughput_svg, fmt::format("messages/s, sync {}", sync), "messages/s", points, sync,
               [](const SweepPoint& p) { return p.phase.per_second(); });
    plot_sweep(charts / latency_svg, fmt::format("p99 latency under load, sync {}", sync), "p99 (us)", points, sync,
               [](const SweepPoint& p) { return us(p.phase.latency.percentile(0.99)); });
    table += fmt::format("![messages/s, sync {0}](bench/{1}) ![p99, sync {0}](bench/{2})\n\n", sync, throughput_svg,
                         latency_svg);
  }
  table += kSweepEnd;

  // Into the file's marked section if it has one; else the file is the table.
  std::string text;
  if (std::ifstream in(output); in) {
    std::stringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
  }
  const std::size_t begin = text.find(kSweepBegin);
  const std::size_t end = text.find(kSweepEnd);
  if (begin != std::string::npos && end != std::string::npos && end > begin)
    text.replace(begin, end + std::string_view(kSweepEnd).size() - begin, table);
  else
    text = table + "\n";
  // A new file renamed over the old: a full disk or an I/O error leaves the old file whole, and fails the run.
  const std::filesystem::path written = output.string() + ".new";
  {
    std::ofstream out(written, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error(fmt::format("cannot write {}", written.string()));
  }
  std::filesystem::rename(written, output);
  std::printf("%s\n", table.c_str());
  std::fprintf(stderr, "sweep written to %s, charts to %s\n", output.c_str(), charts.c_str());
  return 0;
}

}  // namespace

int run_bench(const BenchOptions& given) {
  BenchOptions options = given;
  // Sleeps end within a microsecond of their time, not the default 50: open-loop sends are that precise.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  try {
    if (options.members.empty() && options.cohortd.empty()) {
      const std::optional<std::string> found = find_cohortd();
      if (!found) {
        std::fprintf(stderr, "cohort bench: cohortd not found next to cohort nor on PATH: give --cohortd PATH\n");
        return 2;
      }
      options.cohortd = *found;
    }
    // What this run writes under a directory it made goes with it, unless kept.
    struct RemoveDir {
      std::filesystem::path dir;
      ~RemoveDir() {
        std::error_code ignored;
        if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
      }
    } remove{options.dir.empty() && !options.keep ? bench_dir(options) : std::filesystem::path()};
    if (options.failover) return run_failover(options);
    if (options.sweep) return run_sweep(options);
    return run_single(options);
  } catch (const Interrupted&) {
    std::fprintf(stderr, "cohort bench: interrupted\n");
    return 128 + g_interrupt_signal.load(std::memory_order_relaxed);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cohort bench: %s\n", error.what());
    return 1;
  }
}

}  // namespace cohort::tool
