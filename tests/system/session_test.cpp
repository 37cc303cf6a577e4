// System tests of the session layer (design.md section 3) on a 3-node cluster of real cohortd processes: a client
// process stopped past the session timeout learns what became of its messages and gets a new session; egress
// produced across a leader's death arrives once and in order; a crashed client's session expires on every replica
// while a live idle client's does not. The clients are cohort-stream-client processes (stream_client.cpp), which
// print every event they hear, and the harness's in-process KvClient. To expire a session the client is cut (a
// SIGSTOP, a kill), never the cluster: a cluster outage gives every session a fresh window.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "cohort/client.h"
#include "cohort/services/kv_codec.h"
#include "process.h"

namespace cohort::testing {
namespace {

/// The session timeout the clusters here run with: short, so the tests are quick; still 8 client keep-alive
/// intervals (the default 250 ms), so a live client never comes near it.
Ms session_timeout() { return Ms(2'000 * slowdown()); }

std::vector<std::string> session_flags() { return {"--session-timeout-ms", std::to_string(session_timeout().count())}; }

/// How a node logs a session the replicated state closed: "session N closed (REASON) after its message K".
std::string closed_line(std::uint64_t session, std::string_view reason) {
  return fmt::format("session {} closed ({})", session, reason);
}

// --- the stream client's output -------------------------------------------------------------------------------

/// What a cohort-stream-client printed, from its complete lines (stream_client.cpp lists them).
struct StreamLog {
  std::vector<std::uint64_t> accepted;
  std::map<std::uint64_t, std::vector<std::string>> fates;  // seq -> each fate told: "applied", "rejected REASON"...
  std::size_t applied = 0;
  std::size_t rejected = 0;
  std::size_t unknown = 0;
  std::vector<std::pair<std::uint64_t, std::string>> sessions;  // (session id, opened|resumed|replaced), in order
  // (session, egress seq, request id) in delivery order; the session is the last one opened before it.
  std::vector<EgressRecord> egress;
  std::vector<std::string> gaps;
  std::optional<std::string> done;

  std::size_t count(std::string_view change) const {
    return static_cast<std::size_t>(
        std::count_if(sessions.begin(), sessions.end(), [&](const auto& s) { return s.second == change; }));
  }
};

StreamLog parse_stream(const std::string& text) {
  StreamLog log;
  std::size_t begin = 0;
  // Only complete lines: the last one may still be on its way.
  for (std::size_t end = text.find('\n'); end != std::string::npos; begin = end + 1, end = text.find('\n', begin)) {
    const std::string line = text.substr(begin, end - begin);
    std::istringstream in(line);
    std::string word;
    in >> word;
    std::string rest;
    std::getline(in >> std::ws, rest);
    std::istringstream fields(rest);
    if (word == "accepted") {
      std::uint64_t seq = 0;
      fields >> seq;
      log.accepted.push_back(seq);
    } else if (word == "applied" || word == "rejected" || word == "unknown") {
      std::uint64_t seq = 0;
      fields >> seq;
      std::string reason;
      std::getline(fields >> std::ws, reason);
      log.fates[seq].push_back(reason.empty() ? word : word + " " + reason);
      (word == "applied" ? log.applied : word == "rejected" ? log.rejected : log.unknown) += 1;
    } else if (word == "session") {
      std::uint64_t id = 0;
      std::string change;
      fields >> id >> change;
      log.sessions.emplace_back(id, change);
    } else if (word == "egress") {
      EgressRecord record;
      record.session = log.sessions.empty() ? 0 : log.sessions.back().first;
      fields >> record.egress_seq >> record.request_id;
      log.egress.push_back(record);
    } else if (word == "egress_gap") {
      log.gaps.push_back(rest);
    } else if (word == "done") {
      log.done = rest;
    }
  }
  return log;
}

/// A cohort-stream-client process against the cluster, putting keys s1, s2... (`count` of them, `rate` a second).
class StreamClient {
 public:
  StreamClient(const std::filesystem::path& dir, const std::string& name, const std::vector<std::string>& members,
               std::uint64_t count, double rate) {
    std::vector<std::string> args = {"--cluster-id", std::to_string(kClusterId), "--count",   std::to_string(count),
                                     "--rate",       fmt::format("{}", rate),    "--service", "kv"};
    for (const auto& member : members) {
      args.push_back("--member");
      args.push_back(member);
    }
    process_ = std::make_unique<Process>(STREAM_CLIENT_PATH, args, dir, name);
  }

  Process& process() { return *process_; }
  StreamLog log() const { return parse_stream(process_->stdout_text()); }

  /// Polls the client's output until `condition` holds; false if `timeout` passes first.
  bool wait(const std::function<bool(const StreamLog&)>& condition, Ms timeout) const {
    return eventually([&] { return condition(log()); }, timeout, 5ms);
  }

 private:
  std::unique_ptr<Process> process_;
};

/// Each egress record's seq is the one after the previous in its session, from 1: nothing delivered twice, out of
/// order, or skipped. Returns the first violation, if any.
std::optional<std::string> egress_out_of_order(const std::vector<EgressRecord>& egress) {
  std::map<std::uint64_t, std::uint64_t> last;  // session -> last egress seq delivered in it
  for (std::size_t i = 0; i < egress.size(); ++i) {
    const EgressRecord& r = egress[i];
    const std::uint64_t expected = last[r.session] + 1;
    if (r.egress_seq != expected)
      return fmt::format("egress #{} of session {} has seq {} (request {}), expected {}", i, r.session, r.egress_seq,
                         r.request_id, expected);
    last[r.session] = r.egress_seq;
  }
  return std::nullopt;
}

class SessionTest : public ClusterTest {
 protected:
  /// The nodes whose log names `line` now.
  std::vector<std::uint32_t> nodes_logging(const std::string& line) const {
    std::vector<std::uint32_t> ids;
    for (const auto& n : nodes_)
      if (n.process && contains(n.process->stderr_text(), line)) ids.push_back(n.id);
    return ids;
  }

  /// Waits until every node's status reports `sessions` open sessions; false (with a failure naming the last
  /// counts) if `timeout` passes first.
  bool wait_open_sessions(std::uint64_t sessions, Ms timeout) {
    std::string last;
    const bool reached = eventually(
        [&] {
          last.clear();
          bool all = true;
          for (const auto& n : nodes_) {
            const auto result = status(n.id);
            if (!result.ok) {
              last += fmt::format("node {}: {}; ", n.id, result.error);
              all = false;
              continue;
            }
            last += fmt::format("node {}: {} open; ", n.id, result.status.open_sessions);
            all = all && result.status.open_sessions == sessions;
          }
          return all;
        },
        timeout, 20ms);
    if (!reached) ADD_FAILURE() << "not every node reports " << sessions << " open sessions: " << last;
    return reached;
  }
};

// --- the tests ------------------------------------------------------------------------------------------------

// A client process stopped (SIGSTOP) past the session timeout: its connection goes silent, the leader drops it,
// and the session expires. When the client continues, its resume finds the session's tombstone: the messages up
// to the tombstone's last seq were applied, every later one (sent before the stop, or offered after the continue
// in the old session) definitely was not, and the client carries on in a new session, reported as replaced. The
// fates it reports must match the cluster's state key by key.
TEST_F(SessionTest, AClientStoppedPastTheSessionTimeoutIsToldWhatWasAppliedAndGetsANewSession) {
  ASSERT_TRUE(start_cluster(session_flags()));
  ASSERT_TRUE(wait_leader(deadline()));

  constexpr std::uint64_t kCount = 300;
  constexpr double kRate = 100;
  StreamClient client(dir_.path(), "stream", client_endpoints(), kCount, kRate);
  ASSERT_TRUE(client.wait([](const StreamLog& log) { return log.applied >= 30; }, deadline()))
      << "the stream client applied too little:\n"
      << client.process().stdout_text() << client.process().stderr_text();
  client.process().signal(SIGSTOP);
  const auto stopped_at = Clock::now();
  const StreamLog at_stop = client.log();  // the process is stopped: its output no longer changes
  ASSERT_EQ(at_stop.sessions.size(), 1U) << client.process().stdout_text();
  const std::uint64_t old_session = at_stop.sessions.front().first;
  EXPECT_EQ(at_stop.sessions.front().second, "opened");

  // Every replica closes the session: the leader appends the close once the session is idle past the timeout.
  const std::string closed = closed_line(old_session, "timeout");
  ASSERT_TRUE(eventually([&] { return !nodes_logging(closed).empty(); }, deadline()))
      << "no node closed session " << old_session << " within " << deadline().count() << " ms of the stop";
  const auto expired_ms = ms_since(stopped_at);
  // The session was bound (so active) until the leader found the stopped client silent: it cannot expire sooner
  // than a session timeout after the stop, give or take an activity interval.
  EXPECT_GE(expired_ms, session_timeout().count() * 3 / 4) << "the session closed before its timeout";
  EXPECT_TRUE(eventually([&] { return nodes_logging(closed).size() == kNodes; }, deadline()))
      << "only nodes " << ::testing::PrintToString(nodes_logging(closed)) << " logged " << closed;

  client.process().signal(SIGCONT);
  const auto continued_at = Clock::now();
  ASSERT_TRUE(client.wait([](const StreamLog& log) { return log.sessions.size() >= 2; }, deadline()))
      << "no new session after the continue:\n"
      << client.process().stdout_text();
  const auto replaced_ms = ms_since(continued_at);
  const auto status = client.process().wait_exit(deadline() + Ms(static_cast<long long>(kCount / kRate * 1000)));
  ASSERT_TRUE(status) << "the stream client did not finish:\n" << client.process().stdout_text();
  EXPECT_EQ(*status, 0) << client.process().stderr_text();

  const StreamLog log = client.log();
  ASSERT_TRUE(log.done) << client.process().stdout_text();
  // A new session in place of the closed one: replaced, never resumed (the cluster no longer has it).
  ASSERT_EQ(log.sessions.size(), 2U) << client.process().stdout_text();
  EXPECT_EQ(log.sessions[1].second, "replaced");
  EXPECT_NE(log.sessions[1].first, old_session);
  EXPECT_EQ(log.count("resumed"), 0U);

  // Every accepted seq has exactly one fate, and none is unknown: the tombstone said how far the session got.
  EXPECT_EQ(log.accepted.size(), kCount);
  EXPECT_EQ(log.unknown, 0U) << client.process().stdout_text();
  std::set<std::uint64_t> applied;
  std::set<std::uint64_t> rejected;
  for (const auto seq : log.accepted) {
    const auto fates = log.fates.find(seq);
    if (fates == log.fates.end() || fates->second.size() != 1) {
      ADD_FAILURE() << "seq " << seq << " has " << (fates == log.fates.end() ? 0 : fates->second.size()) << " fates";
      continue;
    }
    const std::string& fate = fates->second.front();
    if (fate == "applied") {
      applied.insert(seq);
    } else {
      rejected.insert(seq);
      EXPECT_TRUE(contains(fate, "closed the session (timeout)")) << "seq " << seq << ": " << fate;
    }
  }
  for (const auto& [seq, fates] : log.fates)
    EXPECT_TRUE(std::find(log.accepted.begin(), log.accepted.end(), seq) != log.accepted.end())
        << "a fate for seq " << seq << ", which was never accepted";
  // Applied up to the tombstone's k, rejected after it in the old session, applied again in the new one: the
  // rejected seqs are one run, and every seq before it was applied.
  if (!rejected.empty()) {
    EXPECT_EQ(*rejected.rbegin() - *rejected.begin() + 1, rejected.size()) << "the rejected seqs are not one run";
    for (std::uint64_t seq = 1; seq < *rejected.begin(); ++seq)
      EXPECT_TRUE(applied.contains(seq)) << "seq " << seq << " is before the rejected run but was not applied";
  }
  EXPECT_GT(applied.size(), at_stop.applied) << "nothing was applied in the new session";
  // Egress: once and in order within each session, from 1 again in the new one, and no gap reported.
  EXPECT_EQ(egress_out_of_order(log.egress), std::nullopt);
  EXPECT_TRUE(log.gaps.empty()) << "egress gaps: " << ::testing::PrintToString(log.gaps);

  // The cluster's state agrees with every fate: an applied seq's key holds its value, a rejected seq's is absent.
  KvClient reader(client_endpoints());
  ASSERT_TRUE(reader.client().wait_connected(deadline()));
  std::vector<std::string> keys;
  for (const auto seq : log.accepted) keys.push_back(fmt::format("s{}", seq));
  const auto replies = reader.get_all(keys, deadline());
  std::size_t wrong = 0;
  for (const auto seq : log.accepted) {
    const std::string key = fmt::format("s{}", seq);
    const auto reply = replies.find(key);
    if (reply == replies.end()) {
      if (++wrong <= 10) ADD_FAILURE() << "no reply to get " << key;
      continue;
    }
    const bool present = reply->second.status == KvStatus::ok;
    if (applied.contains(seq) && (!present || reply->second.value != fmt::format("v{}", seq))) {
      if (++wrong <= 10)
        ADD_FAILURE() << key << " was reported applied but reads " << services::to_string(reply->second.status) << " '"
                      << reply->second.value << "'";
    } else if (rejected.contains(seq) && reply->second.status != KvStatus::not_found) {
      if (++wrong <= 10)
        ADD_FAILURE() << key << " was reported rejected but reads " << services::to_string(reply->second.status) << " '"
                      << reply->second.value << "'";
    }
  }
  EXPECT_EQ(wrong, 0U);
  std::printf(
      "[ info ] stopped after %zu applied; session %llu closed (timeout) %lld ms after the stop (timeout %lld ms); "
      "session %llu replaced it %lld ms after the continue\n"
      "[ info ] %zu accepted: %zu applied, %zu rejected (seqs %s), %zu unknown; %zu egress delivered\n",
      at_stop.applied, static_cast<unsigned long long>(old_session), expired_ms,
      static_cast<long long>(session_timeout().count()), static_cast<unsigned long long>(log.sessions[1].first),
      replaced_ms, log.accepted.size(), applied.size(), rejected.size(),
      rejected.empty() ? "none" : fmt::format("{}..{}", *rejected.begin(), *rejected.rbegin()).c_str(), log.unknown,
      log.egress.size());
}

// Egress the service produced while its leader died: the new leader holds each session's latest egress (every
// replica does) and resends, on the resume, what the client had not delivered, before live egress. The client
// delivers each egress seq once and in order, with no gap reported, and every applied put gets exactly one reply.
// The client buffer (100 messages) is below the egress window (128): no more egress can be outstanding than that,
// so a gap would be a bug, not the window's bound.
TEST_F(SessionTest, EgressProducedWhileTheLeaderIsKilledArrivesOnceAndInOrder) {
  ASSERT_TRUE(start_cluster(session_flags()));
  const auto first = wait_leader(deadline());
  ASSERT_TRUE(first);

  KvClient writer(client_endpoints(), 100);
  ASSERT_TRUE(writer.client().wait_connected(deadline()));
  PutStream stream(writer);

  ASSERT_TRUE(eventually([&] { return writer.acked() >= 300; }, deadline(), 1ms))
      << "only " << writer.acked() << " acks before the kill";
  const std::size_t egress_at_kill = writer.egress().size();
  const std::size_t acked_at_kill = writer.acked();
  const auto killed_at = Clock::now();
  ASSERT_TRUE(kill_node(first->node_id));
  const auto second = wait_leader(deadline(), ids_except(first->node_id));
  ASSERT_TRUE(second);
  const auto failover_ms = ms_since(killed_at);
  ASSERT_TRUE(eventually([&] { return writer.acked() >= acked_at_kill + 500; }, deadline(), 1ms))
      << "only " << writer.acked() - acked_at_kill << " acks after the kill";
  EXPECT_TRUE(stream.stop()) << "the client closed: " << to_string(writer.client().state());
  ASSERT_TRUE(writer.wait_all_acked(deadline())) << writer.acked() << " of " << stream.offered() << " acknowledged";
  EXPECT_TRUE(writer.failures().empty()) << writer.failures().size() << " messages not applied, first: seq "
                                         << writer.failures().begin()->first << " "
                                         << writer.failures().begin()->second;

  // Every applied put's reply arrives (a reply may come just after its ack).
  const auto acked = writer.acked_seqs();
  std::vector<std::uint64_t> missing;
  eventually(
      [&] {
        missing.clear();
        for (const auto seq : acked)
          if (!writer.reply_to(seq)) missing.push_back(seq);
        return missing.empty();
      },
      deadline());
  EXPECT_TRUE(missing.empty()) << missing.size() << " applied puts got no reply, the first: seq " << missing.front();

  // One session throughout (a failover gives every session a fresh window): opened, then resumed.
  const auto sessions = writer.sessions();
  ASSERT_FALSE(sessions.empty());
  EXPECT_EQ(sessions.front().second, SessionChange::opened);
  std::size_t resumes = 0;
  for (std::size_t i = 1; i < sessions.size(); ++i) {
    EXPECT_EQ(sessions[i].first, sessions.front().first) << "session change #" << i;
    EXPECT_EQ(sessions[i].second, SessionChange::resumed) << "session change #" << i;
    if (sessions[i].second == SessionChange::resumed) ++resumes;
  }
  EXPECT_GE(resumes, 1U) << "the client never re-attached after its leader was killed";

  // Egress: strictly consecutive seqs, no gap, exactly one reply per request.
  const auto egress = writer.egress();
  EXPECT_EQ(egress_out_of_order(egress), std::nullopt);
  EXPECT_TRUE(writer.egress_gaps().empty())
      << writer.egress_gaps().size() << " egress gaps, the first " << writer.egress_gaps().front().first << ".."
      << writer.egress_gaps().front().second;
  std::map<std::uint64_t, int> replies_per_request;
  for (const auto& record : egress) ++replies_per_request[record.request_id];
  std::size_t duplicated = 0;
  for (const auto& [request_id, replies] : replies_per_request)
    if (replies != 1 && ++duplicated <= 10)
      ADD_FAILURE() << "request " << request_id << " got " << replies << " replies";
  // Egress the client could only have had from the window: the replies to puts the cluster had applied before the
  // client re-attached (acknowledged by the resume itself), delivered after the kill.
  std::set<std::uint64_t> applied_before_resume;
  for (const auto seq : writer.acked_by_open())
    if (const auto request = writer.request(seq)) applied_before_resume.insert(request->request_id);
  std::size_t resent = 0;
  for (std::size_t i = egress_at_kill; i < egress.size(); ++i)
    if (applied_before_resume.contains(egress[i].request_id)) ++resent;
  for (const auto seq : acked) {
    const auto request = writer.request(seq);
    ASSERT_TRUE(request);
    EXPECT_EQ(replies_per_request[request->request_id], 1)
        << "seq " << seq << " (request " << request->request_id << ")";
  }
  std::printf(
      "[ info ] killed leader node %u after %zu acks and %zu egress; node %u leads after %lld ms; %zu puts, %zu "
      "egress in all (%zu session changes); the resume acknowledged %zu puts applied meanwhile, %zu of their "
      "replies came after the kill (resent from the window)\n",
      first->node_id, acked_at_kill, egress_at_kill, second->node_id, failover_ms, acked.size(), egress.size(),
      sessions.size(), applied_before_resume.size(), resent);
}

// A client process killed (-9) leaves its session open with nobody to keep it alive: once it has been idle past
// the timeout the leader closes it, every replica applies the close (the service's on_session_close(timeout))
// and logs it, and the open session count falls back. A live client that sends nothing but its automatic
// keep-alives over the same period keeps its session.
TEST_F(SessionTest, ACrashedClientsSessionExpiresWhileALiveIdleClientsStaysOpen) {
  ASSERT_TRUE(start_cluster(session_flags()));
  ASSERT_TRUE(wait_leader(deadline()));

  KvClient idle(client_endpoints());
  ASSERT_TRUE(idle.client().wait_connected(deadline()));
  ASSERT_TRUE(idle.put("idle", "1", deadline()));
  const auto idle_since = Clock::now();  // from here on it only sends keep-alives
  const std::uint64_t idle_session = idle.client().session_id();
  ASSERT_NE(idle_session, 0U);

  StreamClient crashing(dir_.path(), "crashing", client_endpoints(), 100'000, 50);
  ASSERT_TRUE(crashing.wait([](const StreamLog& log) { return log.applied >= 5; }, deadline()))
      << crashing.process().stdout_text() << crashing.process().stderr_text();
  ASSERT_TRUE(wait_open_sessions(2, deadline()));
  crashing.process().signal(SIGKILL);
  const auto killed_at = Clock::now();
  ASSERT_TRUE(crashing.process().wait_exit(deadline()));
  const StreamLog at_kill = crashing.log();
  ASSERT_EQ(at_kill.sessions.size(), 1U) << crashing.process().stdout_text();
  const std::uint64_t crashed_session = at_kill.sessions.front().first;
  ASSERT_NE(crashed_session, idle_session);

  // Every replica logs the close, with reason timeout; the first within the timeout and a generous margin.
  const std::string closed = closed_line(crashed_session, "timeout");
  std::map<std::uint32_t, long long> logged_ms;  // node -> ms after the kill its log showed the close
  eventually(
      [&] {
        for (const auto id : nodes_logging(closed)) logged_ms.try_emplace(id, ms_since(killed_at));
        return logged_ms.size() == kNodes;
      },
      deadline());
  ASSERT_EQ(logged_ms.size(), kNodes) << "nodes that logged " << closed << ": "
                                      << ::testing::PrintToString(nodes_logging(closed));
  long long first_ms = deadline().count();
  long long last_ms = 0;
  for (const auto& [id, ms] : logged_ms) {
    first_ms = std::min(first_ms, ms);
    last_ms = std::max(last_ms, ms);
  }
  // Not closed when its connection dropped (that is not a timeout), and not long after the timeout either.
  EXPECT_GE(first_ms, session_timeout().count() / 2) << "the session closed well before its timeout";
  EXPECT_LE(first_ms, session_timeout().count() + 5'000 * slowdown()) << "the session expired late";
  ASSERT_TRUE(wait_open_sessions(1, deadline()));
  const auto sessions_down_ms = ms_since(killed_at);

  // The idle client's session stays open: watched for two timeouts and an activity interval past its last put.
  const auto watch_until = idle_since + 2 * session_timeout() + Ms(1'000 * slowdown());
  const std::string idle_closed = fmt::format("session {} closed", idle_session);
  EXPECT_FALSE(
      eventually([&] { return !nodes_logging(idle_closed).empty(); },
                 std::chrono::duration_cast<Ms>(std::max(watch_until - Clock::now(), Clock::duration::zero()))))
      << "the idle client's session closed: nodes " << ::testing::PrintToString(nodes_logging(idle_closed));
  const auto idle_ms = ms_since(idle_since);
  EXPECT_EQ(idle.client().state(), ClientState::connected);
  EXPECT_EQ(idle.client().session_id(), idle_session);
  EXPECT_EQ(idle.sessions().size(), 1U) << "the idle client's session changed";
  ASSERT_TRUE(wait_open_sessions(1, deadline()));
  // It still works, in the same session.
  ASSERT_TRUE(idle.put("idle", "2", deadline()));
  EXPECT_EQ(idle.sessions().size(), 1U);
  EXPECT_TRUE(idle.failures().empty());

  // Its graceful close closes the session on every replica too: none is left open.
  idle.client().close();
  EXPECT_TRUE(eventually([&] { return nodes_logging(closed_line(idle_session, "client closed")).size() == kNodes; },
                         deadline()))
      << "not every node logged the idle client's close";
  EXPECT_TRUE(wait_open_sessions(0, deadline()));
  std::printf(
      "[ info ] killed a client after %zu applied; its session %llu closed (timeout %lld ms) %lld ms after the kill "
      "on the first node, %lld ms on the last; open sessions back to 1 after %lld ms; the idle client's session "
      "%llu stayed open through %lld ms of idleness\n",
      at_kill.applied, static_cast<unsigned long long>(crashed_session),
      static_cast<long long>(session_timeout().count()), first_ms, last_ms, sessions_down_ms,
      static_cast<unsigned long long>(idle_session), idle_ms);
}

}  // namespace
}  // namespace cohort::testing
