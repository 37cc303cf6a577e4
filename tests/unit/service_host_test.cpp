// The service host (host/service_host.h) driven directly with committed entries built by the entry codec: sessions,
// exactly-once ingress, timers and their generations, cluster time, closes, egress and the state hash. A recording
// service runs a tiny script found in each ingress message ("schedule 7 300; send 1 hello") so a test can act on
// the cluster from inside a callback, as a real service does.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/bytes.h"
#include "consensus/log.h"
#include "host/entry_codec.h"
#include "host/service_host.h"
#include "recording_service.h"

namespace cohort::host {
namespace {

using consensus::Entry;
using consensus::EntryType;
using testing::RecordingService;
using testing::ServiceCall;
using Kind = ServiceCall::Kind;
using Strings = std::vector<std::string>;
using ByteVector = std::vector<std::byte>;
using std::chrono::milliseconds;

constexpr std::size_t kMaxMessage = 128;
constexpr Id128 kClientA{0xA, 1};
constexpr Id128 kClientB{0xB, 2};

ClusterTime ms(std::int64_t count) { return milliseconds(count); }

const char* to_text(RejectReason reason) {
  switch (reason) {
    case RejectReason::unknown_session: return "unknown_session";
    case RejectReason::gap: return "gap";
    case RejectReason::too_large: return "too_large";
  }
  return "?";
}

const char* to_text(CloseReason reason) {
  switch (reason) {
    case CloseReason::client_closed: return "client_closed";
    case CloseReason::timeout: return "timeout";
    case CloseReason::service: return "service";
  }
  return "?";
}

// One line per host output, so a test compares the whole sequence at once.
std::string describe(const HostOutput& output) {
  struct Describe {
    std::string operator()(const SessionOpened& o) const {
      return fmt::format("opened s={} last={}{}", o.session, o.last_seq, o.resumed ? " resumed" : "");
    }
    std::string operator()(const Applied& o) const {
      return fmt::format("applied s={} seq={} at={}", o.session, o.seq, o.position.value());
    }
    std::string operator()(const Rejected& o) const {
      return fmt::format("rejected s={} seq={} expected={} {}", o.session, o.seq, o.expected, to_text(o.reason));
    }
    std::string operator()(const EgressOut& o) const {
      return fmt::format("egress s={} #{} {}", o.session, o.egress_seq, as_chars(o.message));
    }
    std::string operator()(const SessionEnded& o) const {
      return fmt::format("ended s={} {} last={}", o.session, to_text(o.reason), o.last_seq);
    }
  };
  return std::visit(Describe{}, output);
}

// Builds committed entries (index +1 each, the current term, a real checksum) and applies them to a host. It keeps
// every entry, so the same log can be replayed into another host.
class Feed {
 public:
  explicit Feed(ServiceHost& host) : host_(host) {}

  /// Stamps the entries that follow with `stamp`.
  Feed& at(ClusterTime stamp) {
    stamp_ = stamp;
    return *this;
  }
  void next_term() { term_ = term_.next(); }

  LogIndex bootstrap(Id128 incarnation) {
    constexpr std::uint32_t kMembers[] = {1, 2, 3};
    encode_bootstrap(scratch_, stamp_, incarnation, kMembers);
    return append(EntryType::command, scratch_);
  }
  LogIndex open(Id128 client) {
    encode_session_open(scratch_, stamp_, client);
    return append(EntryType::command, scratch_);
  }
  LogIndex close(SessionId session, CloseReason reason = CloseReason::client_closed) {
    encode_session_close(scratch_, stamp_, session, reason);
    return append(EntryType::command, scratch_);
  }
  LogIndex ingress(SessionId session, std::uint64_t seq, std::string_view message) {
    encode_ingress(scratch_, stamp_, session, seq, as_bytes(message));
    return append(EntryType::command, scratch_);
  }
  LogIndex refused(SessionId session, std::uint64_t seq) {
    encode_ingress_refused(scratch_, stamp_, session, seq);
    return append(EntryType::command, scratch_);
  }
  LogIndex timer(TimerId id, std::uint64_t generation) {
    encode_timer(scratch_, stamp_, id, generation);
    return append(EntryType::command, scratch_);
  }
  LogIndex noop() { return append(EntryType::noop, {}); }
  LogIndex raw(const ByteVector& payload) { return append(EntryType::command, payload); }

  const std::vector<Entry>& entries() const { return entries_; }

 private:
  LogIndex append(EntryType type, const ByteVector& payload) {
    Entry entry;
    entry.index = LogIndex{entries_.size() + 1};
    entry.term = term_;
    entry.type = type;
    entry.payload = payload;
    entry.checksum = consensus::compute_checksum(entry.index, entry.term, entry.type, entry.payload);
    entries_.push_back(entry);
    host_.apply(entries_.back());
    return entries_.back().index;
  }

  ServiceHost& host_;
  Term term_{1};
  ClusterTime stamp_{ms(100)};
  ByteVector scratch_;
  std::vector<Entry> entries_;
};

// Runs the script in an ingress message: commands separated by ';' --
//   schedule <id> <deadline ms> | cancel <id> | send <session> <text> | sendn <session> <length> (that many 'x') |
//   close <session> | open? <session>
// Each command's result (send, cancel, close: whether it worked; open?: whether the host sees the session open) is
// appended to `results`.
void run_script(Cluster& cluster, std::string_view script, const ServiceHost& host, std::vector<bool>& results) {
  std::istringstream commands{std::string(script)};
  std::string command;
  while (std::getline(commands, command, ';')) {
    std::istringstream words(command);
    std::string verb;
    words >> verb;
    if (verb == "schedule") {
      TimerId id = 0;
      std::int64_t deadline = 0;
      words >> id >> deadline;
      cluster.schedule_timer(id, ms(deadline));
    } else if (verb == "cancel") {
      TimerId id = 0;
      words >> id;
      results.push_back(cluster.cancel_timer(id));
    } else if (verb == "send") {
      SessionId session = 0;
      std::string text;
      words >> session >> text;
      results.push_back(cluster.send(session, as_bytes(text)));
    } else if (verb == "sendn") {
      SessionId session = 0;
      std::size_t length = 0;
      words >> session >> length;
      results.push_back(cluster.send(session, as_bytes(std::string(length, 'x'))));
    } else if (verb == "close") {
      SessionId session = 0;
      words >> session;
      results.push_back(cluster.close_session(session));
    } else if (verb == "open?") {
      SessionId session = 0;
      words >> session;
      results.push_back(host.session_open(session));
    }
  }
}

class HostTest : public ::testing::Test {
 protected:
  HostTest() { start(service_, host_); }

  void start(RecordingService& service, ServiceHost& host) {
    service.on_message_hook = [this, &host](Cluster& cluster, SessionId /*session*/, std::string_view message) {
      run_script(cluster, message, host, results_);
    };
    host.start();
  }

  /// The outputs since the last call, one line each.
  Strings take() { return take_from(host_); }
  static Strings take_from(ServiceHost& host) {
    Strings lines;
    for (const HostOutput& output : host.outputs()) lines.push_back(describe(output));
    host.outputs().clear();
    return lines;
  }

  /// The (id, generation) pairs due at `now`.
  std::vector<std::pair<TimerId, std::uint64_t>> due(ClusterTime now, std::size_t limit = 100) const {
    std::vector<std::pair<TimerId, std::uint64_t>> out;
    host_.due_timers(now, out, limit);
    return out;
  }

  /// Opens a session for `client` and returns its id, discarding the outputs.
  SessionId open(Id128 client) {
    const SessionId session = feed_.open(client).value();
    take();
    return session;
  }

  RecordingService service_;
  ServiceHost host_{service_, HostLimits{kMaxMessage}};
  Feed feed_{host_};
  std::vector<bool> results_;
};

// --- sessions ---------------------------------------------------------------------------------------------------

TEST_F(HostTest, HostSessionOpenTakesTheLogIndexAsItsIdAndTellsTheServiceOnce) {
  feed_.noop();
  feed_.noop();
  const LogIndex index = feed_.open(kClientA);
  ASSERT_EQ(index, LogIndex{3});
  EXPECT_EQ(take(), (Strings{"opened s=3 last=0"}));
  const auto opens = service_.of(Kind::session_open);
  ASSERT_EQ(opens.size(), 1U);
  EXPECT_EQ(opens[0].session, 3U);
  EXPECT_EQ(opens[0].log_position, 3U);
  EXPECT_TRUE(host_.session_open(3));
  EXPECT_EQ(host_.open_sessions(), 1U);

  // Another client gets the index of its own entry.
  feed_.ingress(3, 1, "x");
  EXPECT_EQ(feed_.open(kClientB), LogIndex{5});
  EXPECT_EQ(take(), (Strings{"applied s=3 seq=1 at=4", "opened s=5 last=0"}));
  EXPECT_EQ(host_.open_sessions(), 2U);
}

TEST_F(HostTest, HostSessionOpenAgainBySameClientResumesTheSessionWithItsLastSeqAndCallsNothing) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "a");
  feed_.ingress(session, 2, "b");
  take();
  const std::size_t calls = service_.calls.size();

  feed_.open(kClientA);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=2 resumed", session)}));
  EXPECT_EQ(service_.calls.size(), calls) << "a resumed session calls nothing in the service";
  EXPECT_EQ(host_.open_sessions(), 1U);
  EXPECT_EQ(host_.last_seq(session), 2U);
}

TEST_F(HostTest, HostSessionOpenByAClientWhoseSessionClosedStartsANewSession) {
  const SessionId first = open(kClientA);
  feed_.close(first);
  const LogIndex again = feed_.open(kClientA);
  EXPECT_EQ(take(), (Strings{fmt::format("ended s={} client_closed last=0", first),
                             fmt::format("opened s={} last=0", again.value())}));
  EXPECT_NE(again.value(), first);
  EXPECT_EQ(service_.count(Kind::session_open), 2U);
}

// --- ingress, exactly once --------------------------------------------------------------------------------------

TEST_F(HostTest, HostIngressTheNextSeqIsDeliveredOnceWithTheEntrysStamp) {
  const SessionId session = open(kClientA);
  const LogIndex index = feed_.at(ms(150)).ingress(session, 1, "hello");
  EXPECT_EQ(take(), (Strings{fmt::format("applied s={} seq=1 at={}", session, index.value())}));
  const auto messages = service_.of(Kind::message);
  ASSERT_EQ(messages.size(), 1U);
  EXPECT_EQ(messages[0].session, session);
  EXPECT_EQ(messages[0].message, "hello");
  EXPECT_EQ(messages[0].timestamp, ms(150));
  EXPECT_EQ(messages[0].log_position, index.value());
  EXPECT_EQ(host_.last_seq(session), 1U);
}

TEST_F(HostTest, HostIngressADuplicateIsAcknowledgedWithTheLastSeqButNotDelivered) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "one");
  feed_.ingress(session, 2, "two");
  take();
  const LogIndex again = feed_.ingress(session, 1, "one");
  const LogIndex last_again = feed_.ingress(session, 2, "two");
  EXPECT_EQ(take(), (Strings{fmt::format("applied s={} seq=2 at={}", session, again.value()),
                             fmt::format("applied s={} seq=2 at={}", session, last_again.value())}));
  EXPECT_EQ(service_.count(Kind::message), 2U);
  EXPECT_EQ(host_.last_seq(session), 2U);
}

TEST_F(HostTest, HostIngressAGapIsRejectedNamingTheExpectedSeqAndNotDelivered) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "one");
  take();
  feed_.ingress(session, 3, "three");
  feed_.ingress(session, 4, "four");
  EXPECT_EQ(take(), (Strings{fmt::format("rejected s={} seq=3 expected=2 gap", session),
                             fmt::format("rejected s={} seq=4 expected=2 gap", session)}));
  EXPECT_EQ(service_.count(Kind::message), 1U);
  EXPECT_EQ(host_.last_seq(session), 1U);

  // The client resends from 2: all of them are delivered, in order.
  feed_.ingress(session, 2, "two");
  feed_.ingress(session, 3, "three");
  take();
  const auto messages = service_.of(Kind::message);
  ASSERT_EQ(messages.size(), 3U);
  EXPECT_EQ(messages[1].message, "two");
  EXPECT_EQ(messages[2].message, "three");
}

TEST_F(HostTest, HostIngressToAnUnknownSessionIsRejected) {
  open(kClientA);
  feed_.ingress(99, 1, "lost");
  EXPECT_EQ(take(), (Strings{"rejected s=99 seq=1 expected=0 unknown_session"}));
  EXPECT_EQ(service_.count(Kind::message), 0U);
}

// The leader decides what is too large (it appends a refusal instead of the message); every replica follows the
// log, whatever its own configured limit, so replicas stay alike even if their limits differ.
TEST_F(HostTest, HostARefusedIngressIsRejectedAndConsumesItsSeq) {
  const SessionId session = open(kClientA);
  const std::string largest(kMaxMessage, 'a');
  const LogIndex first = feed_.ingress(session, 1, largest);
  feed_.refused(session, 2);
  const LogIndex third = feed_.ingress(session, 3, "after");
  EXPECT_EQ(take(), (Strings{fmt::format("applied s={} seq=1 at={}", session, first.value()),
                             fmt::format("rejected s={} seq=2 expected=3 too_large", session),
                             fmt::format("applied s={} seq=3 at={}", session, third.value())}));
  const auto messages = service_.of(Kind::message);
  ASSERT_EQ(messages.size(), 2U);
  EXPECT_EQ(messages[0].message, largest);
  EXPECT_EQ(messages[1].message, "after");
  EXPECT_EQ(host_.last_seq(session), 3U);
}

// --- timers -----------------------------------------------------------------------------------------------------

TEST_F(HostTest, HostTimerAFiringOfTheDueGenerationCallsOnTimerOnceEvenIfAppliedTwice) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "schedule 7 300");
  EXPECT_EQ(host_.pending_timers(), 1U);
  EXPECT_TRUE(due(ms(299)).empty());
  const auto firing = due(ms(300));
  ASSERT_EQ(firing.size(), 1U);
  EXPECT_EQ(firing[0].first, 7U);

  feed_.at(ms(300)).timer(7, firing[0].second);
  feed_.at(ms(310)).timer(7, firing[0].second);  // the leader appended it twice
  const auto timers = service_.of(Kind::timer);
  ASSERT_EQ(timers.size(), 1U);
  EXPECT_EQ(timers[0].timer, 7U);
  EXPECT_EQ(timers[0].timestamp, ms(300));
  EXPECT_EQ(timers[0].cluster_time, ms(300));
  EXPECT_EQ(host_.pending_timers(), 0U);
  EXPECT_EQ(host_.timers_fired(), 1U);
  EXPECT_TRUE(due(ms(1000)).empty());
}

TEST_F(HostTest, HostTimerAFiringOfAGenerationReArmedSinceDoesNothing) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "schedule 7 300");
  const auto decided = due(ms(300));  // the leader decides to fire...
  ASSERT_EQ(decided.size(), 1U);
  feed_.ingress(session, 2, "schedule 7 500");  // ...but the service re-arms it before the firing is applied
  feed_.at(ms(300)).timer(7, decided[0].second);
  EXPECT_EQ(service_.count(Kind::timer), 0U);
  EXPECT_EQ(host_.pending_timers(), 1U);
  EXPECT_TRUE(due(ms(499)).empty());

  const auto rearmed = due(ms(500));
  ASSERT_EQ(rearmed.size(), 1U);
  EXPECT_NE(rearmed[0].second, decided[0].second);
  feed_.at(ms(500)).timer(7, rearmed[0].second);
  EXPECT_EQ(service_.count(Kind::timer), 1U);
  EXPECT_EQ(host_.timers_fired(), 1U);
}

TEST_F(HostTest, HostTimerACancelledTimersFiringDoesNothing) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "schedule 7 300");
  const auto decided = due(ms(300));
  ASSERT_EQ(decided.size(), 1U);
  feed_.ingress(session, 2, "cancel 7; cancel 7");
  EXPECT_EQ(results_, (std::vector<bool>{true, false}));  // pending the first time only
  feed_.at(ms(300)).timer(7, decided[0].second);
  EXPECT_EQ(service_.count(Kind::timer), 0U);
  EXPECT_EQ(host_.pending_timers(), 0U);
  EXPECT_EQ(host_.timers_fired(), 0U);
}

TEST_F(HostTest, HostTimerAFiringForATimerNeverScheduledDoesNothing) {
  open(kClientA);
  feed_.timer(42, 1);
  EXPECT_EQ(service_.count(Kind::timer), 0U);
  EXPECT_TRUE(take().empty());
}

TEST_F(HostTest, HostTimerReArmedInsideOnTimerIsPendingAgainAndTheOldFiringStaysSpent) {
  const SessionId session = open(kClientA);
  service_.on_timer_hook = [](Cluster& cluster, TimerId id) { cluster.schedule_timer(id, cluster.time() + ms(100)); };
  feed_.ingress(session, 1, "schedule 7 300");
  const auto first = due(ms(300));
  ASSERT_EQ(first.size(), 1U);
  feed_.at(ms(300)).timer(7, first[0].second);
  EXPECT_EQ(host_.pending_timers(), 1U);
  feed_.at(ms(350)).timer(7, first[0].second);  // the old firing again
  EXPECT_EQ(service_.count(Kind::timer), 1U);
  EXPECT_TRUE(due(ms(399)).empty());
  ASSERT_EQ(due(ms(400)).size(), 1U);
}

TEST_F(HostTest, HostDueTimersComeInDeadlineOrderThenByIdAndRespectTheLimit) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "schedule 5 300; schedule 1 200; schedule 9 100; schedule 3 1000; schedule 2 200");
  using Ids = std::vector<TimerId>;
  const auto ids = [this](ClusterTime now, std::size_t limit) {
    Ids found;
    for (const auto& [id, generation] : due(now, limit)) found.push_back(id);
    return found;
  };
  EXPECT_EQ(ids(ms(99), 10), Ids{});
  EXPECT_EQ(ids(ms(500), 10), (Ids{9, 1, 2, 5}));
  EXPECT_EQ(ids(ms(500), 2), (Ids{9, 1}));
  EXPECT_EQ(ids(ms(5000), 10), (Ids{9, 1, 2, 5, 3}));
  EXPECT_EQ(ids(ms(5000), 0), Ids{});
}

// --- cluster time -----------------------------------------------------------------------------------------------

TEST_F(HostTest, HostTimeInsideOnMessageIsTheEntrysStampAndEqualStampsAreAccepted) {
  const SessionId session = open(kClientA);
  feed_.at(ms(200)).ingress(session, 1, "a");
  feed_.at(ms(200)).ingress(session, 2, "b");  // not decreasing: fine
  feed_.noop();                                // no stamp: time stays
  EXPECT_EQ(host_.last_stamp(), ms(200));
  feed_.at(ms(250)).ingress(session, 3, "c");
  const auto messages = service_.of(Kind::message);
  ASSERT_EQ(messages.size(), 3U);
  EXPECT_EQ(messages[0].cluster_time, ms(200));
  EXPECT_EQ(messages[1].cluster_time, ms(200));
  EXPECT_EQ(messages[2].cluster_time, ms(250));
  EXPECT_EQ(host_.last_stamp(), ms(250));
}

using HostDeathTest = HostTest;

TEST_F(HostDeathTest, HostTimeAStampThatGoesBackIsAnAssertion) {
  const SessionId session = open(kClientA);
  feed_.at(ms(200)).ingress(session, 1, "a");
  EXPECT_DEATH(feed_.at(ms(199)).ingress(session, 2, "b"), "assertion failed: e.stamp >= stamp_");
}

TEST_F(HostDeathTest, HostApplyAMalformedCommandEntryStopsTheProcessNamingItsIndex) {
  open(kClientA);
  feed_.noop();
  const ByteVector garbage{std::byte{4}, std::byte{0}, std::byte{0}};
  EXPECT_DEATH(feed_.raw(garbage), "fatal: committed entry 3 \\(term 1\\) is not a valid cluster entry: .*shorter");
  ByteVector unknown_kind(32, std::byte{0});
  unknown_kind[0] = std::byte{9};
  EXPECT_DEATH(feed_.raw(unknown_kind), "committed entry 3 .*unknown entry kind 9");
}

// --- closing sessions -------------------------------------------------------------------------------------------

TEST_F(HostTest, HostCloseByTheServiceInsideOnMessageTakesEffectAfterTheCallback) {
  const SessionId session = open(kClientA);
  const std::string script = fmt::format("close {0}; open? {0}; send {0} still-open", session);
  const LogIndex index = feed_.ingress(session, 1, script);
  // Inside the callback the close was accepted, the session still open and still able to receive.
  EXPECT_EQ(results_, (std::vector<bool>{true, true, true}));
  EXPECT_EQ(take(), (Strings{fmt::format("egress s={} #1 still-open", session),
                             fmt::format("applied s={} seq=1 at={}", session, index.value()),
                             fmt::format("ended s={} service last=1", session)}));
  ASSERT_EQ(service_.calls.back().kind, Kind::session_close);
  EXPECT_EQ(service_.calls.back().session, session);
  EXPECT_EQ(service_.calls.back().reason, CloseReason::service);
  EXPECT_EQ(service_.count(Kind::session_close), 1U);
  EXPECT_FALSE(host_.session_open(session));
}

TEST_F(HostTest, HostCloseOfTheSameSessionTwiceInOneCallbackClosesItOnce) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, fmt::format("close {0}; close {0}", session));
  EXPECT_EQ(service_.count(Kind::session_close), 1U);
  EXPECT_EQ(take().back(), fmt::format("ended s={} service last=1", session));
}

TEST_F(HostTest, HostCloseByTheServiceInsideOnSessionOpenEndsTheSessionAfterItOpened) {
  service_.on_open_hook = [](Cluster& cluster, SessionId session) { EXPECT_TRUE(cluster.close_session(session)); };
  const LogIndex index = feed_.open(kClientA);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=0", index.value()),
                             fmt::format("ended s={} service last=0", index.value())}));
  EXPECT_EQ(host_.open_sessions(), 0U);
}

TEST_F(HostTest, HostCloseByTheClientEndsTheSessionAndLaterIngressIsRejectedAsUnknown) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "a");
  take();
  feed_.close(session, CloseReason::client_closed);
  EXPECT_EQ(take(), (Strings{fmt::format("ended s={} client_closed last=1", session)}));
  const auto closes = service_.of(Kind::session_close);
  ASSERT_EQ(closes.size(), 1U);
  EXPECT_EQ(closes[0].reason, CloseReason::client_closed);

  feed_.ingress(session, 2, "b");
  EXPECT_EQ(take(), (Strings{fmt::format("rejected s={} seq=2 expected=0 unknown_session", session)}));
  EXPECT_EQ(service_.count(Kind::message), 1U);

  // Closing it again (a duplicate close entry) does nothing.
  feed_.close(session, CloseReason::client_closed);
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(service_.count(Kind::session_close), 1U);
}

TEST_F(HostTest, HostCloseForATimeoutIsReportedWithThatReason) {
  const SessionId session = open(kClientA);
  feed_.close(session, CloseReason::timeout);
  EXPECT_EQ(take(), (Strings{fmt::format("ended s={} timeout last=0", session)}));
  EXPECT_EQ(service_.of(Kind::session_close).at(0).reason, CloseReason::timeout);
}

// --- egress -----------------------------------------------------------------------------------------------------

TEST_F(HostTest, HostEgressEachSessionNumbersItsMessagesOneTwoThree) {
  const SessionId a = open(kClientA);
  const SessionId b = open(kClientB);
  feed_.ingress(a, 1, fmt::format("send {0} x; send {0} y; send {0} z", a));
  feed_.ingress(a, 2, fmt::format("send {0} w; send {1} other", a, b));
  Strings egress;
  for (const std::string& line : take())
    if (line.starts_with("egress")) egress.push_back(line);
  EXPECT_EQ(egress, (Strings{fmt::format("egress s={} #1 x", a), fmt::format("egress s={} #2 y", a),
                             fmt::format("egress s={} #3 z", a), fmt::format("egress s={} #4 w", a),
                             fmt::format("egress s={} #1 other", b)}));
}

TEST_F(HostTest, HostEgressToAnUnknownSessionOrOverTheLimitIsRefused) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1,
                fmt::format("send 999 nobody; sendn {0} {1}; sendn {0} {2}", session, kMaxMessage + 1, kMaxMessage));
  EXPECT_EQ(results_, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(take(), (Strings{fmt::format("egress s={} #1 {}", session, std::string(kMaxMessage, 'x')),
                             fmt::format("applied s={} seq=1 at=2", session)}));
}

TEST_F(HostTest, HostEgressARefusedSendTakesNoEgressSeq) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, fmt::format("send {0} a; sendn {0} {1}; send {0} b", session, kMaxMessage + 1));
  EXPECT_EQ(results_, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(take(), (Strings{fmt::format("egress s={} #1 a", session), fmt::format("egress s={} #2 b", session),
                             fmt::format("applied s={} seq=1 at=2", session)}));
}

// --- state hash and incarnation ---------------------------------------------------------------------------------

// A short history touching every part of the replicated state.
void play(Feed& feed, std::string_view first_message) {
  feed.at(ms(100)).bootstrap(Id128{0x1234, 0x5678});
  const SessionId a = feed.open(kClientA).value();
  const SessionId b = feed.at(ms(110)).open(kClientB).value();
  feed.ingress(a, 1, first_message);
  feed.at(ms(120)).ingress(a, 2, fmt::format("schedule 4 500; send {} reply", b));
  feed.ingress(b, 1, "schedule 5 900");
  feed.at(ms(130)).close(b);
}

TEST_F(HostTest, HostHashTwoHostsFedTheSameEntriesHashEqual) {
  play(feed_, "hello");
  RecordingService other_service;
  ServiceHost other(other_service, HostLimits{kMaxMessage});
  start(other_service, other);
  for (const Entry& entry : feed_.entries()) other.apply(entry);
  EXPECT_EQ(other.state_hash(), host_.state_hash());
  EXPECT_EQ(other.applied_index(), host_.applied_index());
}

TEST_F(HostTest, HostHashDiffersWhenOneIngressByteDiffers) {
  play(feed_, "hello");
  RecordingService other_service;
  ServiceHost other(other_service, HostLimits{kMaxMessage});
  start(other_service, other);
  Feed other_feed(other);
  play(other_feed, "hellp");
  EXPECT_NE(other.state_hash(), host_.state_hash());
}

TEST_F(HostTest, HostHashChangesWithEveryKindOfReplicatedChange) {
  std::uint64_t hash = host_.state_hash();
  const auto changed = [&]() {
    const std::uint64_t now = host_.state_hash();
    const bool different = now != hash;
    hash = now;
    return different;
  };
  const SessionId session = feed_.open(kClientA).value();
  EXPECT_TRUE(changed()) << "session open";
  feed_.ingress(session, 1, "schedule 1 500");
  EXPECT_TRUE(changed()) << "ingress and timer";
  feed_.at(ms(200)).noop();
  EXPECT_FALSE(changed()) << "a no-op changes nothing";
  feed_.at(ms(200)).timer(1, 999);
  EXPECT_TRUE(changed()) << "the stamp moved, even though the stale firing did nothing";
  feed_.close(session);
  EXPECT_TRUE(changed()) << "session close";
}

TEST_F(HostTest, HostHashTheFirstBootstrapSetsTheIncarnationAndASecondIsIgnored) {
  EXPECT_FALSE(host_.incarnation().known());
  feed_.bootstrap(Id128{1, 2});
  EXPECT_EQ(host_.incarnation(), (Id128{1, 2}));
  const std::uint64_t hash = host_.state_hash();
  feed_.bootstrap(Id128{3, 4});  // a second leader decided from a lagging state: ignored
  EXPECT_EQ(host_.incarnation(), (Id128{1, 2}));
  EXPECT_EQ(host_.state_hash(), hash);
  EXPECT_TRUE(take().empty());
}

}  // namespace
}  // namespace cohort::host
