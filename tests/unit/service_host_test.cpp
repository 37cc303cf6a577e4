// The service host (host/service_host.h) driven directly with committed entries built by the entry codec: sessions,
// exactly-once ingress, timers and their generations, cluster time, closes, egress, the state hash, and the entries a
// replica cannot apply as written (undecodable, a stamp going back, a service that throws). A recording
// service runs a tiny script found in each ingress message ("schedule 7 300; send 1 hello") so a test can act on
// the cluster from inside a callback, as a real service does.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <new>
#include <sstream>
#include <stdexcept>
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
      return fmt::format("opened s={} last={}{}{}{}", o.session, o.last_seq,
                         o.egress_seq != 0 ? fmt::format(" egress={}", o.egress_seq) : "", o.resumed ? " resumed" : "",
                         replaced(o.replaced));
    }
    std::string operator()(const SessionRefused& o) const {
      return fmt::format("refused client={}{}", o.client.low, replaced(o.replaced));
    }
    static std::string replaced(const std::optional<ReplacedSession>& r) {
      if (!r) return "";
      if (!r->known) return fmt::format(" replaced s={} unknown", r->session);
      return fmt::format(" replaced s={} last={} {}", r->session, r->last_seq, to_text(r->reason));
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
  LogIndex open(Id128 client, SessionId resume = 0) {
    encode_session_open(scratch_, stamp_, client, resume);
    return append(EntryType::command, scratch_);
  }
  LogIndex close(SessionId session, CloseReason reason = CloseReason::client_closed,
                 ClusterTime idle_since = ClusterTime{0}) {
    encode_session_close(scratch_, stamp_, session, reason, idle_since);
    return append(EntryType::command, scratch_);
  }
  LogIndex activity(std::vector<SessionId> sessions) {
    encode_activity(scratch_, stamp_, sessions);
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
//   close <session> | open? <session> | throw <what> (a std::runtime_error) | throw-int | oom (std::bad_alloc)
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
    } else if (verb == "throw") {
      std::string what;
      words >> what;
      throw std::runtime_error(what);
    } else if (verb == "throw-int") {
      throw 42;  // NOLINT(hicpp-exception-baseclass): a service may throw anything
    } else if (verb == "oom") {
      throw std::bad_alloc();
    }
  }
}

class HostTest : public ::testing::Test {
 protected:
  HostTest() { start(service_, host_); }

  void start(RecordingService& service, ServiceHost& host) {
    hook(service, host);
    host.start();
  }
  /// Lets the service's ingress scripts act on `host` (start() does this; a host restored from a snapshot instead
  /// of started needs it alone).
  void hook(RecordingService& service, ServiceHost& host) {
    service.on_message_hook = [this, &host](Cluster& cluster, SessionId /*session*/, std::string_view message) {
      run_script(cluster, message, host, results_);
    };
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

  feed_.open(kClientA, session);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=2 resumed", session)}));
  // A client that does not know it (its first open's reply was lost) gets it too, as its new session.
  feed_.open(kClientA);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=2", session)}));
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

TEST_F(HostTest, HostSessionOpenLandingAtTheIndexOfTheSessionItResumesGetsAnIdTheClientNeverHad) {
  // After a power loss under sync policy none cut the log back, a client's request to resume session S can land at
  // index S itself. A new session numbered S would answer its next open as "resumed": its old messages and egress
  // silently taken for this session's.
  const SessionId first = open(kClientB);
  const SessionId lost = first + 1;  // the index the next entry takes
  const LogIndex at = feed_.open(kClientA, lost);
  ASSERT_EQ(at.value(), lost);
  const auto opened = take();
  ASSERT_EQ(opened.size(), 1U);
  EXPECT_EQ(opened[0].find(fmt::format("opened s={} ", lost)), std::string::npos) << opened[0];
  EXPECT_NE(opened[0].find(fmt::format("replaced s={} unknown", lost)), std::string::npos) << opened[0];
  feed_.open(kClientA, lost);
  const auto again = take();
  ASSERT_EQ(again.size(), 1U);
  EXPECT_EQ(again[0].find("resumed"), std::string::npos) << "not the session it asked for: " << again[0];
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

// A stamp below the last one is a bug (every leader stamps from the last stamp in its log onwards), but it is
// committed on every replica: an assertion here stopped every replica at this entry, and again at every replay.
TEST_F(HostTest, HostTimeAStampThatGoesBackAppliesTheEntryAtTheLastStampAndCountsIt) {
  const SessionId session = open(kClientA);
  feed_.at(ms(200)).ingress(session, 1, "a");
  take();
  const LogIndex back = feed_.at(ms(150)).ingress(session, 2, "b");
  EXPECT_EQ(take(), (Strings{fmt::format("applied s={} seq=2 at={}", session, back.value())}))
      << "the message itself is applied, not lost";
  const auto messages = service_.of(Kind::message);
  ASSERT_EQ(messages.size(), 2U);
  EXPECT_EQ(messages[1].message, "b");
  EXPECT_EQ(messages[1].timestamp, ms(200)) << "cluster time never goes back";
  EXPECT_EQ(messages[1].cluster_time, ms(200));
  EXPECT_EQ(host_.last_stamp(), ms(200));
  EXPECT_EQ(host_.entry_faults(), (EntryFaultCounts{0, 1, 0}));
  ASSERT_TRUE(host_.last_entry_fault().has_value());
  EXPECT_EQ(host_.last_entry_fault()->index, back);
  EXPECT_EQ(host_.last_entry_fault()->fault, EntryFault::stamp_went_back);
  ASSERT_EQ(host_.fault_reports().size(), 1U);
  EXPECT_EQ(host_.fault_reports()[0].index, back);
  EXPECT_EQ(host_.fault_reports()[0].term, Term{1});
  EXPECT_EQ(host_.fault_reports()[0].detail,
            "stamp 150000000 ns is 50000000 ns below the last stamp 200000000 ns; applied at the last stamp");

  // Time moves on from there as usual; an equal or later stamp is no fault.
  feed_.at(ms(200)).ingress(session, 3, "c");
  feed_.at(ms(260)).ingress(session, 4, "d");
  EXPECT_EQ(service_.of(Kind::message).back().cluster_time, ms(260));
  EXPECT_EQ(host_.entry_faults().total(), 1U);
}

TEST_F(HostTest, HostTimeATimerFiringStampedBackFiresAtTheLastStamp) {
  const SessionId session = open(kClientA);
  feed_.at(ms(200)).ingress(session, 1, "schedule 7 100");
  const auto firing = due(ms(200));
  ASSERT_EQ(firing.size(), 1U);
  feed_.at(ms(100)).timer(7, firing[0].second);
  const auto timers = service_.of(Kind::timer);
  ASSERT_EQ(timers.size(), 1U);
  EXPECT_EQ(timers[0].timestamp, ms(200));
  EXPECT_EQ(host_.entry_faults().stamp_went_back, 1U);
}

// A committed entry that passed every checksum but does not decode: every replica of the build holds the same
// bytes and fails alike. It was a fatal error (a cluster-wide crash loop); now every replica skips it alike.
TEST_F(HostTest, HostApplyAnUndecodableCommandEntryIsSkippedAndCountedAndTheNextEntryApplies) {
  const SessionId session = open(kClientA);
  feed_.at(ms(300)).noop();
  feed_.at(ms(300)).ingress(session, 1, "a");
  take();
  const std::size_t calls = service_.calls.size();
  const std::uint64_t hash_before = host_.state_hash();

  const LogIndex short_one = feed_.raw(ByteVector{std::byte{4}, std::byte{0}, std::byte{0}});
  ByteVector unknown_kind(32, std::byte{0});
  unknown_kind[0] = std::byte{9};
  unknown_kind[15] = std::byte{0x10};  // a stamp far in the future: not to be trusted either
  const LogIndex unknown = feed_.raw(unknown_kind);

  EXPECT_EQ(host_.applied_index(), unknown) << "a skipped entry still counts as applied";
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(service_.calls.size(), calls) << "the service sees nothing of it";
  EXPECT_EQ(host_.last_stamp(), ms(300)) << "its stamp is skipped with it";
  EXPECT_EQ(host_.entry_faults(), (EntryFaultCounts{2, 0, 0}));
  ASSERT_TRUE(host_.last_entry_fault().has_value());
  EXPECT_EQ(host_.last_entry_fault()->index, unknown);
  EXPECT_EQ(host_.last_entry_fault()->fault, EntryFault::undecodable);
  ASSERT_EQ(host_.fault_reports().size(), 2U);
  EXPECT_EQ(host_.fault_reports()[0].index, short_one);
  EXPECT_EQ(host_.fault_reports()[0].fault, EntryFault::undecodable);
  EXPECT_EQ(host_.fault_reports()[0].detail,
            "not a valid cluster entry: envelope of 3 bytes is shorter than its 16-byte header");
  EXPECT_EQ(host_.fault_reports()[1].detail, "not a valid cluster entry: unknown entry kind 9");
  EXPECT_NE(host_.state_hash(), hash_before) << "the counts are replicated state";

  // The driver logs the reports and clears them; the counts stay.
  host_.fault_reports().clear();
  const LogIndex next = feed_.at(ms(310)).ingress(session, 2, "b");
  EXPECT_EQ(take(), (Strings{fmt::format("applied s={} seq=2 at={}", session, next.value())}));
  EXPECT_EQ(service_.of(Kind::message).back().message, "b");
  EXPECT_TRUE(host_.fault_reports().empty());
  EXPECT_EQ(host_.entry_faults().total(), 2U);
}

TEST_F(HostTest, HostApplyFaultReportsTheDriverDoesNotCollectAreBoundedWhileTheCountsStayExact) {
  const std::size_t extra = 3;
  for (std::size_t i = 0; i < ServiceHost::kMaxPendingFaultReports + extra; ++i) feed_.raw(ByteVector{});
  EXPECT_EQ(host_.fault_reports().size(), ServiceHost::kMaxPendingFaultReports);
  EXPECT_EQ(host_.fault_reports_dropped(), extra);
  EXPECT_EQ(host_.entry_faults().undecodable, ServiceHost::kMaxPendingFaultReports + extra);
  EXPECT_EQ(host_.last_entry_fault()->index, host_.applied_index());
}

// --- a service that throws --------------------------------------------------------------------------------------

// Before, the exception left apply() half way and the node with it, on every replica at the same entry.
TEST_F(HostTest, HostServiceAnExceptionFromOnMessageIsCaughtTheMessageCountsAsAppliedAndTheNextOneApplies) {
  const SessionId session = open(kClientA);
  const LogIndex threw =
      feed_.ingress(session, 1, fmt::format("send {} before; throw boom; send {} after", session, session));
  // What the service did before it threw stands; nothing after the throw ran.
  EXPECT_EQ(take(), (Strings{fmt::format("egress s={} #1 before", session),
                             fmt::format("applied s={} seq=1 at={}", session, threw.value())}));
  EXPECT_EQ(host_.last_seq(session), 1U) << "the seq is consumed: a resend is a duplicate, not a second delivery";
  EXPECT_EQ(host_.entry_faults(), (EntryFaultCounts{0, 0, 1}));
  ASSERT_EQ(host_.fault_reports().size(), 1U);
  EXPECT_EQ(host_.fault_reports()[0].index, threw);
  EXPECT_EQ(host_.fault_reports()[0].fault, EntryFault::service_threw);
  EXPECT_EQ(host_.fault_reports()[0].detail, "Service::on_message threw: boom");

  const LogIndex next = feed_.ingress(session, 2, fmt::format("send {} fine", session));
  EXPECT_EQ(take(), (Strings{fmt::format("egress s={} #2 fine", session),
                             fmt::format("applied s={} seq=2 at={}", session, next.value())}));
  feed_.ingress(session, 1, "duplicate");
  EXPECT_EQ(service_.count(Kind::message), 2U);
  EXPECT_EQ(host_.entry_faults().total(), 1U);
  EXPECT_EQ(host_.last_entry_fault()->index, threw);
}

TEST_F(HostTest, HostServiceAnExceptionNotDerivedFromStdExceptionIsCaughtToo) {
  const SessionId session = open(kClientA);
  feed_.ingress(session, 1, "throw-int");
  EXPECT_EQ(host_.entry_faults().service_threw, 1U);
  EXPECT_EQ(host_.last_entry_fault()->detail, "Service::on_message threw an exception not derived from std::exception");
}

TEST_F(HostTest, HostServiceAnExceptionFromOnTimerIsCaughtAndTheFiringIsSpent) {
  const SessionId session = open(kClientA);
  service_.on_timer_hook = [](Cluster& /*cluster*/, TimerId id) {
    throw std::runtime_error(fmt::format("timer {} failed", id));
  };
  feed_.ingress(session, 1, "schedule 7 300");
  const auto firing = due(ms(300));
  ASSERT_EQ(firing.size(), 1U);
  const LogIndex fired = feed_.at(ms(300)).timer(7, firing[0].second);
  feed_.at(ms(310)).timer(7, firing[0].second);  // appended twice: still once
  EXPECT_EQ(service_.count(Kind::timer), 1U);
  EXPECT_EQ(host_.pending_timers(), 0U);
  EXPECT_EQ(host_.timers_fired(), 1U);
  EXPECT_EQ(host_.entry_faults(), (EntryFaultCounts{0, 0, 1}));
  EXPECT_EQ(host_.last_entry_fault()->index, fired);
  EXPECT_EQ(host_.last_entry_fault()->detail, "Service::on_timer threw: timer 7 failed");
}

TEST_F(HostTest, HostServiceAnExceptionFromOnSessionOpenIsCaughtAndTheSessionIsOpen) {
  service_.on_open_hook = [](Cluster& /*cluster*/, SessionId /*session*/) { throw std::runtime_error("no room"); };
  const LogIndex index = feed_.open(kClientA);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=0", index.value())}));
  EXPECT_TRUE(host_.session_open(index.value()));
  EXPECT_EQ(host_.entry_faults().service_threw, 1U);
  EXPECT_EQ(host_.last_entry_fault()->detail, "Service::on_session_open threw: no room");
  service_.on_open_hook = nullptr;
  const LogIndex next = feed_.ingress(index.value(), 1, "hello");
  EXPECT_EQ(take(), (Strings{fmt::format("applied s={} seq=1 at={}", index.value(), next.value())}));
}

TEST_F(HostTest, HostServiceAnExceptionFromOnSessionCloseIsCaughtAndTheSessionIsClosed) {
  const SessionId session = open(kClientA);
  service_.on_close_hook = [](Cluster& /*cluster*/, SessionId /*session*/) { throw std::runtime_error("busy"); };
  const LogIndex closed = feed_.close(session);
  EXPECT_EQ(take(), (Strings{fmt::format("ended s={} client_closed last=0", session)}));
  EXPECT_FALSE(host_.session_open(session));
  EXPECT_EQ(host_.entry_faults().service_threw, 1U);
  EXPECT_EQ(host_.last_entry_fault()->index, closed);
  EXPECT_EQ(host_.last_entry_fault()->detail, "Service::on_session_close threw: busy");
}

// One entry can run several callbacks (a message that closes sessions runs on_session_close for each): it is one
// faulty entry, reported once, however many of them threw.
TEST_F(HostTest, HostServiceSeveralCallbacksThrowingForOneEntryCountTheEntryOnce) {
  const SessionId a = open(kClientA);
  const SessionId b = open(kClientB);
  service_.on_close_hook = [](Cluster& /*cluster*/, SessionId session) {
    throw std::runtime_error(fmt::format("close-{}", session));
  };
  const LogIndex index = feed_.ingress(a, 1, fmt::format("close {}; close {}; throw first", a, b));
  EXPECT_EQ(service_.count(Kind::session_close), 2U) << "the deferred closes still run after on_message threw";
  EXPECT_EQ(host_.open_sessions(), 0U);
  EXPECT_EQ(host_.entry_faults(), (EntryFaultCounts{0, 0, 1}));
  ASSERT_EQ(host_.fault_reports().size(), 1U);
  EXPECT_EQ(host_.fault_reports()[0].index, index);
  EXPECT_EQ(host_.fault_reports()[0].detail,
            "Service::on_message threw: first (and 2 more callbacks threw for this entry)");
}

// Running out of memory is this process's condition, not the entry's: another replica may apply the entry, so
// skipping it here would part the replicas silently. The node stops instead (and replays the entry on restart).
using HostDeathTest = HostTest;

TEST_F(HostDeathTest, HostServiceRunningOutOfMemoryStopsTheProcessNamingTheEntry) {
  const SessionId session = open(kClientA);
  EXPECT_DEATH(feed_.ingress(session, 1, "oom"),
               "fatal: out of memory in Service::on_message while applying committed entry 2 \\(term 1\\)");
}

// --- every replica alike ----------------------------------------------------------------------------------------

// A log with every kind of fault: a skipped entry, a stamp that goes back, and a service that throws.
void play_faults(Feed& feed) {
  feed.at(ms(100)).bootstrap(Id128{0x1234, 0x5678});
  const SessionId a = feed.open(kClientA).value();
  feed.ingress(a, 1, fmt::format("schedule 4 500; send {} one", a));
  feed.raw(ByteVector{std::byte{1}});
  feed.at(ms(90)).ingress(a, 2, "schedule 5 900");
  feed.at(ms(120)).ingress(a, 3, fmt::format("send {} two; throw three", a));
  feed.ingress(a, 4, "cancel 4");
  feed.raw(ByteVector(40, std::byte{7}));
}

TEST_F(HostTest, HostFaultsReplayingTheSameLogGivesTheSameStateCountsAndHash) {
  play_faults(feed_);
  const Strings outputs = take();
  ASSERT_EQ(host_.entry_faults(), (EntryFaultCounts{2, 1, 1}));

  RecordingService other_service;
  ServiceHost other(other_service, HostLimits{kMaxMessage});
  start(other_service, other);
  for (const Entry& entry : feed_.entries()) other.apply(entry);
  EXPECT_EQ(take_from(other), outputs);
  EXPECT_EQ(other.applied_index(), host_.applied_index());
  EXPECT_EQ(other.last_stamp(), host_.last_stamp());
  EXPECT_EQ(other.pending_timers(), host_.pending_timers());
  EXPECT_EQ(other.entry_faults(), host_.entry_faults());
  ASSERT_TRUE(other.last_entry_fault().has_value());
  EXPECT_EQ(other.last_entry_fault()->index, host_.last_entry_fault()->index);
  EXPECT_EQ(other.last_entry_fault()->fault, host_.last_entry_fault()->fault);
  ASSERT_EQ(other.fault_reports().size(), host_.fault_reports().size());
  for (std::size_t i = 0; i < other.fault_reports().size(); ++i) {
    EXPECT_EQ(other.fault_reports()[i].index, host_.fault_reports()[i].index);
    EXPECT_EQ(other.fault_reports()[i].detail, host_.fault_reports()[i].detail);
  }
  EXPECT_EQ(other.state_hash(), host_.state_hash());
}

// The counts are hashed: a replica that skipped an entry the others applied (say, a build that cannot read it)
// differs from them even where the rest of its state happens to match.
TEST_F(HostTest, HostFaultsAReplicaThatSkippedWhatAnotherAppliedHashesDifferently) {
  feed_.at(ms(100)).raw(ByteVector{std::byte{1}});  // skipped
  RecordingService other_service;
  ServiceHost other(other_service, HostLimits{kMaxMessage});
  start(other_service, other);
  Feed other_feed(other);
  other_feed.at(ms(100)).noop();  // the same position, nothing else changed
  ASSERT_EQ(other.applied_index(), host_.applied_index());
  ASSERT_EQ(other.last_stamp(), host_.last_stamp());
  EXPECT_NE(other.state_hash(), host_.state_hash());
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
  feed_.close(session, CloseReason::timeout, *host_.last_activity(session));
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

// --- activity and expiry ----------------------------------------------------------------------------------------

// The sessions idle at or before `limit`, as "s@ms".
Strings idle(const ServiceHost& host, ClusterTime limit) {
  std::vector<std::pair<SessionId, ClusterTime>> out;
  host.idle_sessions(limit, out, 100);
  Strings lines;
  for (const auto& [session, since] : out)
    lines.push_back(fmt::format("{}@{}", session, std::chrono::duration_cast<milliseconds>(since).count()));
  return lines;
}

TEST_F(HostTest, HostExpiryAnActivityEntryRenewsTheSessionsItNamesAndNoOther) {
  const SessionId a = open(kClientA);  // at 100 ms
  const SessionId b = feed_.at(ms(150)).open(kClientB).value();
  take();
  EXPECT_EQ(idle(host_, ms(1000)), (Strings{fmt::format("{}@100", a), fmt::format("{}@150", b)}));
  feed_.at(ms(900)).activity({b, 77});  // 77: no such session, ignored
  EXPECT_EQ(host_.last_activity(b), ms(900));
  EXPECT_EQ(host_.last_activity(a), ms(100));
  EXPECT_EQ(idle(host_, ms(800)), (Strings{fmt::format("{}@100", a)}));
  EXPECT_TRUE(take().empty()) << "activity answers no one";
}

TEST_F(HostTest, HostExpiryACloseByTimeoutAppliesOnlyWhileTheSessionIsStillIdleSinceWhatTheLeaderSaw) {
  const SessionId session = open(kClientA);  // activity at 100 ms
  feed_.at(ms(500)).activity({session});
  // Decided from a state before that activity: the client was heard from since, so nothing happens.
  feed_.at(ms(11000)).close(session, CloseReason::timeout, ms(100));
  EXPECT_TRUE(host_.session_open(session));
  EXPECT_TRUE(take().empty());
  // Decided from the current state: closed, once, however often the decision was appended.
  feed_.at(ms(11000)).close(session, CloseReason::timeout, ms(500));
  feed_.at(ms(11001)).close(session, CloseReason::timeout, ms(500));
  EXPECT_EQ(take(), (Strings{fmt::format("ended s={} timeout last=0", session)}));
  EXPECT_EQ(service_.count(Kind::session_close), 1U);
  EXPECT_FALSE(host_.session_open(session));
}

TEST_F(HostTest, HostExpiryANewLeadersFirstStampedEntryGivesEverySessionAFreshWindow) {
  const SessionId a = open(kClientA);
  const SessionId b = feed_.at(ms(200)).open(kClientB).value();
  take();
  EXPECT_EQ(host_.renewed_term(), Term{1});
  // The cluster was down for a minute; the old leader's decision to expire `a` comes first in the new term.
  feed_.next_term();
  feed_.noop();  // carries no stamp: renews nothing
  EXPECT_EQ(host_.last_activity(a), ms(100));
  feed_.at(ms(60000)).close(a, CloseReason::timeout, ms(100));
  EXPECT_EQ(host_.renewed_term(), Term{2});
  EXPECT_TRUE(host_.session_open(a)) << "expired in the no-op window: its client had no chance to come back";
  EXPECT_EQ(host_.last_activity(a), ms(60000));
  EXPECT_EQ(host_.last_activity(b), ms(60000));
  EXPECT_TRUE(idle(host_, ms(59999)).empty());
  // Later entries of the same term renew nothing more.
  feed_.at(ms(70000)).activity({});
  EXPECT_EQ(host_.last_activity(a), ms(60000));
}

TEST_F(HostTest, HostExpiryAResumeRenewsTheSessionsActivity) {
  const SessionId session = open(kClientA);
  feed_.at(ms(5000)).open(kClientA, session);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=0 resumed", session)}));
  EXPECT_EQ(host_.last_activity(session), ms(5000));
}

// --- tombstones -------------------------------------------------------------------------------------------------

TEST_F(HostTest, HostTombstoneAResumeOfAClosedSessionOpensANewOneAndReportsWhatWasAppliedOfTheOld) {
  const SessionId old = open(kClientA);
  feed_.ingress(old, 1, "a");
  feed_.ingress(old, 2, "b");
  feed_.at(ms(20000)).close(old, CloseReason::timeout, ms(100));
  take();
  EXPECT_EQ(host_.tombstones(), 1U);
  const LogIndex fresh = feed_.open(kClientA, old);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=0 replaced s={} last=2 timeout", fresh.value(), old)}));
  // Its reply was lost and it asks again: the same new session, and the same account of the old one.
  feed_.open(kClientA, old);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=0 replaced s={} last=2 timeout", fresh.value(), old)}));
  EXPECT_EQ(host_.open_sessions(), 1U);
}

TEST_F(HostTest, HostTombstoneAnotherClientsTombstoneIsNotRevealed) {
  const SessionId old = open(kClientA);
  feed_.ingress(old, 1, "a");
  feed_.close(old);
  take();
  const LogIndex other = feed_.open(kClientB, old);
  EXPECT_EQ(take(), (Strings{fmt::format("opened s={} last=0 replaced s={} unknown", other.value(), old)}));
}

class BoundedHostTest : public HostTest {
 protected:
  static HostLimits limits() {
    HostLimits limits{kMaxMessage};
    limits.max_tombstones = 2;
    limits.tombstone_max_age = std::chrono::seconds(60);
    limits.max_sessions = 2;
    limits.egress_window_messages = 3;
    limits.egress_window_bytes = 10;
    return limits;
  }
  BoundedHostTest() { start(bounded_service_, bounded_); }
  Strings take_bounded() { return take_from(bounded_); }
  SessionId open_bounded(Id128 client) {
    const SessionId session = bounded_feed_.open(client).value();
    take_bounded();
    return session;
  }

  RecordingService bounded_service_;
  ServiceHost bounded_{bounded_service_, limits()};
  Feed bounded_feed_{bounded_};
};

TEST_F(BoundedHostTest, HostTombstoneTheOldestAreEvictedPastTheCountAndAnEvictedOneReadsUnknown) {
  std::vector<SessionId> closed;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    const SessionId session = open_bounded(Id128{0xC, i});
    bounded_feed_.close(session);
    closed.push_back(session);
  }
  take_bounded();
  EXPECT_EQ(bounded_.tombstones(), 2U);
  const LogIndex first = bounded_feed_.open(Id128{0xC, 1}, closed[0]);
  const LogIndex third = bounded_feed_.open(Id128{0xC, 3}, closed[2]);
  EXPECT_EQ(take_bounded(),
            (Strings{fmt::format("opened s={} last=0 replaced s={} unknown", first.value(), closed[0]),
                     fmt::format("opened s={} last=0 replaced s={} last=0 client_closed", third.value(), closed[2])}));
}

TEST_F(BoundedHostTest, HostTombstoneTheyAreEvictedPastTheirAge) {
  const SessionId session = open_bounded(kClientA);
  bounded_feed_.at(ms(1000)).close(session);
  bounded_feed_.at(ms(61000)).noop();
  bounded_feed_.at(ms(61000)).activity({});
  EXPECT_EQ(bounded_.tombstones(), 1U) << "60 s old: kept";
  bounded_feed_.at(ms(61001)).activity({});
  EXPECT_EQ(bounded_.tombstones(), 0U) << "older than 60 s: evicted";
}

// --- limits -----------------------------------------------------------------------------------------------------

TEST_F(BoundedHostTest, HostLimitAnOpenBeyondTheSessionLimitIsRefusedWhenAppliedAndAResumeStillWorks) {
  const SessionId a = open_bounded(kClientA);
  open_bounded(kClientB);
  bounded_feed_.open(Id128{0xC, 1});
  bounded_feed_.open(kClientA, a);
  EXPECT_EQ(take_bounded(), (Strings{"refused client=1", fmt::format("opened s={} last=0 resumed", a)}));
  EXPECT_EQ(bounded_service_.count(Kind::session_open), 2U);
  bounded_feed_.close(a);
  const LogIndex third = bounded_feed_.open(Id128{0xC, 1});
  EXPECT_EQ(take_bounded(), (Strings{fmt::format("ended s={} client_closed last=0", a),
                                     fmt::format("opened s={} last=0", third.value())}));
}

// --- the egress window ------------------------------------------------------------------------------------------

std::string window(const ServiceHost& host, SessionId session) {
  std::string text;
  for (const EgressRecord& record : host.egress_window(session))
    text += fmt::format("{}:{} ", record.seq, as_chars(record.message));
  return text;
}

TEST_F(BoundedHostTest, HostEgressTheWindowKeepsTheNewestWithinItsMessageAndByteBounds) {
  const SessionId session = open_bounded(kClientA);
  bounded_service_.on_message_hook = [&](Cluster& cluster, SessionId, std::string_view message) {
    std::vector<bool> ignored;
    run_script(cluster, message, bounded_, ignored);
  };
  bounded_feed_.ingress(session, 1,
                        fmt::format("send {} a;send {} b;send {} c;send {} d", session, session, session, session));
  EXPECT_EQ(window(bounded_, session), "2:b 3:c 4:d ") << "at most 3 messages";
  bounded_feed_.ingress(session, 2, fmt::format("send {} 123456789", session));
  EXPECT_EQ(window(bounded_, session), "4:d 5:123456789 ") << "at most 10 bytes";
  bounded_feed_.ingress(session, 3, fmt::format("sendn {} 40", session));
  EXPECT_EQ(bounded_.egress_window(session).size(), 1U) << "the newest stays, whatever its size";
  EXPECT_EQ(bounded_.egress_window(session).front().seq, 6U);
  take_bounded();
  // A resume says how far the window goes, so the leader resends it before live egress.
  bounded_feed_.open(kClientA, session);
  EXPECT_EQ(take_bounded(), (Strings{fmt::format("opened s={} last=3 egress=6 resumed", session)}));
}

TEST_F(HostTest, HostEgressWindowAndTombstonesAreInTheStateHash) {
  const SessionId session = open(kClientA);
  const std::uint64_t before = host_.state_hash();
  feed_.ingress(session, 1, fmt::format("send {} x", session));
  const std::uint64_t with_egress = host_.state_hash();
  EXPECT_NE(with_egress, before);
  feed_.close(session);
  const std::uint64_t closed = host_.state_hash();
  // Replayed into a second host, the same log hashes alike.
  RecordingService other_service;
  ServiceHost other{other_service, HostLimits{kMaxMessage}};
  start(other_service, other);
  for (const Entry& entry : feed_.entries()) other.apply(entry);
  EXPECT_EQ(other.state_hash(), closed);
}

// --- snapshots --------------------------------------------------------------------------------------------------

// A history that reaches every part of the snapshot: the bootstrap, open sessions with egress in their windows, a
// tombstone, pending timers of several generations, faults, a second term, and ingress after all of it.
void play_history(Feed& feed) {
  play_faults(feed);
  const SessionId b = feed.at(ms(200)).open(kClientB).value();
  feed.ingress(b, 1, fmt::format("send {} hello; schedule 6 700; schedule 6 800", b));
  const SessionId c = feed.open(Id128{0xC, 3}).value();
  feed.ingress(c, 1, fmt::format("send {} bye", c));
  feed.close(c);
  feed.next_term();
  feed.noop();
  feed.at(ms(300)).activity({b});
  feed.ingress(b, 2, fmt::format("send {} again; schedule 7 1000", b));
  feed.at(ms(900)).timer(6, 3);
  feed.ingress(b, 3, fmt::format("send {} more; cancel 7", b));
  feed.open(kClientA);
  feed.ingress(b, 4, fmt::format("send {} last", b));
}

// Determinism: restored from a snapshot taken after any entry, a replica then applies the rest of the log with the
// same outputs, and hashes as the replica that replayed the whole log, at every later position.
TEST_F(HostTest, HostSnapshotARestoredReplicaHashesAsTheReplayingOneAtEveryLaterPosition) {
  play_history(feed_);
  const std::vector<Entry>& log = feed_.entries();
  ASSERT_EQ(log.size(), 20U);

  for (std::size_t taken_at = 1; taken_at <= log.size(); ++taken_at) {
    SCOPED_TRACE(fmt::format("snapshot at index {}", taken_at));
    RecordingService replaying_service;
    ServiceHost replaying(replaying_service, HostLimits{kMaxMessage});
    start(replaying_service, replaying);
    for (std::size_t i = 0; i < taken_at; ++i) replaying.apply(log[i]);
    take_from(replaying);
    ByteVector snapshot;
    replaying.write_snapshot(snapshot);

    RecordingService restored_service;
    ServiceHost restored(restored_service, HostLimits{kMaxMessage});
    hook(restored_service, restored);
    const auto status = restored.restore(snapshot);
    ASSERT_TRUE(status.ok()) << status.error();
    ASSERT_EQ(restored_service.count(Kind::start), 1U);  // on_start got the snapshot: it is the service's start
    EXPECT_EQ(restored.applied_index(), LogIndex{taken_at});
    EXPECT_EQ(restored.state_hash(), replaying.state_hash());
    ByteVector again;
    restored.write_snapshot(again);
    EXPECT_EQ(again, snapshot);  // byte for byte, so the next snapshot a restored replica takes is alike too

    for (std::size_t i = taken_at; i < log.size(); ++i) {
      replaying.apply(log[i]);
      restored.apply(log[i]);
      ASSERT_EQ(take_from(restored), take_from(replaying)) << "at index " << i + 1;
      ASSERT_EQ(restored.state_hash(), replaying.state_hash()) << "at index " << i + 1;
    }
    EXPECT_EQ(restored.pending_timers(), replaying.pending_timers());
    EXPECT_EQ(restored.open_sessions(), replaying.open_sessions());
    EXPECT_EQ(restored.tombstones(), replaying.tombstones());
    EXPECT_EQ(restored.timers_fired(), replaying.timers_fired());
  }
}

// A follower that installs the leader's snapshot while it runs: the state it had is replaced, not merged, and the
// service is told through on_restore.
TEST_F(HostTest, HostSnapshotRestoredWhileRunningReplacesTheStateAndCallsOnRestore) {
  play_history(feed_);
  ByteVector snapshot;
  host_.write_snapshot(snapshot);

  RecordingService other_service;
  ServiceHost other(other_service, HostLimits{kMaxMessage});
  start(other_service, other);
  Feed other_feed(other);
  other_feed.open(Id128{0xD, 4});  // a session the snapshot does not have
  const auto status = other.restore(snapshot);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_EQ(other_service.count(Kind::restore), 1U);
  EXPECT_EQ(other.state_hash(), host_.state_hash());
  EXPECT_EQ(other.open_sessions(), host_.open_sessions());
  EXPECT_EQ(other.applied_index(), host_.applied_index());
  EXPECT_EQ(other.applied_term(), host_.applied_term());
  EXPECT_EQ(other.last_stamp(), host_.last_stamp());
  EXPECT_EQ(other.incarnation(), host_.incarnation());
}

// A snapshot that is cut short anywhere, or whose counts, reasons or tail are wrong, is refused with a reason and
// changes nothing: a host part that does not decode is never half applied.
TEST_F(HostTest, HostSnapshotADamagedOneIsRefusedAndChangesNothing) {
  play_history(feed_);
  ByteVector snapshot;
  host_.write_snapshot(snapshot);

  RecordingService other_service;
  ServiceHost other(other_service, HostLimits{kMaxMessage});
  start(other_service, other);
  Feed other_feed(other);
  other_feed.open(kClientB);
  const std::uint64_t before = other.state_hash();
  const auto refused = [&](const ByteVector& bytes) {
    const auto status = other.restore(bytes);
    return !status.ok() && !status.error().empty() && other.state_hash() == before &&
           other_service.count(Kind::restore) == 0;
  };
  for (std::size_t length = 0; length < snapshot.size(); ++length)
    ASSERT_TRUE(refused(ByteVector(snapshot.begin(), snapshot.begin() + static_cast<std::ptrdiff_t>(length))))
        << "a prefix of " << length << " of " << snapshot.size() << " bytes";
  ByteVector longer = snapshot;
  longer.push_back(std::byte{0});
  EXPECT_TRUE(refused(longer));
  ByteVector bad_magic = snapshot;
  bad_magic[0] ^= std::byte{1};
  EXPECT_TRUE(refused(bad_magic));
  // The member count (after magic, applied index and term, incarnation) claims more than the bytes could hold.
  ByteVector huge_count = snapshot;
  store_le<std::uint64_t>(huge_count.data() + 5 * 8, ~std::uint64_t{0});
  EXPECT_TRUE(refused(huge_count));
}

}  // namespace
}  // namespace cohort::host
