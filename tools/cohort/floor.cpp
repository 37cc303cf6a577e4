// The machine's floor (floor.h). One thread in the calling process drives everything: it is the round trip's client
// and the replicator's leader, and it waits in blocking reads or ppoll(), never spinning, like a normal server on
// this 2-core machine. The helper processes are forked copies of the caller: they use only system calls (and
// memcpy), because a malloc or stdio lock held by the caller at fork time would stay held in the copy, and they
// _exit so that no destructor or atexit handler of the caller runs twice.

#include "cohort/floor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cohort/json.h"

namespace cohort::tool {
namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

/// The round trip's message, whatever message_size is: it measures the wake-up across processes, not the copy.
constexpr std::size_t kRoundTripBytes = 64;
/// Each timed part first runs untimed for this share of its length, at most kMaxWarmupS: the connections, the page
/// cache, the files' first extents and the CPUs' clocks settle.
constexpr double kWarmupShare = 0.25;
constexpr double kMaxWarmupS = 0.25;
/// A replicator that commits nothing for this long has a stuck process: fail rather than hang the caller.
constexpr auto kStallLimit = std::chrono::seconds(10);
/// ppoll's longest sleep, so that a stall is noticed.
constexpr auto kLongestWait = std::chrono::seconds(1);
/// window × frame bytes are buffered per follower (leader and follower side); past this, refuse the options.
constexpr std::size_t kMaxBufferBytes = std::size_t{1} << 30U;
/// Read by the followers: a frame that does not carry it means the stream lost its framing.
constexpr std::uint32_t kFrameMagic = 0xC0407F10;

/// The replicator's frame: this header, then message_size payload bytes. Native byte order: one machine.
struct FrameHeader {
  std::uint64_t seq;  // 1, 2, 3, ... on each connection
  std::uint32_t payload_size;
  std::uint32_t magic;
};
static_assert(sizeof(FrameHeader) == 16);
/// A follower's acknowledgement: the highest seq it has appended (and synced, with fsync). Every ack covers all
/// seqs before it, so the per-frame acks of the latency part and the cumulative acks of the throughput part are read
/// the same way.
using Ack = std::uint64_t;

/// A helper process's exit status, so the leader can say what failed in it.
enum ChildExit : int {
  kChildOk = 0,
  kChildReadFailed = 10,
  kChildBadFrame = 11,
  kChildFileWriteFailed = 12,
  kChildFdatasyncFailed = 13,
  kChildSendFailed = 14,
};

const char* child_exit_text(int status) {
  switch (status) {
    case kChildReadFailed: return "reading its connection failed";
    case kChildBadFrame: return "it received a malformed frame";
    case kChildFileWriteFailed: return "writing its file failed";
    case kChildFdatasyncFailed: return "fdatasync of its file failed";
    case kChildSendFailed: return "writing its connection failed";
    default: return "unexpected status";
  }
}

std::string error_text(int code) { return std::error_code(code, std::generic_category()).message(); }

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

/// Throws naming `what` and errno's text; `what` is a literal, so nothing runs between the failed call and here
/// that could change errno.
[[noreturn]] void fail_errno(const char* what) {
  const int code = errno;
  fail(fmt::format("{}: {}", what, error_text(code)));
}

double microseconds(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

Clock::duration to_duration(double seconds) { return std::chrono::duration_cast<Clock::duration>(Seconds(seconds)); }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// ---- Used in the children too: system calls only, no exceptions. ----

/// Writes all of `size` bytes; false on failure (errno set). A socket is written with MSG_NOSIGNAL: a peer gone is
/// an error to report, not a SIGPIPE that kills the writer.
bool write_all(int fd, const void* data, std::size_t size, bool socket) noexcept {
  const auto* bytes = static_cast<const std::byte*>(data);
  while (size > 0) {
    const ssize_t n = socket ? ::send(fd, bytes, size, MSG_NOSIGNAL) : ::write(fd, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads exactly `size` bytes: 1 done, 0 end of stream before the first byte, -1 failure (errno set; EPIPE for an
/// end of stream in the middle).
int read_exact(int fd, void* data, std::size_t size) noexcept {
  auto* bytes = static_cast<std::byte*>(data);
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, bytes + got, size - got);
    if (n == 0) {
      if (got == 0) return 0;
      errno = EPIPE;
      return -1;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += static_cast<std::size_t>(n);
  }
  return 1;
}

void close_between(unsigned first, unsigned last) noexcept {
  if (first > last) return;
  if (::close_range(first, last, 0) == 0) return;
  // Kernels before 5.9: one at a time, as far as descriptors are commonly numbered.
  for (unsigned fd = first; fd <= std::min(last, 4095U); ++fd) ::close(static_cast<int>(fd));
}

/// In a child: closes every inherited descriptor above stderr but `a` and `b`. The leader's ends of the connections
/// must live only in the leader: a follower holding a copy of one would never see the leader close it.
void close_inherited_except(int a, int b) noexcept {
  auto low = static_cast<unsigned>(std::min(a, b));
  auto high = static_cast<unsigned>(std::max(a, b));
  close_between(3, low - 1);
  close_between(low + 1, high - 1);
  close_between(high + 1, std::numeric_limits<unsigned>::max());
}

/// The round trip's peer: sends back every 64 bytes it reads, until the caller closes the connection.
int run_echo(int socket) noexcept {
  std::array<std::byte, kRoundTripBytes> buffer{};
  for (;;) {
    const int got = read_exact(socket, buffer.data(), buffer.size());
    if (got == 0) return kChildOk;
    if (got < 0) return kChildReadFailed;
    if (!write_all(socket, buffer.data(), buffer.size(), true)) return kChildSendFailed;
  }
}

struct FollowerSetup {
  int socket = -1;
  int file = -1;
  std::byte* buffer = nullptr;  // allocated by the leader before the fork: the child must not malloc
  std::size_t capacity = 0;     // at least one frame
  std::size_t message_size = 0;
  bool fsync = false;
  bool batch = false;  // one write, one fdatasync and one cumulative ack per read, instead of per frame
};

int append_and_ack(const FollowerSetup& setup, const std::byte* frames, std::size_t size, Ack seq) noexcept {
  if (!write_all(setup.file, frames, size, false)) return kChildFileWriteFailed;
  if (setup.fsync && ::fdatasync(setup.file) != 0) return kChildFdatasyncFailed;
  if (!write_all(setup.socket, &seq, sizeof seq, true)) return kChildSendFailed;
  return kChildOk;
}

/// A follower: reads whatever has arrived, appends the complete frames to its file and acknowledges them. Ends
/// with kChildOk when the leader closes the connection on a frame boundary.
int run_follower(const FollowerSetup& setup) noexcept {
  const std::size_t frame_size = sizeof(FrameHeader) + setup.message_size;
  std::size_t used = 0;
  Ack expected = 1;
  for (;;) {
    const ssize_t n = ::read(setup.socket, setup.buffer + used, setup.capacity - used);
    if (n == 0) return used == 0 ? kChildOk : kChildBadFrame;
    if (n < 0) {
      if (errno == EINTR) continue;
      return kChildReadFailed;
    }
    used += static_cast<std::size_t>(n);
    const std::size_t frames = used / frame_size;
    if (frames == 0) continue;  // a partial frame: wait for its rest
    for (std::size_t i = 0; i < frames; ++i) {
      FrameHeader header{};
      std::memcpy(&header, setup.buffer + i * frame_size, sizeof header);
      if (header.magic != kFrameMagic || header.payload_size != setup.message_size || header.seq != expected + i)
        return kChildBadFrame;
    }
    if (setup.batch) {
      const int status = append_and_ack(setup, setup.buffer, frames * frame_size, expected + frames - 1);
      if (status != kChildOk) return status;
    } else {
      for (std::size_t i = 0; i < frames; ++i) {
        const int status = append_and_ack(setup, setup.buffer + i * frame_size, frame_size, expected + i);
        if (status != kChildOk) return status;
      }
    }
    expected += frames;
    const std::size_t done = frames * frame_size;
    std::memmove(setup.buffer, setup.buffer + done, used - done);
    used -= done;
  }
}

// ---- The caller's side. ----

/// A forked helper process. The destructor kills and reaps it unless wait() did, so that no failure leaves a
/// zombie or an orphan behind.
class Child {
 public:
  /// Forks; the child runs `body` (system calls only) and _exits with the status it returns.
  template <typename Body>
  Child(std::string name, Body&& body) : name_(std::move(name)) {
    pid_ = ::fork();
    if (pid_ < 0) fail_errno("fork");
    if (pid_ == 0) ::_exit(body());
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }

  /// Waits for the child to end (whatever it blocks on must be closed first); throws unless it exited with 0.
  void wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) fail_errno("waitpid");
    }
    pid_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == kChildOk) return;
    if (WIFEXITED(status))
      fail(fmt::format("{} exited with status {} ({})", name_, WEXITSTATUS(status),
                       child_exit_text(WEXITSTATUS(status))));
    fail(fmt::format("{} was killed by signal {}", name_, WTERMSIG(status)));
  }

  /// The connection to the child ended while the caller still needed it: says why the child ended (it has, since
  /// its end of the connection is closed), or `what` if it exited cleanly.
  [[noreturn]] void connection_lost(const std::string& what) {
    wait();
    fail(what);
  }

 private:
  std::string name_;
  pid_t pid_ = -1;
};

void set_nodelay(const Fd& socket) {
  const int on = 1;
  if (::setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0) fail_errno("setsockopt TCP_NODELAY");
}

void set_nonblocking(const Fd& fd) {
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) fail_errno("fcntl O_NONBLOCK");
}

/// Both ends of a loopback TCP connection, made in this process (the listener's backlog completes the connect
/// before the accept), with Nagle off so that each frame leaves at once.
std::pair<Fd, Fd> loopback_connection() {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) fail_errno("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  auto* generic = reinterpret_cast<sockaddr*>(&address);
  if (::bind(listener.get(), generic, sizeof address) < 0) fail_errno("bind 127.0.0.1");
  if (::listen(listener.get(), 1) < 0) fail_errno("listen on 127.0.0.1");
  socklen_t length = sizeof address;
  if (::getsockname(listener.get(), generic, &length) < 0) fail_errno("getsockname");
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (client.get() < 0) fail_errno("socket");
  if (::connect(client.get(), generic, sizeof address) < 0) fail_errno("connect to 127.0.0.1");
  Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (server.get() < 0) fail_errno("accept on 127.0.0.1");
  set_nodelay(client);
  set_nodelay(server);
  return {std::move(client), std::move(server)};
}

/// The files measure_floor writes in options.dir (named with the pid, so that runs side by side do not meet),
/// removed when it returns or throws.
class ScratchFiles {
 public:
  explicit ScratchFiles(std::filesystem::path dir) : dir_(std::move(dir)) {
    if (dir_.empty()) fail("no directory given for the floor's files");
    std::error_code error;
    std::filesystem::create_directories(dir_, error);
    if (error) fail(fmt::format("cannot create directory {}: {}", dir_.string(), error.message()));
  }
  ScratchFiles(const ScratchFiles&) = delete;
  ScratchFiles& operator=(const ScratchFiles&) = delete;
  ~ScratchFiles() {
    for (const auto& path : paths_) {
      std::error_code ignored;
      std::filesystem::remove(path, ignored);
    }
  }

  std::filesystem::path path(std::string_view name) const {
    return dir_ / fmt::format("cohort-floor-{}-{}", ::getpid(), name);
  }

  /// Creates (or empties) the file `name`, open for appending.
  Fd open(std::string_view name) {
    const std::filesystem::path path = this->path(name);
    if (std::find(paths_.begin(), paths_.end(), path) == paths_.end()) paths_.push_back(path);
    Fd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
    if (file.get() < 0) {
      const int code = errno;
      fail(fmt::format("cannot create file {}: {}", path.string(), error_text(code)));
    }
    return file;
  }

 private:
  std::filesystem::path dir_;
  std::vector<std::filesystem::path> paths_;
};

/// Percentiles by nearest rank over the sorted samples: p50 is a sample (the lower median for an even count).
LatencyFigures summarize(std::vector<double> samples_us) {
  LatencyFigures figures;
  if (samples_us.empty()) return figures;
  std::sort(samples_us.begin(), samples_us.end());
  const std::size_t n = samples_us.size();
  const auto at = [&](double quantile) {
    const auto rank = static_cast<std::size_t>(std::ceil(quantile * static_cast<double>(n)));
    return samples_us[std::clamp<std::size_t>(rank, 1, n) - 1];
  };
  figures.p50_us = at(0.50);
  figures.p90_us = at(0.90);
  figures.p99_us = at(0.99);
  figures.p999_us = at(0.999);
  figures.max_us = samples_us.back();
  figures.count = n;
  return figures;
}

/// A part's timeline: untimed warm-up from `start`, then timed from `timed_from` to `end`.
struct Timeline {
  Clock::time_point start, timed_from, end;
};

Timeline timeline(double seconds) {
  const double warmup = std::min(kMaxWarmupS, seconds * kWarmupShare);
  Timeline t;
  t.start = Clock::now();
  t.timed_from = t.start + to_duration(warmup);
  t.end = t.timed_from + to_duration(seconds);
  return t;
}

LatencyFigures measure_round_trip(double seconds) {
  auto [here, there] = loopback_connection();
  const int echo_socket = there.get();
  Child echo("the round trip's echo process", [echo_socket]() noexcept {
    close_inherited_except(echo_socket, echo_socket);
    return run_echo(echo_socket);
  });
  there.reset();

  std::array<std::byte, kRoundTripBytes> message{};
  std::array<std::byte, kRoundTripBytes> reply{};
  std::vector<double> samples;
  const Timeline t = timeline(seconds);
  for (auto sent = Clock::now(); sent < t.end;) {
    if (!write_all(here.get(), message.data(), message.size(), true)) {
      if (errno == EPIPE || errno == ECONNRESET) echo.connection_lost("the echo process closed its connection");
      fail_errno("send to the echo process");
    }
    const int got = read_exact(here.get(), reply.data(), reply.size());
    if (got <= 0) {
      if (got == 0 || errno == EPIPE || errno == ECONNRESET)
        echo.connection_lost("the echo process closed its connection");
      fail_errno("read from the echo process");
    }
    const auto received = Clock::now();
    if (sent >= t.timed_from) samples.push_back(microseconds(received - sent));
    sent = received;
  }
  here.reset();  // the echo process reads the end of the stream and exits
  echo.wait();
  return summarize(std::move(samples));
}

LatencyFigures measure_fdatasync(Fd file, const std::string& name, std::size_t size, double seconds) {
  const std::vector<std::byte> block(size, std::byte{0x5a});
  std::vector<double> samples;
  const Timeline t = timeline(seconds);
  for (auto begun = Clock::now(); begun < t.end;) {
    if (!write_all(file.get(), block.data(), block.size(), false)) {
      const int code = errno;
      fail(fmt::format("write to {}: {}", name, error_text(code)));
    }
    if (::fdatasync(file.get()) != 0) {
      const int code = errno;
      fail(fmt::format("fdatasync of {}: {}", name, error_text(code)));
    }
    const auto done = Clock::now();
    if (begun >= t.timed_from) samples.push_back(microseconds(done - begun));
    begun = done;
  }
  return summarize(std::move(samples));
}

/// Sets the calling thread's timer slack to 1 ns for its lifetime. The paced part sleeps in ppoll until each
/// message's intended send time, and the default slack (50 us) would wake it up to 50 us late: that lateness would
/// count as the replicator's latency.
class TightTimers {
 public:
  TightTimers() : previous_(::prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)) {
    if (previous_ > 0) ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  }
  TightTimers(const TightTimers&) = delete;
  TightTimers& operator=(const TightTimers&) = delete;
  ~TightTimers() {
    if (previous_ > 0) ::prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(previous_), 0, 0, 0);
  }

 private:
  int previous_;
};

enum class Part { latency, throughput };

/// The leader's side of one follower.
struct FollowerLink {
  Fd socket;  // non-blocking: the leader must keep reading acks while a follower's window is full
  std::optional<Child> process;
  std::vector<std::byte> staging;  // frames created and not yet written to this follower: [sent, filled)
  std::size_t sent = 0;
  std::size_t filled = 0;
  Ack acked = 0;
  std::array<std::byte, sizeof(Ack)> partial_ack{};  // the start of an ack the last read cut
  std::size_t partial_size = 0;
};

/// One part of the minimal replicator, with fresh followers. The latency part returns its commit latencies; the
/// throughput part its commits per second (in `rate`).
struct ReplicatorResult {
  std::vector<double> latencies_us;
  double messages_per_s = 0;
};

ReplicatorResult run_replicator(const FloorOptions& options, ScratchFiles& files, Part part) {
  const std::size_t frame_size = sizeof(FrameHeader) + options.message_size;
  const std::size_t window = options.window;
  const bool paced = part == Part::latency && options.rate > 0;

  // The followers' read buffer is allocated here, before the forks, and each child uses its copy.
  std::vector<std::byte> follower_buffer(window * frame_size);
  std::array<FollowerLink, 2> links;
  for (std::size_t i = 0; i < links.size(); ++i) {
    Fd file = files.open(fmt::format("follower-{}", i + 1));
    auto [leader_end, follower_end] = loopback_connection();
    FollowerSetup setup;
    setup.socket = follower_end.get();
    setup.file = file.get();
    setup.buffer = follower_buffer.data();
    setup.capacity = follower_buffer.size();
    setup.message_size = options.message_size;
    setup.fsync = options.fsync;
    setup.batch = part == Part::throughput;
    links[i].process.emplace(fmt::format("follower {}", i + 1), [&setup]() noexcept {
      close_inherited_except(setup.socket, setup.file);
      return run_follower(setup);
    });
    // `file` and `follower_end` close at the end of this scope: only the follower holds them now.
    set_nonblocking(leader_end);
    links[i].socket = std::move(leader_end);
    links[i].staging.resize(window * frame_size);
  }
  Fd leader_file = options.fsync ? files.open("leader") : Fd();

  std::vector<Clock::time_point> intended(window);  // seq's intended send time at (seq % window)
  std::vector<double> latencies;
  Ack created = 0;        // frames 1..created exist (staged for both followers)
  Ack committed = 0;      // acked by both followers, and in the leader's file with fsync
  Ack leader_synced = 0;  // with fsync: frames 1..leader_synced are in the leader's file, fdatasynced
  std::optional<TightTimers> tight_timers;
  if (paced) tight_timers.emplace();
  const Timeline t = timeline(options.seconds);
  // Paced: frame k is due at start + (k - 1) / rate; frames due before the end are all sent, however late.
  const auto intended_time = [&](Ack seq) {
    return t.start + to_duration(static_cast<double>(seq - 1) / options.rate);
  };
  const Ack last_paced = paced ? static_cast<Ack>(std::ceil(Seconds(t.end - t.start).count() * options.rate)) : Ack{0};
  std::optional<std::pair<Clock::time_point, Ack>> first_mark;  // throughput: committed when timing began...
  std::optional<std::pair<Clock::time_point, Ack>> last_mark;   // ... and when it ended
  // Marked on the first turn past each time, with what was committed by then.
  const auto mark = [&](Clock::time_point when) {
    if (!first_mark && when >= t.timed_from) first_mark.emplace(when, committed);
    if (!last_mark && when >= t.end) last_mark.emplace(when, committed);
  };
  auto last_progress = t.start;
  std::array<std::byte, 4096> buffer{};  // acks as read, after the start of an ack the last read cut

  for (;;) {
    const auto now = Clock::now();
    mark(now);
    const bool ended = paced ? created == last_paced : now >= t.end;
    if (ended && committed == created) break;

    // New frames: as many as the window allows (throughput), the next once the last is committed (one at a time),
    // or those due by now (paced).
    Ack target = created;
    if (paced) {
      const auto due = static_cast<Ack>(std::floor(Seconds(now - t.start).count() * options.rate)) + 1;
      target = std::min({committed + window, due, last_paced});
    } else if (!ended) {
      target = part == Part::throughput ? committed + window : (committed == created ? created + 1 : created);
    }
    if (target > created) {
      const std::size_t bytes = (target - created) * frame_size;
      FollowerLink& first = links[0];
      for (FollowerLink& link : links) {
        if (link.sent == link.filled) link.sent = link.filled = 0;
        if (link.filled + bytes > link.staging.size()) {  // only after partial writes: the unsent part moves down
          std::memmove(link.staging.data(), link.staging.data() + link.sent, link.filled - link.sent);
          link.filled -= link.sent;
          link.sent = 0;
        }
      }
      std::byte* frames = first.staging.data() + first.filled;
      for (Ack seq = created + 1; seq <= target; ++seq) {
        std::byte* frame = frames + (seq - created - 1) * frame_size;
        const FrameHeader header{seq, static_cast<std::uint32_t>(options.message_size), kFrameMagic};
        std::memcpy(frame, &header, sizeof header);
        std::memset(frame + sizeof header, 0x5a, options.message_size);
        intended[seq % window] = paced ? intended_time(seq) : now;
      }
      std::memcpy(links[1].staging.data() + links[1].filled, frames, bytes);
      for (FollowerLink& link : links) link.filled += bytes;
      created = target;
    }

    // Send what each follower has not been sent yet, one write each, as much as its connection takes now.
    for (std::size_t i = 0; i < links.size(); ++i) {
      FollowerLink& link = links[i];
      if (link.sent == link.filled) continue;
      const ssize_t n =
          ::send(link.socket.get(), link.staging.data() + link.sent, link.filled - link.sent, MSG_NOSIGNAL);
      if (n >= 0) {
        link.sent += static_cast<std::size_t>(n);
      } else if (errno == EPIPE || errno == ECONNRESET) {
        link.process->connection_lost(fmt::format("follower {} closed its connection", i + 1));
      } else if (errno != EAGAIN && errno != EINTR) {
        fail_errno("send to a follower");
      }
    }

    // With fsync the leader persists its own copy too, after sending, so that its fdatasync overlaps the
    // followers'. The frames it has not written are the newest ones in follower 1's staging buffer.
    if (options.fsync && leader_synced < created) {
      const std::size_t bytes = (created - leader_synced) * frame_size;
      const FollowerLink& first = links[0];
      if (!write_all(leader_file.get(), first.staging.data() + first.filled - bytes, bytes, false))
        fail_errno("write to the leader's file");
      if (::fdatasync(leader_file.get()) != 0) fail_errno("fdatasync of the leader's file");
      leader_synced = created;
    }

    // Wait for acks, for a follower's connection to take more, or (paced) for the next frame's send time.
    std::array<pollfd, 2> polled{};
    for (std::size_t i = 0; i < links.size(); ++i) {
      polled[i].fd = links[i].socket.get();
      polled[i].events = static_cast<short>(POLLIN | (links[i].sent < links[i].filled ? POLLOUT : 0));
    }
    Clock::duration sleep = kLongestWait;
    if (paced && created < last_paced && created < committed + window)
      sleep = std::clamp<Clock::duration>(intended_time(created + 1) - Clock::now(), Clock::duration::zero(), sleep);
    const auto wait_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(sleep).count();
    const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    if (::ppoll(polled.data(), polled.size(), &timeout, nullptr) < 0 && errno != EINTR) fail_errno("ppoll");

    for (std::size_t i = 0; i < links.size(); ++i) {
      if ((polled[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      FollowerLink& link = links[i];
      for (;;) {
        std::memcpy(buffer.data(), link.partial_ack.data(), link.partial_size);
        const ssize_t n = ::recv(link.socket.get(), buffer.data() + link.partial_size,
                                 buffer.size() - link.partial_size, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
          link.process->connection_lost(fmt::format("follower {} closed its connection", i + 1));
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          fail_errno("read from a follower");
        }
        const std::size_t total = link.partial_size + static_cast<std::size_t>(n);
        const std::size_t acks = total / sizeof(Ack);
        if (acks > 0) std::memcpy(&link.acked, buffer.data() + (acks - 1) * sizeof(Ack), sizeof(Ack));
        link.partial_size = total - acks * sizeof(Ack);
        std::memcpy(link.partial_ack.data(), buffer.data() + acks * sizeof(Ack), link.partial_size);
      }
      if (link.acked > created)
        fail(fmt::format("follower {} acknowledged frame {} before it was sent", i + 1, link.acked));
    }

    Ack now_committed = std::min(links[0].acked, links[1].acked);
    if (options.fsync) now_committed = std::min(now_committed, leader_synced);
    const auto observed = Clock::now();
    if (now_committed > committed) {
      if (part == Part::latency) {
        for (Ack seq = committed + 1; seq <= now_committed; ++seq) {
          const auto sent_at = intended[seq % window];
          if (sent_at >= t.timed_from) latencies.push_back(microseconds(observed - sent_at));
        }
      }
      committed = now_committed;
      last_progress = observed;
    } else if (created > committed && observed - last_progress > kStallLimit) {
      fail(fmt::format("the replicator committed nothing for {} s", kStallLimit.count()));
    }
    mark(observed);
  }

  // The followers read the end of the stream after their last ack, and exit.
  for (FollowerLink& link : links) link.socket.reset();
  for (FollowerLink& link : links) link.process->wait();

  ReplicatorResult result;
  result.latencies_us = std::move(latencies);
  if (first_mark && last_mark && last_mark->first > first_mark->first)
    result.messages_per_s = static_cast<double>(last_mark->second - first_mark->second) /
                            Seconds(last_mark->first - first_mark->first).count();
  return result;
}

void check(const FloorOptions& options) {
  if (options.message_size == 0) fail("the floor's message size must be at least 1 byte");
  if (options.message_size > std::numeric_limits<std::uint32_t>::max())
    fail("the floor's message size must fit in 32 bits");
  if (options.window == 0) fail("the floor's window must be at least 1 message");
  if (options.window > kMaxBufferBytes / (sizeof(FrameHeader) + options.message_size))
    fail(fmt::format("the floor's window × message size must stay under {} MiB", kMaxBufferBytes >> 20U));
  if (!(options.seconds > 0) || !std::isfinite(options.seconds)) fail("the floor's duration must be positive");
  if (!(options.rate >= 0) || !std::isfinite(options.rate)) fail("the floor's rate must be 0 or positive");
}

std::string latency_row(std::string_view name, const LatencyFigures& f) {
  return fmt::format("{:<34}{:>10.1f}{:>10.1f}{:>10.1f}{:>10.1f}{:>10.1f}{:>10}\n", name, f.p50_us, f.p90_us, f.p99_us,
                     f.p999_us, f.max_us, f.count);
}

}  // namespace

std::string latency_json(const LatencyFigures& f) {
  return fmt::format(R"({{"p50":{:.1f},"p90":{:.1f},"p99":{:.1f},"p99_9":{:.1f},"max":{:.1f},"count":{}}})", f.p50_us,
                     f.p90_us, f.p99_us, f.p999_us, f.max_us, f.count);
}

namespace {

const char* sync_name(const FloorOptions& options) { return options.fsync ? "fsync" : "none"; }

std::string pacing(const FloorOptions& options) {
  return options.rate > 0 ? fmt::format("paced at {:g}/s", options.rate) : std::string("one at a time");
}

/// Removes the directory `cohort floor` made for itself.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    std::string name = (std::filesystem::temp_directory_path() / "cohort-floor-XXXXXX").string();
    if (::mkdtemp(name.data()) == nullptr) {
      const int code = errno;
      fail(fmt::format("cannot create a directory like {}: {}", name, error_text(code)));
    }
    path_ = name;
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace

FloorFigures measure_floor(const FloorOptions& options) {
  check(options);
  ScratchFiles files(options.dir);
  // The probe's file first: an unwritable directory fails here, before any process is forked.
  Fd probe = files.open("fdatasync");
  FloorFigures figures;
  figures.tcp_round_trip = measure_round_trip(options.seconds);
  figures.fdatasync =
      measure_fdatasync(std::move(probe), files.path("fdatasync").string(), options.message_size, options.seconds);
  figures.replicator = summarize(run_replicator(options, files, Part::latency).latencies_us);
  figures.replicator_messages_per_s = run_replicator(options, files, Part::throughput).messages_per_s;
  return figures;
}

std::string floor_table(const FloorOptions& options, const FloorFigures& figures) {
  std::string out =
      fmt::format("floor: {} B messages, sync {}, latency {}, {:g} s per part, files in {}\n", options.message_size,
                  sync_name(options), pacing(options), options.seconds, options.dir.string());
  out += fmt::format("{:<34}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}\n", "latency (us)", "p50", "p90", "p99", "p99.9",
                     "max", "count");
  out += latency_row(fmt::format("tcp round trip ({} B)", kRoundTripBytes), figures.tcp_round_trip);
  out += latency_row(fmt::format("write + fdatasync ({} B appended)", options.message_size), figures.fdatasync);
  out += latency_row(fmt::format("replicator commit (sync {})", sync_name(options)), figures.replicator);
  out += fmt::format("replicator throughput (sync {}, {} in flight): {:.0f} messages/s\n", sync_name(options),
                     options.window, figures.replicator_messages_per_s);
  return out;
}

std::string floor_json(const FloorOptions& options, const FloorFigures& figures) {
  return fmt::format(
      R"({{"message_size":{},"sync":"{}","rate":{},"seconds":{},"window":{},"dir":{},"tcp_round_trip_us":{},)"
      R"("fdatasync_us":{},"replicator_commit_us":{},"replicator_messages_per_s":{:.0f}}})",
      options.message_size, sync_name(options), options.rate, options.seconds, options.window,
      json_string(options.dir.string()), latency_json(figures.tcp_round_trip), latency_json(figures.fdatasync),
      latency_json(figures.replicator), figures.replicator_messages_per_s);
}

int run_floor(FloorOptions options, bool json) {
  try {
    std::optional<TemporaryDirectory> temporary;
    if (options.dir.empty()) options.dir = temporary.emplace().path();
    const FloorFigures figures = measure_floor(options);
    const std::string text = json ? floor_json(options, figures) + "\n" : floor_table(options, figures);
    std::fputs(text.c_str(), stdout);
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cohort floor: %s\n", error.what());
    return 1;
  }
}

}  // namespace cohort::tool
