// System tests of the client (include/cohort/client.h, design.md section 4) against real cohortd processes on
// loopback, running the counter service: every accepted add has exactly one fate, and the counter's value says
// how many adds the cluster applied, so "applied exactly once" is checked against the replicated state. The
// scenarios: a client started while every node is down; the give-up deadline; a whole-cluster outage longer than
// every silence limit, backoff step and the session timeout; the invoker mode driven only by poll(); a draining
// close on a live cluster and on a dead one; and a library that writes nothing to its program's stdout.
// Figures (reconnect times) are printed, and asserted only loosely.

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "cohort/client.h"
#include "process.h"
#include "services/counter_service.h"

namespace cohort::testing {
namespace {

using services::CounterOp;
using services::CounterRequest;

std::vector<std::byte> add_one(std::uint64_t request_id) {
  return services::encode_counter_request(CounterRequest{CounterOp::add, request_id, 1});
}
std::vector<std::byte> get_counter(std::uint64_t request_id) {
  return services::encode_counter_request(CounterRequest{CounterOp::get, request_id, 0});
}

// Request ids of gets: far above any add's, so a get's reply is never taken for an add's.
constexpr std::uint64_t kFirstGetId = std::uint64_t{1} << 40U;

long long ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<Ms>(to - from).count();
}

struct StateChange {
  ClientState state = ClientState::connecting;
  Reason reason = Reason::none;
  std::string text;
  Clock::time_point at;
};

struct ConnectFailure {
  std::string endpoint;
  Reason reason = Reason::none;
  std::string text;
  Clock::time_point at;
};

struct FateCounts {
  std::size_t applied = 0;
  std::size_t rejected = 0;
  std::size_t unknown = 0;
  std::size_t total() const { return applied + rejected + unknown; }
};

/// Records every event a client tells its listener, with the time it arrived and the thread it arrived on.
/// Thread-safe: the client's I/O thread writes, the test thread reads (in invoker mode both are the test thread).
class Recorder final : public ClientListener {
 public:
  Recorder() = default;
  /// A slow application: each fate callback first sleeps `fate_delay`.
  explicit Recorder(Ms fate_delay) : fate_delay_(fate_delay) {}

  void on_state(ClientState state, Reason reason, std::string_view text) override {
    std::lock_guard lock(mutex_);
    note_thread();
    states_.push_back(StateChange{state, reason, std::string(text), Clock::now()});
    changed_.notify_all();
  }
  void on_connect_failed(std::string_view endpoint, Reason reason, std::string_view text) override {
    std::lock_guard lock(mutex_);
    note_thread();
    failures_.push_back(ConnectFailure{std::string(endpoint), reason, std::string(text), Clock::now()});
    changed_.notify_all();
  }
  void on_leader(std::uint32_t leader_id, std::uint64_t term) override {
    std::lock_guard lock(mutex_);
    note_thread();
    leaders_.emplace_back(leader_id, term);
  }
  void on_session(std::uint64_t session_id, SessionChange change) override {
    std::lock_guard lock(mutex_);
    note_thread();
    sessions_.emplace_back(session_id, change);
    session_times_.push_back(Clock::now());
    changed_.notify_all();
  }
  void on_applied(std::uint64_t seq, std::uint64_t /*position*/) override { fate(seq, "applied", counts_.applied); }
  void on_rejected(std::uint64_t seq, Reason reason, std::string_view text) override {
    fate(seq, fmt::format("rejected ({}): {}", to_string(reason), text), counts_.rejected);
  }
  void on_unknown(std::uint64_t seq, Reason reason, std::string_view text) override {
    fate(seq, fmt::format("unknown ({}): {}", to_string(reason), text), counts_.unknown);
  }
  void on_data_loss(std::uint64_t from, std::uint64_t to) override {
    std::lock_guard lock(mutex_);
    note_thread();
    data_loss_.emplace_back(from, to);
  }
  void on_egress(std::uint64_t /*egress_seq*/, std::span<const std::byte> message) override {
    auto reply = services::decode_counter_reply(message);
    std::lock_guard lock(mutex_);
    note_thread();
    if (reply) replies_[reply->request_id] = reply->value;
    changed_.notify_all();
  }

  /// Waits (on a condition variable: for a client with its own thread) until `condition` holds, checked under the
  /// recorder's lock; false if `timeout` passes first.
  bool wait(const std::function<bool(const Recorder&)>& condition, Ms timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return condition(*this); });
  }

  // Readers: copies, taken under the lock. The *_locked ones are for wait() conditions, which hold it.
  std::vector<StateChange> states() const {
    std::lock_guard lock(mutex_);
    return states_;
  }
  std::vector<ConnectFailure> connect_failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }
  std::vector<std::pair<std::uint64_t, SessionChange>> sessions() const {
    std::lock_guard lock(mutex_);
    return sessions_;
  }
  std::vector<std::pair<std::uint32_t, std::uint64_t>> leaders() const {
    std::lock_guard lock(mutex_);
    return leaders_;
  }
  std::map<std::uint64_t, std::vector<std::string>> fates() const {
    std::lock_guard lock(mutex_);
    return fates_;
  }
  FateCounts counts() const {
    std::lock_guard lock(mutex_);
    return counts_;
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> data_loss() const {
    std::lock_guard lock(mutex_);
    return data_loss_;
  }
  std::set<std::thread::id> callback_threads() const {
    std::lock_guard lock(mutex_);
    return threads_;
  }
  /// When the client first (after `since`) entered `state`.
  std::optional<Clock::time_point> entered(ClientState state, Clock::time_point since = {}) const {
    std::lock_guard lock(mutex_);
    for (const auto& change : states_)
      if (change.state == state && change.at >= since) return change.at;
    return std::nullopt;
  }
  std::optional<Clock::time_point> session_at(SessionChange change, Clock::time_point since = {}) const {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < sessions_.size(); ++i)
      if (sessions_[i].second == change && session_times_[i] >= since) return session_times_[i];
    return std::nullopt;
  }

  std::size_t fated_locked() const { return counts_.total(); }
  const std::vector<ConnectFailure>& failures_locked() const { return failures_; }
  const std::vector<std::pair<std::uint64_t, SessionChange>>& sessions_locked() const { return sessions_; }
  bool closed_locked() const {
    return std::any_of(states_.begin(), states_.end(), [](const auto& s) { return s.state == ClientState::closed; });
  }
  std::optional<std::int64_t> reply_locked(std::uint64_t request_id) const {
    const auto found = replies_.find(request_id);
    if (found == replies_.end()) return std::nullopt;
    return found->second;
  }

  /// The states, one line each, for failure messages.
  std::string describe_states() const {
    std::lock_guard lock(mutex_);
    std::string text;
    for (const auto& s : states_)
      text += fmt::format("  {} ({}): {}\n", to_string(s.state), to_string(s.reason), s.text);
    return text;
  }

 private:
  void note_thread() { threads_.insert(std::this_thread::get_id()); }

  void fate(std::uint64_t seq, std::string text, std::size_t& counter) {
    if (fate_delay_.count() > 0) std::this_thread::sleep_for(fate_delay_);
    std::lock_guard lock(mutex_);
    note_thread();
    fates_[seq].push_back(std::move(text));
    ++counter;
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<StateChange> states_;
  std::vector<ConnectFailure> failures_;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> leaders_;
  std::vector<std::pair<std::uint64_t, SessionChange>> sessions_;
  std::vector<Clock::time_point> session_times_;
  std::map<std::uint64_t, std::vector<std::string>> fates_;  // seq -> every fate told for it
  FateCounts counts_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> data_loss_;
  std::map<std::uint64_t, std::int64_t> replies_;  // request id -> the counter's value in the reply
  std::set<std::thread::id> threads_;
  Ms fate_delay_{0};  // set before the client starts
};

/// Checks that every seq in `accepted` has exactly one fate and that no other seq has one; returns how many
/// failures it reported.
std::size_t expect_one_fate_each(const Recorder& recorder, const std::set<std::uint64_t>& accepted) {
  std::size_t wrong = 0;
  const auto fates = recorder.fates();
  for (const auto seq : accepted) {
    const auto found = fates.find(seq);
    const std::size_t count = found == fates.end() ? 0 : found->second.size();
    if (count != 1 && ++wrong <= 10)
      ADD_FAILURE() << "seq " << seq << " has " << count << " fates"
                    << (count > 1 ? ": " + ::testing::PrintToString(found->second) : "");
  }
  for (const auto& [seq, told] : fates)
    if (!accepted.contains(seq) && ++wrong <= 10)
      ADD_FAILURE() << "seq " << seq << " was never accepted but has fates " << ::testing::PrintToString(told);
  return wrong;
}

/// The seqs with a fate that begins with `kind` ("applied", "rejected", "unknown").
std::set<std::uint64_t> seqs_with(const Recorder& recorder, std::string_view kind) {
  std::set<std::uint64_t> seqs;
  for (const auto& [seq, told] : recorder.fates())
    if (!told.empty() && told.front().starts_with(kind)) seqs.insert(seq);
  return seqs;
}

/// Offers adds of 1 through a client with its own thread, one every `period` (0: as fast as the buffer allows), on
/// a thread of its own, until stopped or the client refuses for good. Remembers every accepted seq.
class AddStream {
 public:
  AddStream(Client& client, Ms period)
      : client_(client), period_(period), thread_([this](const std::stop_token& stop) { run(stop); }) {}
  ~AddStream() { stop(); }
  AddStream(const AddStream&) = delete;
  AddStream& operator=(const AddStream&) = delete;

  void stop() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
  }
  std::set<std::uint64_t> accepted() const {
    std::lock_guard lock(mutex_);
    return accepted_;
  }
  std::size_t accepted_count() const {
    std::lock_guard lock(mutex_);
    return accepted_.size();
  }
  /// What the last refused offer said (closed, too_large), if the stream ended on one.
  std::optional<OfferStatus> ended_on() const {
    std::lock_guard lock(mutex_);
    return ended_on_;
  }

 private:
  void run(const std::stop_token& stop) {
    std::uint64_t request_id = 1;
    while (!stop.stop_requested()) {
      const Offer offer = client_.offer(add_one(request_id));
      if (offer.status == OfferStatus::accepted) {
        ++request_id;
        std::lock_guard lock(mutex_);
        accepted_.insert(offer.seq);
      } else if (offer.status != OfferStatus::back_pressured) {
        std::lock_guard lock(mutex_);
        ended_on_ = offer.status;
        return;
      }
      std::this_thread::sleep_for(offer.status == OfferStatus::back_pressured ? Ms(5) : period_);
    }
  }

  Client& client_;
  const Ms period_;
  mutable std::mutex mutex_;
  std::set<std::uint64_t> accepted_;
  std::optional<OfferStatus> ended_on_;
  std::jthread thread_;  // last: started once the rest exists
};

/// Invoker mode: calls poll() until `done` holds; between polls that found nothing to do, sleeps a millisecond
/// (two cores: no busy spin). False if `timeout` passes first.
bool pump(Client& client, const std::function<bool()>& done, Ms timeout) {
  const auto until = Clock::now() + timeout;
  while (true) {
    const int work = client.poll();
    if (done()) return true;
    if (Clock::now() >= until) return false;
    if (work == 0) std::this_thread::sleep_for(1ms);
  }
}

/// The threads this process runs now.
std::size_t thread_count() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++count;
  return count;
}

class ClientSystemTest : public ClusterTest {
 protected:
  /// Chooses the three nodes' ports and directories without starting them: their ports stay closed (nothing
  /// listens), until start_nodes().
  void plan_cluster(std::vector<std::string> extra) {
    extra_ = std::move(extra);
    plan_nodes(kNodes);
  }

  /// Starts every node (again), all at once, and waits until each listens.
  bool start_nodes() {
    for (auto& n : nodes_) spawn(n);
    bool all = true;
    for (auto& n : nodes_) {
      if (await_start(n)) continue;
      ADD_FAILURE() << "node " << n.id << " did not start; stderr:\n" << n.process->stderr_text();
      all = false;
    }
    return all;
  }

  /// SIGKILLs every node at once and reaps them.
  void kill_nodes() {
    for (auto& n : nodes_) n.process->signal(SIGKILL);
    for (auto& n : nodes_) EXPECT_TRUE(n.process->wait_exit(deadline())) << "node " << n.id << " did not exit";
  }

  ClientOptions client_options() const {
    ClientOptions options;
    options.cluster_id = kClusterId;
    options.members = client_endpoints();
    return options;
  }

  /// The counter's value, read through a fresh client (a get, asked again under a new request id if its reply
  /// does not come: egress may be lost across a failover); nullopt if no reply came within the deadline.
  std::optional<std::int64_t> read_counter() {
    Recorder recorder;
    Client reader(client_options(), recorder);
    if (!reader.wait_connected(deadline())) {
      ADD_FAILURE() << "the reader did not connect:\n" << recorder.describe_states();
      return std::nullopt;
    }
    const auto value = ask_counter(reader, recorder);
    if (!value) ADD_FAILURE() << "no reply to a get of the counter within " << deadline().count() << " ms";
    return value;
  }

  /// Asks the counter's value through `client` (connected, own thread) and waits for the reply.
  std::optional<std::int64_t> ask_counter(Client& client, Recorder& recorder) {
    const auto until = Clock::now() + deadline();
    for (std::uint64_t id = kFirstGetId + 1000; Clock::now() < until; ++id) {
      if (client.offer(get_counter(id)).status != OfferStatus::accepted) return std::nullopt;
      std::optional<std::int64_t> value;
      recorder.wait(
          [&](const Recorder& r) {
            value = r.reply_locked(id);
            return value.has_value();
          },
          reply_timeout());
      if (value) return value;
    }
    return std::nullopt;
  }
};

const std::vector<std::string> kCounter = {"--service", "counter"};

// --- the tests ------------------------------------------------------------------------------------------------

// Every member's port closed: the client says why at each attempt (connection refused, naming the endpoint), keeps
// retrying within the short refused backoff, buffers what it is offered, and once the nodes come up connects: the
// same client, its first session, and each buffered add applied exactly once (the counter says so).
TEST_F(ClientSystemTest, AClientStartedWhileEveryNodeIsDownSaysWhyBuffersAndConnectsOnceTheNodesComeUp) {
  plan_cluster(kCounter);
  Recorder recorder;
  const ClientOptions options = client_options();
  Client client(options, recorder);
  const auto client_started = Clock::now();

  constexpr std::uint64_t kAdds = 200;
  std::set<std::uint64_t> accepted;
  for (std::uint64_t i = 1; i <= kAdds; ++i) {
    const Offer offer = client.offer(add_one(i));
    ASSERT_EQ(offer.status, OfferStatus::accepted) << "add " << i;
    accepted.insert(offer.seq);
  }
  EXPECT_EQ(accepted.size(), kAdds);
  EXPECT_EQ(client.unacknowledged(), kAdds);

  // Each member refuses (nothing listens), and the listener hears it with the endpoint. The refused backoff
  // (250 ms at most per attempt) keeps the attempts coming: in 2 s at least 8 of them, asserted loosely.
  const std::set<std::string> members(options.members.begin(), options.members.end());
  ASSERT_TRUE(recorder.wait(
      [&](const Recorder& r) {
        std::set<std::string> refused;
        for (const auto& f : r.failures_locked())
          if (f.reason == Reason::connection_refused) refused.insert(f.endpoint);
        return refused == members;
      },
      deadline()))
      << "not every member's refusal reached the listener";
  const auto settle_until = client_started + 2s;
  std::this_thread::sleep_until(settle_until);  // the nodes come up "some seconds later"
  const auto failures = recorder.connect_failures();
  std::size_t refused = 0;
  long long widest_gap = 0;
  for (std::size_t i = 0; i < failures.size(); ++i) {
    EXPECT_EQ(failures[i].reason, Reason::connection_refused) << failures[i].endpoint << ": " << failures[i].text;
    EXPECT_TRUE(members.contains(failures[i].endpoint)) << "a failure at " << failures[i].endpoint;
    if (failures[i].reason == Reason::connection_refused) ++refused;
    if (i > 0) widest_gap = std::max(widest_gap, ms_between(failures[i - 1].at, failures[i].at));
  }
  EXPECT_GE(refused, 5U) << "too few attempts in 2 s: the refused backoff is not short";
  EXPECT_LT(widest_gap, 1000 * slowdown()) << "an attempt waited far longer than refused_backoff_max";
  EXPECT_EQ(client.state(), ClientState::connecting);
  EXPECT_EQ(client.session_id(), 0U);
  EXPECT_EQ(recorder.counts().total(), 0U) << "a fate before any node was up";
  EXPECT_TRUE(recorder.sessions().empty());

  const auto spawned = Clock::now();
  ASSERT_TRUE(start_nodes());
  const auto listening = Clock::now();
  const auto leader = wait_leader(deadline());
  const auto leader_seen = Clock::now();
  ASSERT_TRUE(client.wait_connected(deadline())) << "the client did not connect:\n" << recorder.describe_states();
  const auto connected = recorder.entered(ClientState::connected);
  ASSERT_TRUE(connected);
  const auto up_to_connected = ms_between(listening, *connected);
  EXPECT_LT(up_to_connected, 5000 * slowdown()) << "connected too long after the nodes came up";

  ASSERT_TRUE(client.wait_drained(deadline())) << client.unacknowledged() << " adds still unacknowledged";
  EXPECT_EQ(expect_one_fate_each(recorder, accepted), 0U);
  const FateCounts counts = recorder.counts();
  EXPECT_EQ(counts.applied, kAdds);
  EXPECT_EQ(counts.rejected + counts.unknown, 0U);
  const auto sessions = recorder.sessions();
  ASSERT_EQ(sessions.size(), 1U) << "expected the first session only";
  EXPECT_EQ(sessions.front().second, SessionChange::opened);
  EXPECT_EQ(client.session_id(), sessions.front().first);
  EXPECT_EQ(client.settled_seq(), kAdds);
  EXPECT_GT(client.applied_position(), 0U);
  const auto value = ask_counter(client, recorder);
  ASSERT_TRUE(value) << "no reply to a get of the counter";
  EXPECT_EQ(*value, static_cast<std::int64_t>(kAdds)) << "the counter does not equal the adds applied";
  std::printf(
      "[ info ] %zu refused attempts in the first 2 s (widest gap %lld ms); nodes listening %lld ms after the "
      "spawn, leader (node %u) seen by status %lld ms after that; the client connected %lld ms after the nodes "
      "listened (%lld ms after the leader was seen)\n",
      refused, widest_gap, ms_between(spawned, listening), leader ? leader->node_id : 0U,
      ms_between(listening, leader_seen), up_to_connected, ms_between(leader_seen, *connected));
}

// give_up_after = 2 s: a connected, streaming client whose cluster dies (every node SIGKILLed) closes ≈2 s later
// with Reason::give_up_deadline; every accepted add has exactly one fate; the counter (after a restart) lies
// between the adds reported applied and those plus the unknown ones; offers are refused as closed.
TEST_F(ClientSystemTest, TheGiveUpDeadlineClosesAClientWhoseClusterIsGoneAndSettlesEveryMessage) {
  ASSERT_TRUE(start_cluster(kCounter));
  ASSERT_TRUE(wait_leader(deadline()));
  Recorder recorder;
  ClientOptions options = client_options();
  options.give_up_after = 2s;
  Client client(options, recorder);
  ASSERT_TRUE(client.wait_connected(deadline())) << recorder.describe_states();

  AddStream stream(client, 1ms);
  ASSERT_TRUE(recorder.wait([](const Recorder& r) { return r.fated_locked() >= 200; }, deadline()))
      << "too few adds applied before the kill";
  const auto killed_at = Clock::now();
  kill_nodes();
  ASSERT_TRUE(recorder.wait([](const Recorder& r) { return r.closed_locked(); }, deadline()))
      << "the client did not close:\n"
      << recorder.describe_states();
  const auto closed_at = recorder.entered(ClientState::closed);
  ASSERT_TRUE(closed_at);
  const auto kill_to_close = ms_between(killed_at, *closed_at);
  EXPECT_GE(kill_to_close, 1500) << "closed before the give-up deadline";
  EXPECT_LE(kill_to_close, 10000) << "closed long after the give-up deadline";
  const auto states = recorder.states();
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back().state, ClientState::closed);
  EXPECT_EQ(states.back().reason, Reason::give_up_deadline) << states.back().text;
  EXPECT_TRUE(contains(states.back().text, "give_up_after")) << states.back().text;
  EXPECT_EQ(client.state_reason().first, Reason::give_up_deadline) << client.state_reason().second;
  EXPECT_EQ(client.state(), ClientState::closed);
  EXPECT_EQ(client.offer(add_one(1'000'000)).status, OfferStatus::closed);
  EXPECT_TRUE(eventually([&] { return stream.ended_on().has_value(); }, deadline()))
      << "the stream's offers were not refused";
  stream.stop();
  EXPECT_EQ(stream.ended_on(), OfferStatus::closed);

  const auto accepted = stream.accepted();
  EXPECT_EQ(expect_one_fate_each(recorder, accepted), 0U);
  EXPECT_EQ(client.unacknowledged(), 0U);
  EXPECT_EQ(client.settled_seq(), accepted.empty() ? 0U : *accepted.rbegin());
  const FateCounts counts = recorder.counts();
  EXPECT_EQ(counts.total(), accepted.size());
  // The reason each unsettled message carries: the give-up deadline.
  for (const auto& [seq, told] : recorder.fates()) {
    if (!told.front().starts_with("applied")) {
      EXPECT_TRUE(contains(told.front(), to_string(Reason::give_up_deadline))) << "seq " << seq << ": " << told.front();
    }
  }

  // Acknowledged adds were applied (and survive: fsync); unknown ones may have been; rejected ones were not.
  ASSERT_TRUE(start_nodes());
  const auto value = read_counter();
  ASSERT_TRUE(value);
  EXPECT_GE(*value, static_cast<std::int64_t>(counts.applied)) << "an acknowledged add is missing";
  EXPECT_LE(*value, static_cast<std::int64_t>(counts.applied + counts.unknown))
      << "more adds applied than were acknowledged or unknown: a rejected one was applied, or one twice";
  std::printf(
      "[ info ] killed every node; the client closed (give-up deadline) %lld ms later; %zu accepted: %zu applied, "
      "%zu unknown, %zu rejected; the counter reads %lld\n",
      kill_to_close, accepted.size(), counts.applied, counts.unknown, counts.rejected, static_cast<long long>(*value));
}

// The real-process version of a long outage, with scaled timeouts (keep-alive 100 ms, silence 400 ms, backoff at
// most 1 s, session timeout 4 s): every node SIGKILLed for 12 s while a client streams adds (buffered meanwhile),
// then started again. The client never closes, resumes the same session (the cluster gives every session a full
// session timeout from the new leader's first entry), and every accepted add is applied exactly once.
TEST_F(ClientSystemTest, AfterAClusterOutageLongerThanEveryTimeoutTheClientResumesTheSameSessionWithExactFates) {
  const Ms session_timeout(4'000 * slowdown());
  constexpr auto kOutage = 12s;
  ASSERT_TRUE(start_cluster({"--service", "counter", "--client-keepalive-ms", "100", "--session-timeout-ms",
                             std::to_string(session_timeout.count())}));
  ASSERT_TRUE(wait_leader(deadline()));
  Recorder recorder;
  ClientOptions options = client_options();
  options.keepalive_interval = 100ms;
  options.silence_limit = 400ms;
  options.backoff_initial = 20ms;
  options.backoff_max = 1000ms;
  Client client(options, recorder);
  ASSERT_TRUE(client.wait_connected(deadline())) << recorder.describe_states();
  const std::uint64_t session = client.session_id();
  ASSERT_NE(session, 0U);

  AddStream stream(client, 2ms);
  ASSERT_TRUE(recorder.wait([](const Recorder& r) { return r.fated_locked() >= 200; }, deadline()));
  const auto killed_at = Clock::now();
  kill_nodes();
  ASSERT_TRUE(recorder.wait(
      [&](const Recorder& r) {
        return std::any_of(r.failures_locked().begin(), r.failures_locked().end(), [&](const ConnectFailure& f) {
          return f.reason == Reason::connection_refused && f.at > killed_at;
        });
      },
      deadline()))
      << "no refused attempt after the kill:\n"
      << recorder.describe_states();
  std::this_thread::sleep_until(killed_at + kOutage);
  // Still trying, still naming the session it will resume, and still buffering.
  EXPECT_EQ(client.state(), ClientState::reconnecting) << recorder.describe_states();
  EXPECT_EQ(client.session_id(), session) << "session_id() changed while reconnecting";
  const auto accepted_in_outage = stream.accepted_count();
  EXPECT_GT(client.unacknowledged(), 0U) << "nothing was buffered during the outage";

  const auto restarted_at = Clock::now();
  ASSERT_TRUE(start_nodes());
  const auto listening = Clock::now();
  ASSERT_TRUE(recorder.wait(
      [&](const Recorder& r) {
        return std::any_of(r.sessions_locked().begin(), r.sessions_locked().end(),
                           [](const auto& s) { return s.second != SessionChange::opened; });
      },
      deadline()))
      << "no session after the restart:\n"
      << recorder.describe_states();
  const auto back_at = recorder.session_at(SessionChange::resumed, killed_at);
  ASSERT_TRUE(
      recorder.wait([&](const Recorder& r) { return r.fated_locked() >= accepted_in_outage + 300; }, deadline()))
      << "too few adds applied after the restart";
  stream.stop();
  ASSERT_TRUE(client.wait_drained(deadline())) << client.unacknowledged() << " still unacknowledged";

  const auto accepted = stream.accepted();
  EXPECT_EQ(expect_one_fate_each(recorder, accepted), 0U);
  const FateCounts counts = recorder.counts();
  EXPECT_EQ(counts.applied, accepted.size());
  EXPECT_EQ(counts.unknown, 0U);
  EXPECT_EQ(counts.rejected, 0U);
  EXPECT_TRUE(recorder.data_loss().empty());
  const auto sessions = recorder.sessions();
  ASSERT_GE(sessions.size(), 2U);
  EXPECT_EQ(sessions.front().second, SessionChange::opened);
  for (std::size_t i = 1; i < sessions.size(); ++i) {
    EXPECT_EQ(sessions[i].first, session) << "session #" << i << " is another session";
    EXPECT_EQ(sessions[i].second, SessionChange::resumed) << "session #" << i;
  }
  EXPECT_EQ(client.session_id(), session);
  EXPECT_EQ(client.state(), ClientState::connected);
  for (const auto& s : recorder.states()) EXPECT_NE(s.state, ClientState::closed) << s.text;
  const auto value = ask_counter(client, recorder);
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, static_cast<std::int64_t>(accepted.size())) << "the counter does not equal the adds accepted";
  ASSERT_TRUE(back_at);
  std::printf(
      "[ info ] outage of %lld ms (every node SIGKILLed); %zu attempts failed meanwhile; nodes listening %lld ms "
      "after the restart; the session was resumed %lld ms after that; %zu adds accepted (%zu during the outage), "
      "all applied once; the counter reads %lld\n",
      ms_between(killed_at, restarted_at), recorder.connect_failures().size(), ms_between(restarted_at, listening),
      ms_between(listening, *back_at), accepted.size(), accepted_in_outage, static_cast<long long>(*value));
}

// Invoker mode end to end: no thread of the client's own, every callback on the test thread, driven only by poll()
// (and wait_connected/wait_drained/close, which poll): a session opens, adds are applied, the leader is SIGKILLed
// and the client goes on, and a draining close leaves every add applied, exactly once.
TEST_F(ClientSystemTest, AnInvokerModeClientDrivenOnlyByPollSurvivesALeaderKillAndDrainsOnClose) {
  ASSERT_TRUE(start_cluster(kCounter));
  ASSERT_TRUE(wait_leader(deadline()));
  const std::size_t threads_before = thread_count();
  Recorder recorder;
  ClientOptions options = client_options();
  options.threading = ClientThreading::invoker;
  Client client(options, recorder);
  ASSERT_TRUE(client.wait_connected(deadline())) << recorder.describe_states();
  EXPECT_EQ(thread_count(), threads_before) << "the invoker-mode client started a thread";
  const std::uint64_t session = client.session_id();
  ASSERT_NE(session, 0U);

  std::set<std::uint64_t> accepted;
  std::uint64_t request_id = 1;
  const auto offer_adds = [&](std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      Offer offer;
      const bool taken = pump(
          client,
          [&] {
            offer = client.offer(add_one(request_id));
            return offer.status != OfferStatus::back_pressured;
          },
          deadline());
      ASSERT_TRUE(taken) << "back-pressured for the whole deadline";
      ASSERT_EQ(offer.status, OfferStatus::accepted) << to_string(offer.status);
      accepted.insert(offer.seq);
      ++request_id;
      client.poll();
    }
  };
  const auto all_fated = [&] { return recorder.counts().total() >= accepted.size(); };

  ASSERT_NO_FATAL_FAILURE(offer_adds(500));
  ASSERT_TRUE(client.wait_drained(deadline())) << client.unacknowledged() << " unacknowledged";
  EXPECT_EQ(recorder.counts().applied, 500U);

  const std::uint32_t leader = client.leader_id();
  ASSERT_NE(leader, 0U);
  const auto killed_at = Clock::now();
  ASSERT_TRUE(kill_node(leader));
  ASSERT_NO_FATAL_FAILURE(offer_adds(500));
  ASSERT_TRUE(pump(client, all_fated, deadline()))
      << recorder.counts().total() << " of " << accepted.size() << " fated after the leader's kill:\n"
      << recorder.describe_states();
  const auto back_at = recorder.entered(ClientState::connected, killed_at);
  EXPECT_NE(client.leader_id(), leader);
  const auto leaders = recorder.leaders();
  ASSERT_FALSE(leaders.empty());
  EXPECT_EQ(leaders.back().first, client.leader_id()) << "the listener did not hear of the new leader";
  EXPECT_EQ(client.session_id(), session);

  // The last 200 offered without a poll in between: their acknowledgements are still to be read when the close
  // begins, so only its drain can make them applied rather than unknown.
  for (int i = 0; i < 200; ++i) {
    const Offer offer = client.offer(add_one(request_id++));
    ASSERT_EQ(offer.status, OfferStatus::accepted) << to_string(offer.status);
    accepted.insert(offer.seq);
  }
  const std::size_t unacknowledged_at_close = client.unacknowledged();
  EXPECT_EQ(unacknowledged_at_close, 200U);
  const auto closing = Clock::now();
  client.close(5s);
  const auto close_ms = ms_since(closing);
  EXPECT_EQ(client.state(), ClientState::closed);
  EXPECT_EQ(client.state_reason().first, Reason::closed_by_application) << client.state_reason().second;
  EXPECT_EQ(client.offer(add_one(request_id)).status, OfferStatus::closed);
  EXPECT_EQ(client.poll(), 0);

  EXPECT_EQ(expect_one_fate_each(recorder, accepted), 0U);
  const FateCounts counts = recorder.counts();
  EXPECT_EQ(counts.applied, 1200U);
  EXPECT_EQ(counts.unknown + counts.rejected, 0U);
  for (const auto& [id, change] : recorder.sessions()) EXPECT_EQ(id, session) << to_string(change);
  const auto threads = recorder.callback_threads();
  ASSERT_EQ(threads.size(), 1U) << "callbacks ran on more than one thread";
  EXPECT_EQ(*threads.begin(), std::this_thread::get_id()) << "a callback ran off the polling thread";
  EXPECT_EQ(thread_count(), threads_before);

  const auto value = read_counter();
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, 1200) << "the counter does not equal the adds applied";
  std::printf(
      "[ info ] invoker mode: leader node %u SIGKILLed, connected again %lld ms later; close(5 s) drained %zu adds "
      "in %lld ms; 1200 adds applied once\n",
      leader, back_at ? ms_between(killed_at, *back_at) : -1LL, unacknowledged_at_close, close_ms);
}

// wait_drained() returns once the listener has heard every fate, not merely once the client has settled them: with
// a slow listener (2 ms per fate) the client's buffer empties long before the last on_applied has run, and a
// wait_drained() called then must still wait for it.
TEST_F(ClientSystemTest, WaitDrainedReturnsOnlyOnceTheListenerHasHeardEveryFate) {
  ASSERT_TRUE(start_cluster(kCounter));
  ASSERT_TRUE(wait_leader(deadline()));
  Recorder recorder(2ms);
  Client client(client_options(), recorder);
  ASSERT_TRUE(client.wait_connected(deadline())) << recorder.describe_states();
  constexpr std::size_t kAdds = 500;
  for (std::uint64_t i = 1; i <= kAdds; ++i) ASSERT_EQ(client.offer(add_one(i)).status, OfferStatus::accepted);
  ASSERT_TRUE(eventually([&] { return client.unacknowledged() == 0; }, deadline(), 1ms));
  const std::size_t told_when_settled = recorder.counts().total();
  ASSERT_TRUE(client.wait_drained(deadline()));
  EXPECT_EQ(recorder.counts().applied, kAdds) << "wait_drained() returned before the listener heard every fate";
  std::printf("[ info ] when the client had settled all %zu adds, the slow listener had heard of %zu\n", kAdds,
              told_when_settled);
}

// close(drain) on a live cluster: thousands of adds offered at once, then a close with a 5 s drain: every one is
// applied before the close returns, none unknown, and the counter agrees.
TEST_F(ClientSystemTest, ADrainingCloseOnALiveClusterReturnsOnceEveryMessageIsApplied) {
  ASSERT_TRUE(start_cluster(kCounter));
  ASSERT_TRUE(wait_leader(deadline()));
  Recorder recorder;
  Client client(client_options(), recorder);
  ASSERT_TRUE(client.wait_connected(deadline())) << recorder.describe_states();
  constexpr std::uint64_t kAdds = 3000;
  std::set<std::uint64_t> accepted;
  for (std::uint64_t i = 1; i <= kAdds; ++i) {
    const Offer offer = client.offer(add_one(i));
    ASSERT_EQ(offer.status, OfferStatus::accepted) << "add " << i;
    accepted.insert(offer.seq);
  }
  const std::size_t unacknowledged_at_close = client.unacknowledged();
  const auto closing = Clock::now();
  client.close(std::chrono::seconds(5 * slowdown()));
  const auto close_ms = ms_since(closing);
  EXPECT_EQ(client.state(), ClientState::closed);
  EXPECT_EQ(client.state_reason().first, Reason::closed_by_application) << client.state_reason().second;
  EXPECT_EQ(client.offer(add_one(kAdds + 1)).status, OfferStatus::closed);
  EXPECT_EQ(expect_one_fate_each(recorder, accepted), 0U);
  const FateCounts counts = recorder.counts();
  EXPECT_EQ(counts.applied, kAdds);
  EXPECT_EQ(counts.unknown, 0U);
  EXPECT_EQ(counts.rejected, 0U);
  EXPECT_EQ(client.unacknowledged(), 0U);
  const auto value = read_counter();
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, static_cast<std::int64_t>(kAdds));
  std::printf("[ info ] close(5 s) with %zu of %llu adds unacknowledged returned after %lld ms, all applied\n",
              unacknowledged_at_close, static_cast<unsigned long long>(kAdds), close_ms);
}

// close(drain) with every node down: the client keeps trying until the drain's deadline, then closes; what was
// applied before the outage stays applied, and the adds offered during it (never sent: there was no session) are
// rejected, definitely not applied.
TEST_F(ClientSystemTest, ADrainingCloseWhileTheClusterIsDownEndsAtItsDeadlineAndSettlesTheRest) {
  ASSERT_TRUE(start_cluster(kCounter));
  ASSERT_TRUE(wait_leader(deadline()));
  Recorder recorder;
  Client client(client_options(), recorder);
  ASSERT_TRUE(client.wait_connected(deadline())) << recorder.describe_states();
  std::set<std::uint64_t> before;
  for (std::uint64_t i = 1; i <= 100; ++i) before.insert(client.offer(add_one(i)).seq);
  ASSERT_TRUE(client.wait_drained(deadline()));
  EXPECT_EQ(recorder.counts().applied, 100U);

  kill_nodes();
  ASSERT_TRUE(eventually([&] { return client.state() == ClientState::reconnecting; }, deadline()))
      << recorder.describe_states();
  std::set<std::uint64_t> during;
  for (std::uint64_t i = 101; i <= 150; ++i) {
    const Offer offer = client.offer(add_one(i));
    ASSERT_EQ(offer.status, OfferStatus::accepted) << "add " << i << " while reconnecting";
    during.insert(offer.seq);
  }
  constexpr auto kDrain = 2s;
  const auto closing = Clock::now();
  client.close(kDrain);
  const auto close_ms = ms_since(closing);
  EXPECT_GE(close_ms, 1900) << "the close did not wait for its drain deadline";
  EXPECT_LE(close_ms, 6000 * slowdown()) << "the close outlasted its drain deadline";
  EXPECT_EQ(client.state(), ClientState::closed);
  EXPECT_EQ(client.state_reason().first, Reason::closed_by_application) << client.state_reason().second;

  std::set<std::uint64_t> accepted = before;
  accepted.insert(during.begin(), during.end());
  EXPECT_EQ(expect_one_fate_each(recorder, accepted), 0U);
  EXPECT_EQ(seqs_with(recorder, "applied"), before);
  EXPECT_EQ(seqs_with(recorder, "rejected"), during) << "an add offered with no session was not rejected";
  EXPECT_TRUE(seqs_with(recorder, "unknown").empty());
  EXPECT_EQ(client.unacknowledged(), 0U);
  std::printf("[ info ] close(2 s) with every node down returned after %lld ms: 100 applied, %zu rejected\n", close_ms,
              during.size());
}

// A library keeps quiet (issue 14, item 6): a client program that leaves logging as it finds it
// (cohort-stream-client --library-logging) prints only its own lines on stdout, through connecting (one member
// down: it refuses), sending and closing. The transport's connection lines once landed there, through spdlog's
// default logger; the client's transport now has no logger at all.
TEST_F(ClientSystemTest, TheClientLibraryWritesNothingToItsProgramsStdout) {
  ASSERT_TRUE(start_cluster(kCounter));
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  ASSERT_TRUE(kill_node(leader->node_id == 1 ? 2 : 1));  // a member that refuses: a failed attempt to tell
  std::vector<std::string> args = {"--cluster-id",
                                   std::to_string(kClusterId),
                                   "--count",
                                   "200",
                                   "--rate",
                                   "400",
                                   "--service",
                                   "counter",
                                   "--drain-timeout-ms",
                                   std::to_string(deadline().count()),
                                   "--library-logging"};
  for (const auto& member : client_endpoints()) {
    args.push_back("--member");
    args.push_back(member);
  }
  const RunResult result = run(STREAM_CLIENT_PATH, args, dir_.path(), "quiet-client", deadline() * 2);
  EXPECT_EQ(result.status, 0) << result.err;
  // Its own lines: the event words stream_client.cpp lists.
  static const std::set<std::string> kOwn = {"accepted", "applied", "rejected",   "unknown", "state",
                                             "session",  "egress",  "egress_gap", "done"};
  std::istringstream lines(result.out);
  std::size_t own = 0;
  std::size_t foreign = 0;
  for (std::string line; std::getline(lines, line);) {
    const std::string word = line.substr(0, line.find(' '));
    if (kOwn.contains(word)) {
      ++own;
    } else if (++foreign <= 10) {
      ADD_FAILURE() << "a line on stdout that the program did not write: " << line;
    }
  }
  EXPECT_EQ(foreign, 0U);
  EXPECT_GE(own, 401U) << "the program's own lines are missing:\n" << result.out;
  EXPECT_TRUE(contains(result.out, "done accepted=200 applied=200")) << result.out;
}

}  // namespace
}  // namespace cohort::testing
