// `cohort stream` (stream.h). Three threads touch its state: the main thread offers, draws the progress line and
// queries the ledger; the client's I/O thread runs the listener; a signal handler only counts interrupts. The
// listener's state is under its mutex; output lines from both threads go through Output, which keeps the live
// progress line at the bottom of a terminal.

#include "cohort/stream.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cohort/client.h"
#include "cohort/stream_report.h"
#include "common/result.h"
#include "services/ledger_codec.h"

namespace cohort::tool {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;
using services::LedgerQuery;
using services::LedgerRecord;
using services::LedgerReport;

/// A terminal gets a progress line redrawn in place this often; anything else a progress line this often.
constexpr auto kTtyProgressPeriod = 200ms;
constexpr auto kLineProgressPeriod = 1s;
/// At most one line per endpoint in this long for failed connects (the rest are counted, and said with the next).
constexpr auto kConnectFailurePrintPeriod = 1s;
/// A query whose report has not come in this long is asked again under a new request id: its reply (egress) may
/// have been lost with a leader.
constexpr auto kQueryRetryPeriod = 2s;
/// The ledger's answer may come this long after the drain time, since a query is one more message.
constexpr auto kQueryExtraTime = 10s;
/// Pages of gaps asked for at most (16 ranges each); past it the gap list is incomplete and says so.
constexpr std::size_t kMaxQueryPages = 1000;
/// After back-pressure the stream resumes at its rate, catching up at most this much of the schedule at once.
constexpr double kMaxCatchUpSeconds = 0.1;
/// Lines for replies that say a number had been applied before, and for error replies, before they are only counted.
constexpr std::uint64_t kMaxReplyLines = 10;

std::atomic<int> interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free, "counted in a signal handler");

extern "C" void count_interrupt(int /*signal*/) { interrupts.fetch_add(1, std::memory_order_relaxed); }

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = count_interrupt;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

double seconds_between(Clock::time_point from, Clock::time_point to) { return Seconds(to - from).count(); }

/// stderr, shared by the two threads. On a terminal the progress line stays at the bottom: an event line clears it,
/// prints, and draws it again. Each update is one write(2), so another process writing whole lines to the same
/// terminal or file (`./run demo` narrating) never lands inside one of ours.
class Output {
 public:
  explicit Output(bool tty) : tty_(tty) {}

  bool tty() const noexcept { return tty_; }

  void event(std::string_view line) {
    const std::lock_guard lock(mutex_);
    std::string text;
    if (tty_ && !progress_.empty()) text += kClearLine;
    text += line;
    text += '\n';
    if (tty_ && !progress_.empty()) text += fitted(progress_);
    write_all(text);
  }

  void progress(std::string line) {
    const std::lock_guard lock(mutex_);
    progress_ = std::move(line);
    write_all(tty_ ? std::string(kClearLine) + fitted(progress_) : progress_ + '\n');
  }

  /// On a terminal, leaves the last progress line in place as an ordinary line.
  void finish() {
    const std::lock_guard lock(mutex_);
    if (tty_ && !progress_.empty()) write_all("\n");
    progress_.clear();
  }

 private:
  /// Back to the start of the row, and clear it.
  static constexpr std::string_view kClearLine = "\r\033[2K";

  /// The progress line cut to the terminal's width: `\r` returns only within a row, so a line that wrapped could
  /// not be redrawn in place.
  static std::string fitted(const std::string& line) {
    struct winsize size {};
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) != 0 || size.ws_col < 2) return line;
    return line.substr(0, std::size_t{size.ws_col} - 1);  // the progress line is ASCII: one byte per column
  }

  /// stdio's stderr would do, being unbuffered, but one write(2) per update is the point, so it is said here. A
  /// signal (Ctrl-C is counted, not fatal) may interrupt the write.
  static void write_all(std::string_view text) {
    while (!text.empty()) {
      const ssize_t written = ::write(STDERR_FILENO, text.data(), text.size());
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) return;  // stderr is gone: nobody to tell
      text.remove_prefix(static_cast<std::size_t>(written));
    }
  }

  std::mutex mutex_;
  const bool tty_;
  std::string progress_;  // the last progress line; on a terminal, drawn at the bottom
};

/// Wall-clock time of day with milliseconds, and the time since the stream started.
std::string stamp(Clock::time_point start) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm local{};
  ::localtime_r(&seconds, &local);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  return fmt::format("{:02}:{:02}:{:02}.{:03} +{:.3f}s", local.tm_hour, local.tm_min, local.tm_sec, millis,
                     seconds_between(start, Clock::now()));
}

/// " (reason): text", leaving out a reason of none and a text that only repeats the reason.
std::string because(Reason reason, std::string_view text) {
  std::string out = reason == Reason::none ? std::string() : fmt::format(" ({})", to_string(reason));
  if (!text.empty() && text != to_string(reason)) out += fmt::format(": {}", text);
  return out;
}

/// The ledger's reports by request id, from whichever client's listener received them.
class ReportBox {
 public:
  void put(LedgerReport report) {
    const std::lock_guard lock(mutex_);
    reports_[report.request_id] = std::move(report);
    arrived_.notify_all();
  }
  std::optional<LedgerReport> wait(std::uint64_t request_id, Clock::time_point until) {
    std::unique_lock lock(mutex_);
    if (!arrived_.wait_until(lock, until, [&] { return reports_.contains(request_id); })) return std::nullopt;
    auto report = std::move(reports_.at(request_id));
    reports_.erase(request_id);
    return report;
  }

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::map<std::uint64_t, LedgerReport> reports_;
};

/// What the client tells the stream, kept for the summary and printed as it happens.
class StreamListener final : public ClientListener {
 public:
  StreamListener(Output& out, Clock::time_point start, std::uint64_t tag, ReportBox& reports)
      : out_(out), start_(start), tag_(tag), reports_(reports) {}

  /// The main thread has had `number` accepted: from then on it is pending until its fate comes.
  void note_accepted(std::uint64_t number) {
    const auto now = Clock::now();
    const std::lock_guard lock(mutex_);
    const bool was_pending = pending();
    accepted_ = std::max(accepted_, number);
    if (!was_pending && pending() && connected_) stall_from_ = now;
  }

  /// Seqs above `last` are the ledger queries', not stream numbers.
  void end_of_stream(std::uint64_t last) {
    const std::lock_guard lock(mutex_);
    stream_last_ = last;
  }

  struct Counts {
    std::uint64_t applied = 0;
    std::uint64_t rejected = 0;
    std::uint64_t unknown = 0;
  };
  Counts counts() const {
    const std::lock_guard lock(mutex_);
    return {fates_.count(Fate::applied), fates_.count(Fate::rejected), fates_.count(Fate::unknown)};
  }

  /// Fills the summary's share of the listener; an outage still going on ends now, marked as not ended.
  void fill(Summary& summary, std::uint64_t accepted, const std::optional<LedgerView>& ledger) {
    const std::lock_guard lock(mutex_);
    summary.applied = fates_.count(Fate::applied);
    summary.rejected = fates_.count(Fate::rejected);
    summary.unknown = fates_.count(Fate::unknown);
    summary.pending = accepted - summary.applied - summary.rejected - summary.unknown;
    summary.replies = replies_;
    summary.duplicate_replies = duplicate_replies_;
    summary.error_replies = error_replies_;
    summary.egress_gaps = egress_gaps_;
    summary.data_loss = data_loss_;
    summary.sessions_opened = sessions_[0];
    summary.sessions_resumed = sessions_[1];
    summary.sessions_replaced = sessions_[2];
    summary.session_id = session_id_;
    summary.state_changes = state_changes_;
    summary.connect_failures = connect_failures_;
    summary.outages = outages_;
    summary.longest_stall_s = longest_stall_s_;
    if (stall_from_) summary.longest_stall_s = std::max(longest_stall_s_, seconds_between(*stall_from_, Clock::now()));
    if (outage_start_) {
      summary.outages.push_back(Outage{seconds_between(start_, *outage_start_),
                                       seconds_between(*outage_start_, Clock::now()), outage_reason_, false});
    }
    if (ledger) summary.comparison = compare(fates_, accepted, *ledger);
  }

  void on_state(ClientState state, Reason reason, std::string_view text) override {
    const auto now = Clock::now();
    {
      const std::lock_guard lock(mutex_);
      ++state_changes_;
      end_stall(now);
      if (state == ClientState::connected) {
        if (pending()) stall_from_ = now;
        if (outage_start_) {
          outages_.push_back(Outage{seconds_between(start_, *outage_start_), seconds_between(*outage_start_, now),
                                    outage_reason_, true});
          outage_start_.reset();
        }
        connected_ = true;
      } else if (connected_ && !(state == ClientState::closed && reason == Reason::closed_by_application)) {
        // Left `connected` other than by this program's own close: an outage begins.
        outage_start_ = now;
        outage_reason_ = to_string(reason);
        connected_ = false;
      } else {
        connected_ = false;
      }
    }
    out_.event(fmt::format("{} state {}{}", stamp(start_), to_string(state), because(reason, text)));
  }

  void on_connect_failed(std::string_view endpoint, Reason reason, std::string_view text) override {
    const auto now = Clock::now();
    std::uint64_t suppressed = 0;
    {
      const std::lock_guard lock(mutex_);
      ++connect_failures_;
      auto& note = failure_notes_[std::string(endpoint)];
      if (note.printed && now - *note.printed < kConnectFailurePrintPeriod) {
        ++note.suppressed;
        return;
      }
      note.printed = now;
      suppressed = std::exchange(note.suppressed, 0);
    }
    out_.event(fmt::format("{} connect to {} failed{}{}", stamp(start_), endpoint, because(reason, text),
                           suppressed == 0 ? std::string() : fmt::format(" [and {} more since]", suppressed)));
  }

  void on_leader(std::uint32_t leader_id, std::uint64_t term) override {
    out_.event(fmt::format("{} leader {} (term {})", stamp(start_), leader_id, term));
  }

  void on_session(std::uint64_t session_id, SessionChange change) override {
    {
      const std::lock_guard lock(mutex_);
      session_id_ = session_id;
      ++sessions_[static_cast<std::size_t>(change)];
    }
    out_.event(fmt::format("{} session {} {}", stamp(start_), session_id, to_string(change)));
  }

  void on_applied(std::uint64_t seq, std::uint64_t /*position*/) override { fate(seq, Fate::applied); }
  void on_rejected(std::uint64_t seq, Reason reason, std::string_view text) override {
    if (fate(seq, Fate::rejected) && note_bad_fate())
      out_.event(fmt::format("{} message {} rejected ({}): {}", stamp(start_), seq, to_string(reason), text));
  }
  void on_unknown(std::uint64_t seq, Reason reason, std::string_view text) override {
    if (fate(seq, Fate::unknown) && note_bad_fate())
      out_.event(fmt::format("{} message {} unknown ({}): {}", stamp(start_), seq, to_string(reason), text));
  }

  void on_data_loss(std::uint64_t from, std::uint64_t to) override {
    {
      const std::lock_guard lock(mutex_);
      data_loss_ += to - from + 1;
    }
    out_.event(fmt::format("{} DATA LOSS: the cluster no longer holds messages {}..{}, reported applied before",
                           stamp(start_), from, to));
  }

  void on_egress_lost(std::uint64_t from, std::uint64_t to) override {
    out_.event(fmt::format("{} replies {}..{} went back with the cluster's log", stamp(start_), from, to));
  }

  void on_egress(std::uint64_t /*egress_seq*/, std::span<const std::byte> message) override {
    auto reply = services::decode_ledger_reply(message);
    if (!reply) {
      note_error_reply(fmt::format("a reply that is not the ledger's: {}", reply.error()));
      return;
    }
    if (auto* report = std::get_if<LedgerReport>(&*reply)) {
      if (report->tag == tag_) reports_.put(std::move(*report));
      return;
    }
    if (const auto* error = std::get_if<services::LedgerError>(&*reply)) {
      note_error_reply(fmt::format("the ledger refused a request: {}", error->reason));
      return;
    }
    const auto& recorded = std::get<services::LedgerRecorded>(*reply);
    if (recorded.tag != tag_) return;
    bool print = false;
    {
      const std::lock_guard lock(mutex_);
      ++replies_;
      if (!recorded.first) print = ++duplicate_replies_ <= kMaxReplyLines;
    }
    if (print)
      out_.event(fmt::format("{} the ledger says number {} had been applied before", stamp(start_), recorded.number));
  }

  void on_egress_gap(std::uint64_t from, std::uint64_t to) override {
    {
      const std::lock_guard lock(mutex_);
      egress_gaps_ += to - from + 1;
    }
    out_.event(fmt::format("{} replies {}..{} were lost beyond the cluster's window", stamp(start_), from, to));
  }

 private:
  struct FailureNote {
    std::optional<Clock::time_point> printed;
    std::uint64_t suppressed = 0;
  };

  /// Records a stream number's fate; false for a query's seq.
  bool fate(std::uint64_t seq, Fate fate) {
    const auto now = Clock::now();
    const std::lock_guard lock(mutex_);
    if (seq > stream_last_) return false;
    (void)fates_.set(seq, fate);  // the client gives one fate per seq
    // Progress: a stall (connected, messages pending, no fate) ends here; another begins if messages remain pending.
    end_stall(now);
    if (connected_ && pending()) stall_from_ = now;
    return true;
  }
  /// Accepted stream numbers without a fate (under the mutex). A fate can come before the main thread notes the
  /// number accepted.
  bool pending() const {
    return accepted_ > fates_.count(Fate::applied) + fates_.count(Fate::rejected) + fates_.count(Fate::unknown);
  }
  /// Ends the stall going on, if any, keeping the longest (under the mutex).
  void end_stall(Clock::time_point now) {
    if (!stall_from_) return;
    longest_stall_s_ = std::max(longest_stall_s_, seconds_between(*stall_from_, now));
    stall_from_.reset();
  }
  /// Whether to print a rejected or unknown fate: the first kMaxReplyLines are, then one line says the rest are not.
  bool note_bad_fate() {
    bool last = false;
    {
      const std::lock_guard lock(mutex_);
      const std::uint64_t lines = ++bad_fate_lines_;
      if (lines > kMaxReplyLines + 1) return false;
      last = lines == kMaxReplyLines + 1;
    }
    if (!last) return true;
    out_.event(
        fmt::format("{} (more messages rejected or unknown: counted in the summary, not printed)", stamp(start_)));
    return false;
  }
  void note_error_reply(const std::string& text) {
    bool print = false;
    {
      const std::lock_guard lock(mutex_);
      print = ++error_replies_ <= kMaxReplyLines;
    }
    if (print) out_.event(fmt::format("{} {}", stamp(start_), text));
  }

  Output& out_;
  const Clock::time_point start_;
  const std::uint64_t tag_;
  ReportBox& reports_;

  mutable std::mutex mutex_;
  FateTable fates_;  // by seq, which is the stream number (run_stream checks)
  std::uint64_t stream_last_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t replies_ = 0;
  std::uint64_t duplicate_replies_ = 0;
  std::uint64_t error_replies_ = 0;
  std::uint64_t bad_fate_lines_ = 0;
  std::uint64_t egress_gaps_ = 0;
  std::uint64_t data_loss_ = 0;
  std::uint64_t sessions_[3] = {0, 0, 0};  // by SessionChange: opened, resumed, replaced
  std::uint64_t session_id_ = 0;
  std::uint64_t state_changes_ = 0;
  std::uint64_t connect_failures_ = 0;
  std::map<std::string, FailureNote> failure_notes_;  // by endpoint
  bool connected_ = false;
  std::optional<Clock::time_point> outage_start_;
  std::string outage_reason_;
  std::vector<Outage> outages_;
  std::uint64_t accepted_ = 0;                   // the highest stream number the main thread has had accepted
  std::optional<Clock::time_point> stall_from_;  // connected with messages pending and no fate since then
  double longest_stall_s_ = 0;
};
static_assert(static_cast<int>(SessionChange::opened) == 0 && static_cast<int>(SessionChange::replaced) == 2,
              "StreamListener::sessions_ is indexed by SessionChange");

/// For a query after the stream's own client closed (a give-up deadline): a fresh client that only hears reports.
class QueryListener final : public ClientListener {
 public:
  QueryListener(std::uint64_t tag, ReportBox& reports) : tag_(tag), reports_(reports) {}
  void on_egress(std::uint64_t /*egress_seq*/, std::span<const std::byte> message) override {
    auto reply = services::decode_ledger_reply(message);
    if (!reply) return;
    if (auto* report = std::get_if<LedgerReport>(&*reply); report != nullptr && report->tag == tag_)
      reports_.put(std::move(*report));
  }

 private:
  const std::uint64_t tag_;
  ReportBox& reports_;
};

/// Asks the ledger for everything it holds of stream `tag`: the counts, and every gap, page by page. Each query is
/// one more message; a report that does not come is asked for again.
Result<LedgerView, std::string> query_ledger(Client& client, ReportBox& reports, std::uint64_t tag,
                                             Clock::time_point until, const std::function<bool()>& abandon) {
  LedgerView view;
  std::uint64_t from = 1;
  std::uint64_t request_id = 0;
  std::size_t pages = 0;
  while (true) {
    if (pages == kMaxQueryPages) {
      view.complete = false;
      return view;
    }
    const auto bytes = services::encode_ledger_request(LedgerQuery{tag, ++request_id, from});
    while (true) {
      const Offer offer = client.offer(bytes);
      if (offer.status == OfferStatus::accepted) break;
      if (offer.status != OfferStatus::back_pressured)
        return unexpected(fmt::format("the client refused the query ({}): {}", to_string(offer.status),
                                      client.state_reason().second));
      if (Clock::now() >= until || abandon()) return unexpected(std::string("the client's buffer stayed full"));
      std::this_thread::sleep_for(5ms);
    }
    auto report = reports.wait(request_id, std::min(until, Clock::now() + kQueryRetryPeriod));
    if (!report) {
      if (Clock::now() >= until || abandon())
        return unexpected(fmt::format("no report from the ledger (client {}: {})", to_string(client.state()),
                                      client.state_reason().second));
      continue;  // asked again under a new request id
    }
    if (pages++ == 0) view.report = *report;
    view.gaps.insert(view.gaps.end(), report->gaps.begin(), report->gaps.end());
    if (!report->more_gaps || report->gaps.empty()) return view;
    from = report->gaps.back().last + 1;
  }
}

std::uint64_t random_tag() {
  std::random_device device;
  std::uint64_t tag = 0;
  while (tag == 0) tag = (std::uint64_t{device()} << 32U) ^ device();
  return tag;
}

std::string leader_text(std::uint32_t leader) { return leader == 0 ? std::string("-") : std::to_string(leader); }

}  // namespace

int run_stream(const StreamOptions& options) {
  Output out(::isatty(STDERR_FILENO) == 1);
  const std::uint64_t tag = random_tag();
  ClientOptions client_options;
  client_options.cluster_id = options.cluster_id;
  client_options.members = options.members;
  client_options.credential = options.credential;
  client_options.give_up_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(Seconds(options.give_up_after_s));
  if (options.verbose) {
    client_options.log = [&out](LogLevel level, std::string_view line) {
      out.event(fmt::format("client {}: {}", to_string(level), line));
    };
    client_options.log_level = LogLevel::info;
  }
  if (auto problems = validate(client_options)) {
    std::fprintf(stderr, "cohort stream: %s\n", problems->c_str());
    return 2;
  }

  install_signal_handlers();
  const auto start = Clock::now();
  ReportBox reports;
  StreamListener listener(out, start, tag, reports);
  const std::string tag_text = fmt::format("{:016x}", tag);
  {
    std::string limit = options.count > 0 ? fmt::format("{} messages", options.count) : std::string();
    if (options.duration_s > 0)
      limit += fmt::format("{}for {:g} s", limit.empty() ? "" : ", at most ", options.duration_s);
    if (limit.empty()) limit = "until interrupted";
    out.event(fmt::format("{} streaming to cluster {} as tag {}: {} at {}", stamp(start), options.cluster_id, tag_text,
                          limit, options.rate > 0 ? fmt::format("{:g}/s", options.rate) : "full speed"));
  }
  auto client = std::make_unique<Client>(client_options, listener);

  // The progress line: how fast, how far, and what the client is doing.
  std::uint64_t accepted = 0;
  std::uint64_t back_pressured = 0;
  const auto progress_period = out.tty() ? Clock::duration(kTtyProgressPeriod) : Clock::duration(kLineProgressPeriod);
  auto next_progress = start + progress_period;
  auto last_progress = start;
  std::uint64_t last_accepted = 0;
  std::uint64_t last_applied = 0;
  // The rates are over the time since the last line, or with `overall` since the start.
  const auto show_progress = [&](std::string_view phase, bool overall = false) {
    const auto now = Clock::now();
    if (overall) {
      last_progress = start;
      last_accepted = 0;
      last_applied = 0;
    }
    const double interval = std::max(seconds_between(last_progress, now), 1e-3);
    const auto counts = listener.counts();
    out.progress(fmt::format(
        "+{:.1f}s {} rate {:.0f}/s accepted {} applied {} ({:.0f}/s) pending {} state {} "
        "leader {} session {}",
        seconds_between(start, now), phase, static_cast<double>(accepted - last_accepted) / interval, accepted,
        counts.applied, static_cast<double>(counts.applied - last_applied) / interval, client->unacknowledged(),
        to_string(client->state()), leader_text(client->leader_id()), client->session_id()));
    last_progress = now;
    last_accepted = accepted;
    last_applied = counts.applied;
    next_progress = now + progress_period;
  };

  // Sending: message k (from 0) is due at base + k / rate. After back-pressure the schedule slides rather than
  // bursting: at most kMaxCatchUpSeconds of it is caught up.
  std::string interrupted;
  std::string stopped_early;
  const auto send_until = options.duration_s > 0
                              ? start + std::chrono::duration_cast<Clock::duration>(Seconds(options.duration_s))
                              : Clock::time_point::max();
  const double period_s = options.rate > 0 ? 1.0 / options.rate : 0;
  constexpr std::uint64_t kFullSpeedBatch = 1024;  // offers between two looks at the clock, at full speed
  const auto max_backlog =
      options.rate > 0 ? static_cast<std::uint64_t>(std::max(1.0, options.rate * kMaxCatchUpSeconds)) : kFullSpeedBatch;
  auto base = Clock::now();
  auto first_offer = base;
  auto last_offer = base;
  bool stop = false;
  while (!stop) {
    const auto now = Clock::now();
    if (interrupts.load(std::memory_order_relaxed) > 0) {
      interrupted = "interrupted";
      break;
    }
    if ((options.count > 0 && accepted >= options.count) || now >= send_until) break;
    if (client->state() == ClientState::closed) {
      stopped_early = fmt::format("the client closed: {}", client->state_reason().second);
      break;
    }
    std::uint64_t due = accepted + max_backlog;  // full speed: as many as the buffer takes
    if (options.rate > 0) {
      due = static_cast<std::uint64_t>(std::floor(seconds_between(base, now) * options.rate)) + 1;
      if (due > accepted + max_backlog) {
        base += std::chrono::duration_cast<Clock::duration>(
            Seconds(static_cast<double>(due - accepted - max_backlog) * period_s));
        due = accepted + max_backlog;
      }
    }
    if (options.count > 0) due = std::min(due, options.count);
    bool pressed = false;
    while (accepted < due) {
      const std::uint64_t number = accepted + 1;
      const auto bytes = services::encode_ledger_request(LedgerRecord{tag, number});
      const Offer offer = client->offer(bytes);
      if (offer.status == OfferStatus::back_pressured) {
        ++back_pressured;
        pressed = true;
        break;
      }
      if (offer.status != OfferStatus::accepted) {
        stopped_early =
            fmt::format("an offer was refused ({}): {}", to_string(offer.status), client->state_reason().second);
        stop = true;
        break;
      }
      if (offer.seq != number) {  // the listener files fates by seq as stream numbers
        std::fprintf(stderr, "cohort stream: the client numbered message %llu as %llu\n",
                     static_cast<unsigned long long>(number), static_cast<unsigned long long>(offer.seq));
        return 1;
      }
      if (accepted == 0) first_offer = Clock::now();
      accepted = number;
      listener.note_accepted(number);
      last_offer = Clock::now();
    }
    if (Clock::now() >= next_progress) show_progress("sending");
    if (pressed || options.rate <= 0) {
      std::this_thread::sleep_for(pressed ? 2ms : 0ms);
    } else {
      const auto next_due =
          base + std::chrono::duration_cast<Clock::duration>(Seconds(static_cast<double>(accepted) * period_s));
      std::this_thread::sleep_until(std::min(next_due, next_progress));
    }
  }
  listener.end_of_stream(accepted);
  if (!stopped_early.empty()) out.event(fmt::format("{} stopped sending: {}", stamp(start), stopped_early));
  if (!interrupted.empty())
    out.event(fmt::format("{} interrupted: draining (interrupt again to stop at once)", stamp(start)));

  // Draining: until every accepted number has its fate. A further interrupt stops waiting.
  const int interrupts_when_sent = interrupts.load(std::memory_order_relaxed);
  const auto abandon = [&] { return interrupts.load(std::memory_order_relaxed) > interrupts_when_sent; };
  const auto drain_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(Seconds(options.drain_s));
  while (client->unacknowledged() > 0 && client->state() != ClientState::closed && Clock::now() < drain_until &&
         !abandon()) {
    (void)client->wait_drained(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min<Clock::duration>(progress_period, drain_until - Clock::now())));
    if (Clock::now() >= next_progress) show_progress("draining");
  }

  // The ledger's record: through the stream's own client, after everything it sent (one session, in order); or, if
  // that client closed, through a fresh one.
  Result<LedgerView, std::string> ledger = unexpected(std::string("interrupted before asking"));
  if (!abandon()) {
    // A client that gave up says the cluster is away: the query then waits no longer than the give-up time.
    const auto extra = options.give_up_after_s > 0
                           ? std::min<Clock::duration>(kQueryExtraTime, client_options.give_up_after)
                           : Clock::duration(kQueryExtraTime);
    const auto query_until = std::max(drain_until, Clock::now()) + extra;
    if (client->state() != ClientState::closed) {
      ledger = query_ledger(*client, reports, tag, query_until, abandon);
    } else {
      out.event(fmt::format("{} asking the ledger through a new client", stamp(start)));
      ClientOptions query_options = client_options;
      query_options.give_up_after = 0ms;
      query_options.connect_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(query_until - Clock::now());
      QueryListener query_listener(tag, reports);
      Client query_client(query_options, query_listener);
      ledger = query_ledger(query_client, reports, tag, query_until, abandon);
      query_client.close(1s);
    }
  }
  if (!ledger) out.event(fmt::format("{} the ledger did not answer: {}", stamp(start), ledger.error()));

  // Closing: drains what is left (the time left of the drain), then every seq has its fate.
  const std::string final_state = to_string(client->state());
  const auto drain_left = abandon() ? Clock::duration::zero()
                                    : std::max<Clock::duration>(drain_until - Clock::now(), Clock::duration::zero());
  client->close(std::chrono::duration_cast<std::chrono::milliseconds>(drain_left) + 1ms);
  show_progress("done", true);
  out.finish();

  Summary summary;
  summary.tag = tag_text;
  summary.cluster_id = options.cluster_id;
  summary.rate = options.rate;
  summary.elapsed_s = seconds_between(start, Clock::now());
  summary.sending_s = accepted > 0 ? seconds_between(first_offer, last_offer) : 0;
  summary.accepted = accepted;
  summary.back_pressured = back_pressured;
  summary.final_state = final_state;
  summary.interrupted = interrupted;
  if (ledger) {
    summary.ledger = std::move(ledger).value();
  } else {
    summary.ledger_error = ledger.error();
  }
  listener.fill(summary, accepted, summary.ledger);
  client.reset();  // the listener is not called after this

  const std::string text = options.json ? to_json(summary) + "\n" : to_text(summary);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return exit_status(summary);
}

}  // namespace cohort::tool
