// The ledger service (src/services/ledger_service.h) and its codec (ledger_codec.h), driven through a fake Cluster:
// what it counts and reports, that a duplicate and a gap are each seen, the run-length sets beneath it against a
// plain std::set, snapshots (round trip, replacing the state, every malformed one refused), determinism, memory
// for a long stream, and malformed or randomly damaged input, which is counted and answered and never crashes.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/bytes.h"
#include "common/random.h"
#include "services/ledger_codec.h"
#include "services/ledger_service.h"

namespace cohort::services {

void PrintTo(const NumberRange& range, std::ostream* out) { *out << range.first << ".." << range.last; }

namespace {

using ByteVector = std::vector<std::byte>;

constexpr SessionId kSession = 3;

/// Keeps the replies a service sends (all of them, or only the last when `keep_all` is off, for long streams).
class FakeCluster final : public Cluster {
 public:
  bool keep_all = true;
  std::uint64_t position = 1;
  std::size_t sends = 0;
  std::vector<std::pair<SessionId, ByteVector>> sent;

  ClusterTime time() const noexcept override { return ClusterTime(1'700'000'000'000'000'000); }
  std::uint64_t log_position() const noexcept override { return position; }
  ClusterRole role() const noexcept override { return ClusterRole::follower; }
  void schedule_timer(TimerId /*id*/, ClusterTime /*deadline*/) override {
    ADD_FAILURE() << "the ledger arms no timer";
  }
  bool cancel_timer(TimerId /*id*/) override { return false; }
  bool send(SessionId session, Bytes message) override {
    ++sends;
    if (!keep_all) sent.clear();
    sent.emplace_back(session, ByteVector(message.begin(), message.end()));
    return true;
  }
  bool close_session(SessionId /*session*/) override {
    ADD_FAILURE() << "the ledger closes no session";
    return false;
  }
};

ByteVector record(std::uint64_t tag, std::uint64_t number) { return encode_ledger_request(LedgerRecord{tag, number}); }
ByteVector query(std::uint64_t tag, std::uint64_t request_id, std::uint64_t from = 1) {
  return encode_ledger_request(LedgerQuery{tag, request_id, from});
}

/// Delivers `message`; expects exactly one reply, to the sender, that decodes.
LedgerReply deliver(LedgerService& ledger, FakeCluster& cluster, ByteSpan message) {
  const std::size_t before = cluster.sends;
  ++cluster.position;
  ledger.on_message(cluster, kSession, cluster.time(), message);
  EXPECT_EQ(cluster.sends, before + 1) << "one reply per request";
  if (cluster.sends != before + 1) return LedgerError{"no reply"};
  EXPECT_EQ(cluster.sent.back().first, kSession);
  auto reply = decode_ledger_reply(cluster.sent.back().second);
  EXPECT_TRUE(reply.has_value()) << reply.error();
  return reply ? std::move(reply).value() : LedgerReply{LedgerError{"undecodable"}};
}

LedgerRecorded apply(LedgerService& ledger, FakeCluster& cluster, std::uint64_t tag, std::uint64_t number) {
  const LedgerReply reply = deliver(ledger, cluster, record(tag, number));
  EXPECT_TRUE(std::holds_alternative<LedgerRecorded>(reply));
  return std::holds_alternative<LedgerRecorded>(reply) ? std::get<LedgerRecorded>(reply) : LedgerRecorded{};
}

LedgerReport ask(LedgerService& ledger, FakeCluster& cluster, std::uint64_t tag, std::uint64_t request_id,
                 std::uint64_t from = 1) {
  const LedgerReply reply = deliver(ledger, cluster, query(tag, request_id, from));
  EXPECT_TRUE(std::holds_alternative<LedgerReport>(reply));
  return std::holds_alternative<LedgerReport>(reply) ? std::get<LedgerReport>(reply) : LedgerReport{};
}

ByteVector snapshot_of(LedgerService& ledger, FakeCluster& cluster) {
  ByteVector out;
  ledger.on_take_snapshot(cluster, out);
  return out;
}

std::vector<NumberRange> ranges(std::initializer_list<std::pair<std::uint64_t, std::uint64_t>> list) {
  std::vector<NumberRange> out;
  for (const auto& [first, last] : list) out.push_back(NumberRange{first, last});
  return out;
}

/// A report with every field and both range lists in use.
LedgerReport full_report() {
  LedgerReport report;
  report.request_id = 77;
  report.tag = 0xfeedfacecafebeefULL;
  report.distinct = 90;
  report.highest = 100;
  report.applications = 95;
  report.duplicated = 3;
  report.missing = 10;
  report.malformed = 2;
  report.gaps = ranges({{4, 4}, {10, 18}});
  report.more_gaps = true;
  report.duplicates = ranges({{2, 3}, {50, 50}});
  report.more_duplicates = false;
  return report;
}

// ---- codec ----

TEST(LedgerCodec, RequestsRoundTripAndHaveTheDocumentedLayout) {
  const LedgerRequest recorded = LedgerRecord{0x0102030405060708ULL, 9};
  const ByteVector bytes = encode_ledger_request(recorded);
  ASSERT_EQ(bytes.size(), kLedgerRecordSize);
  EXPECT_EQ(bytes[0], std::byte{1});
  EXPECT_EQ(load_le<std::uint64_t>(bytes.data() + 1), 0x0102030405060708ULL);
  EXPECT_EQ(load_le<std::uint64_t>(bytes.data() + 9), 9U);
  auto decoded = decode_ledger_request(bytes);
  ASSERT_TRUE(decoded.has_value()) << decoded.error();
  EXPECT_EQ(*decoded, recorded);

  const LedgerRequest asked = LedgerQuery{5, 6, kLedgerMaxNumber};
  const ByteVector query_bytes = encode_ledger_request(asked);
  ASSERT_EQ(query_bytes.size(), kLedgerQuerySize);
  EXPECT_EQ(query_bytes[0], std::byte{2});
  EXPECT_EQ(load_le<std::uint64_t>(query_bytes.data() + 17), kLedgerMaxNumber);
  decoded = decode_ledger_request(query_bytes);
  ASSERT_TRUE(decoded.has_value()) << decoded.error();
  EXPECT_EQ(*decoded, asked);
}

TEST(LedgerCodec, RepliesRoundTrip) {
  const std::vector<LedgerReply> replies = {LedgerRecorded{1, 2, true},
                                            LedgerRecorded{~0ULL, kLedgerMaxNumber, false},
                                            full_report(),
                                            LedgerReport{},
                                            LedgerError{"why"},
                                            LedgerError{""}};
  for (const LedgerReply& reply : replies) {
    const ByteVector bytes = encode_ledger_reply(reply);
    auto decoded = decode_ledger_reply(bytes);
    ASSERT_TRUE(decoded.has_value()) << decoded.error();
    EXPECT_EQ(*decoded, reply);
  }
  EXPECT_EQ(encode_ledger_reply(LedgerRecorded{1, 2, true}).size(), kLedgerRecordedSize);
  EXPECT_EQ(encode_ledger_reply(full_report()).size(), kLedgerReportHeaderSize + 4 * kLedgerRangeSize);
}

TEST(LedgerCodec, AnErrorReasonIsCutToTheLimit) {
  const auto decoded = decode_ledger_reply(encode_ledger_reply(LedgerError{std::string(1000, 'x')}));
  ASSERT_TRUE(decoded.has_value()) << decoded.error();
  EXPECT_EQ(std::get<LedgerError>(*decoded).reason, std::string(kLedgerMaxReason, 'x'));
}

TEST(LedgerCodec, EveryTruncationAndEveryExtraByteIsRefused) {
  std::vector<ByteVector> requests = {record(1, 2), query(1, 2, 3)};
  for (const ByteVector& bytes : requests) {
    for (std::size_t length = 0; length < bytes.size(); ++length)
      EXPECT_FALSE(decode_ledger_request(ByteSpan(bytes).first(length)).has_value()) << length;
    ByteVector longer = bytes;
    longer.push_back(std::byte{0});
    EXPECT_FALSE(decode_ledger_request(longer).has_value());
  }
  std::vector<ByteVector> replies = {encode_ledger_reply(LedgerRecorded{1, 2, true}),
                                     encode_ledger_reply(full_report()), encode_ledger_reply(LedgerError{"abc"})};
  for (const ByteVector& bytes : replies) {
    for (std::size_t length = 0; length < bytes.size(); ++length)
      EXPECT_FALSE(decode_ledger_reply(ByteSpan(bytes).first(length)).has_value()) << length;
    ByteVector longer = bytes;
    longer.push_back(std::byte{0});
    EXPECT_FALSE(decode_ledger_reply(longer).has_value());
  }
}

TEST(LedgerCodec, RequestsWithBadOpsOrNumbersAreRefused) {
  ByteVector bytes = record(1, 2);
  bytes[0] = std::byte{9};
  EXPECT_FALSE(decode_ledger_request(bytes).has_value());
  bytes[0] = std::byte{0};
  EXPECT_FALSE(decode_ledger_request(bytes).has_value());

  bytes = record(1, 2);
  store_le<std::uint64_t>(bytes.data() + 9, 0);
  EXPECT_FALSE(decode_ledger_request(bytes).has_value()) << "numbers start at 1";
  store_le<std::uint64_t>(bytes.data() + 9, kLedgerMaxNumber + 1);
  EXPECT_FALSE(decode_ledger_request(bytes).has_value());
  store_le<std::uint64_t>(bytes.data() + 9, ~0ULL);
  EXPECT_FALSE(decode_ledger_request(bytes).has_value());

  bytes = query(1, 2, 3);
  store_le<std::uint64_t>(bytes.data() + 17, 0);
  EXPECT_FALSE(decode_ledger_request(bytes).has_value());
  bytes[0] = std::byte{1};  // a query's bytes with a record's op: the size says no
  EXPECT_FALSE(decode_ledger_request(bytes).has_value());
}

TEST(LedgerCodec, InconsistentRepliesAreRefused) {
  const auto refused = [](const std::function<void(ByteVector&)>& damage) {
    ByteVector bytes = encode_ledger_reply(full_report());
    damage(bytes);
    return !decode_ledger_reply(bytes).has_value();
  };
  EXPECT_TRUE(refused([](ByteVector& b) { b[1] = std::byte{4}; })) << "unknown flag";
  EXPECT_TRUE(refused([](ByteVector& b) { b[2] = std::byte{17}; })) << "more ranges than the limit";
  EXPECT_TRUE(refused([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 52, 11); }))
      << "missing != highest - distinct";
  EXPECT_TRUE(refused([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 36, 92); }))
      << "fewer applications than distinct + duplicated";
  // The first gap range (4..4) made to end before it starts, then to overlap the next.
  EXPECT_TRUE(refused([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 68, 5); }));
  EXPECT_TRUE(refused([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 76, 12); }));
  EXPECT_TRUE(refused([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 68, 0); })) << "a range from 0";

  ByteVector recorded = encode_ledger_reply(LedgerRecorded{1, 2, true});
  recorded[1] = std::byte{2};
  EXPECT_FALSE(decode_ledger_reply(recorded).has_value());
  ByteVector error = encode_ledger_reply(LedgerError{"abc"});
  error[1] = std::byte{1};
  EXPECT_FALSE(decode_ledger_reply(error).has_value()) << "reserved byte";
  error = encode_ledger_reply(LedgerError{"abc"});
  store_le<std::uint16_t>(error.data() + 2, 2);
  EXPECT_FALSE(decode_ledger_reply(error).has_value()) << "length mismatch";
  EXPECT_FALSE(decode_ledger_reply(ByteVector{std::byte{4}}).has_value()) << "unknown kind";
}

TEST(LedgerCodec, RandomBytesNeverCrashTheDecoders) {
  Random random(11);
  const std::vector<ByteVector> seeds = {record(1, 2), query(3, 4, 5), encode_ledger_reply(full_report()),
                                         encode_ledger_reply(LedgerRecorded{1, 2, false}),
                                         encode_ledger_reply(LedgerError{"reason"})};
  for (int i = 0; i < 100000; ++i) {
    ByteVector bytes = seeds[random.below(seeds.size())];
    for (std::uint64_t e = random.between(1, 3); e > 0; --e) {
      switch (random.below(3)) {
        case 0:
          if (!bytes.empty()) bytes[random.below(bytes.size())] = static_cast<std::byte>(random.below(256));
          break;
        case 1: bytes.resize(random.below(bytes.size() + 1)); break;
        default: bytes.push_back(static_cast<std::byte>(random.below(256)));
      }
    }
    // Whatever decodes must encode back to the same bytes: a decoder admits only canonical messages.
    if (auto request = decode_ledger_request(bytes)) {
      EXPECT_EQ(encode_ledger_request(*request), bytes);
    }
    if (auto reply = decode_ledger_reply(bytes)) {
      EXPECT_EQ(encode_ledger_reply(*reply), bytes);
    }
  }
}

// ---- the run-length set ----

TEST(NumberSet, AStreamInOrderIsOneRun) {
  NumberSet set;
  for (std::uint64_t n = 1; n <= 10'000'000; ++n) ASSERT_TRUE(set.insert(n));
  EXPECT_EQ(set.size(), 10'000'000U);
  EXPECT_EQ(set.run_count(), 1U);
  EXPECT_EQ(set.max(), 10'000'000U);
  EXPECT_FALSE(set.insert(5'000'000));
}

TEST(NumberSet, RunsMergeFromEitherSideAndAcrossAGap) {
  NumberSet set;
  EXPECT_TRUE(set.insert(5));
  EXPECT_TRUE(set.insert(7));
  EXPECT_EQ(set.run_count(), 2U);
  EXPECT_TRUE(set.insert(6));  // joins 5 and 7
  EXPECT_EQ(set.run_count(), 1U);
  EXPECT_TRUE(set.insert(4));  // extends downwards
  EXPECT_TRUE(set.insert(8));  // and upwards
  EXPECT_EQ(set.run_count(), 1U);
  EXPECT_EQ(set.size(), 5U);
  EXPECT_FALSE(set.insert(6));
  EXPECT_TRUE(set.contains(4));
  EXPECT_TRUE(set.contains(8));
  EXPECT_FALSE(set.contains(3));
  EXPECT_FALSE(set.contains(9));
  EXPECT_TRUE(set.insert(kLedgerMaxNumber));
  EXPECT_TRUE(set.insert(kLedgerMaxNumber - 1));
  EXPECT_EQ(set.max(), kLedgerMaxNumber);
  EXPECT_EQ(set.run_count(), 2U);
}

TEST(NumberSet, GapsAndRunsAreListedFromAPointWithALimit) {
  NumberSet set;
  for (const std::uint64_t n : std::initializer_list<std::uint64_t>{2, 3, 4, 8, 9, 12, 20}) ASSERT_TRUE(set.insert(n));
  std::vector<NumberRange> out;
  EXPECT_FALSE(set.gaps_from(1, 16, out));
  EXPECT_EQ(out, ranges({{1, 1}, {5, 7}, {10, 11}, {13, 19}}));
  out.clear();
  EXPECT_FALSE(set.gaps_from(6, 16, out));  // inside a gap: clipped
  EXPECT_EQ(out, ranges({{6, 7}, {10, 11}, {13, 19}}));
  out.clear();
  EXPECT_FALSE(set.gaps_from(9, 16, out));  // inside a run: from its end
  EXPECT_EQ(out, ranges({{10, 11}, {13, 19}}));
  out.clear();
  EXPECT_TRUE(set.gaps_from(1, 2, out));  // more follow
  EXPECT_EQ(out, ranges({{1, 1}, {5, 7}}));
  out.clear();
  EXPECT_FALSE(set.gaps_from(20, 16, out));  // nothing missing at or above the highest
  EXPECT_FALSE(set.gaps_from(1000, 16, out));
  EXPECT_TRUE(out.empty());

  EXPECT_FALSE(set.runs_from(3, 16, out));
  EXPECT_EQ(out, ranges({{3, 4}, {8, 9}, {12, 12}, {20, 20}}));
  out.clear();
  EXPECT_TRUE(set.runs_from(5, 2, out));
  EXPECT_EQ(out, ranges({{8, 9}, {12, 12}}));
  out.clear();
  EXPECT_FALSE(set.runs_from(21, 2, out));
  EXPECT_TRUE(out.empty());
}

TEST(NumberSet, AgreesWithAPlainSetUnderRandomInserts) {
  Random random(3);
  NumberSet set;
  std::set<std::uint64_t> model;
  for (int i = 0; i < 20000; ++i) {
    const std::uint64_t n = random.between(1, 30000);
    EXPECT_EQ(set.insert(n), model.insert(n).second);
  }
  EXPECT_EQ(set.size(), model.size());
  EXPECT_EQ(set.max(), *model.rbegin());
  // The runs are canonical: each one maximal.
  std::optional<std::uint64_t> previous_last;
  for (const auto& [first, last] : set.runs()) {
    if (previous_last) {
      EXPECT_GT(first, *previous_last + 1);
    }
    for (std::uint64_t n = first; n <= last; ++n) EXPECT_TRUE(model.contains(n));
    EXPECT_FALSE(model.contains(first - 1));
    EXPECT_FALSE(model.contains(last + 1));
    previous_last = last;
  }
  std::vector<NumberRange> gaps;
  EXPECT_FALSE(set.gaps_from(1, 1'000'000, gaps));
  std::uint64_t missing = 0;
  for (const NumberRange& gap : gaps) {
    for (std::uint64_t n = gap.first; n <= gap.last; ++n) EXPECT_FALSE(model.contains(n));
    missing += gap.size();
  }
  EXPECT_EQ(missing, set.max() - set.size());
  EXPECT_GT(set.run_count(), 1000U);
}

TEST(NumberSet, AppendRunRefusesWhatWouldBreakTheInvariant) {
  NumberSet set;
  EXPECT_FALSE(set.append_run({0, 3}));
  EXPECT_FALSE(set.append_run({4, 3}));
  EXPECT_FALSE(set.append_run({1, kLedgerMaxNumber + 1}));
  EXPECT_TRUE(set.append_run({2, 5}));
  EXPECT_FALSE(set.append_run({6, 8})) << "adjacent";
  EXPECT_FALSE(set.append_run({5, 8})) << "overlapping";
  EXPECT_FALSE(set.append_run({1, 1})) << "out of order";
  EXPECT_TRUE(set.append_run({7, 8}));
  EXPECT_EQ(set.size(), 6U);
  EXPECT_EQ(set.run_count(), 2U);
}

// ---- the service ----

TEST(LedgerService, EachRecordIsAnsweredAndADuplicateIsFlagged) {
  FakeCluster cluster;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  EXPECT_EQ(apply(ledger, cluster, 9, 1), (LedgerRecorded{9, 1, true}));
  EXPECT_EQ(apply(ledger, cluster, 9, 2), (LedgerRecorded{9, 2, true}));
  EXPECT_EQ(apply(ledger, cluster, 9, 1), (LedgerRecorded{9, 1, false}));
  EXPECT_EQ(apply(ledger, cluster, 9, 1), (LedgerRecorded{9, 1, false}));
  EXPECT_EQ(ledger.times_applied(9, 1), 2);
  EXPECT_EQ(ledger.times_applied(9, 2), 1);
  EXPECT_EQ(ledger.times_applied(9, 3), 0);
  EXPECT_EQ(ledger.times_applied(8, 1), 0);
  EXPECT_EQ(ledger.records(), 4U);
}

TEST(LedgerService, AReportCountsDuplicatesAndGapsSeparatelySoTheyDoNotCancelOut) {
  FakeCluster cluster;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  // 1..10 with 4 lost and 7 applied twice: ten applications, as a counter would have it, but not the right ten.
  for (const std::uint64_t n : std::initializer_list<std::uint64_t>{1, 2, 3, 5, 6, 7, 7, 8, 9, 10})
    apply(ledger, cluster, 1, n);
  const LedgerReport report = ask(ledger, cluster, 1, 42);
  EXPECT_EQ(report.request_id, 42U);
  EXPECT_EQ(report.tag, 1U);
  EXPECT_EQ(report.applications, 10U);
  EXPECT_EQ(report.distinct, 9U);
  EXPECT_EQ(report.highest, 10U);
  EXPECT_EQ(report.missing, 1U);
  EXPECT_EQ(report.duplicated, 1U);
  EXPECT_EQ(report.gaps, ranges({{4, 4}}));
  EXPECT_EQ(report.duplicates, ranges({{7, 7}}));
  EXPECT_FALSE(report.more_gaps);
  EXPECT_FALSE(report.more_duplicates);
  EXPECT_EQ(ledger.queries(), 1U);
}

TEST(LedgerService, TagsAreSeparateStreamsAndAnUnknownTagReportsNothing) {
  FakeCluster cluster;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  apply(ledger, cluster, 1, 1);
  apply(ledger, cluster, 2, 1);
  apply(ledger, cluster, 2, 2);
  EXPECT_EQ(ask(ledger, cluster, 1, 1).distinct, 1U);
  EXPECT_EQ(ask(ledger, cluster, 2, 2).distinct, 2U);
  const LedgerReport unknown = ask(ledger, cluster, 3, 3);
  EXPECT_EQ(unknown.distinct, 0U);
  EXPECT_EQ(unknown.highest, 0U);
  EXPECT_TRUE(unknown.gaps.empty());
  EXPECT_EQ(ledger.tags(), 2U) << "a query creates no account";
}

TEST(LedgerService, ManyGapsArePagedWithFrom) {
  FakeCluster cluster;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  for (std::uint64_t n = 1; n <= 100; n += 2) apply(ledger, cluster, 5, n);  // every even number below 100 missing
  for (std::uint64_t n = 1; n <= 41; n += 2) apply(ledger, cluster, 5, n);   // 1..41 odd twice
  std::vector<NumberRange> gaps;
  std::vector<NumberRange> duplicates;
  std::uint64_t from = 1;
  int pages = 0;
  while (true) {
    const LedgerReport page = ask(ledger, cluster, 5, 100 + static_cast<std::uint64_t>(pages), from);
    ++pages;
    EXPECT_EQ(page.missing, 49U);
    EXPECT_EQ(page.duplicated, 21U);
    ASSERT_LE(page.gaps.size(), kLedgerMaxRanges);
    gaps.insert(gaps.end(), page.gaps.begin(), page.gaps.end());
    if (pages == 1) duplicates = page.duplicates;
    if (!page.more_gaps) break;
    ASSERT_EQ(page.gaps.size(), kLedgerMaxRanges);
    from = page.gaps.back().last + 1;
  }
  EXPECT_EQ(pages, 4);  // 49 gaps, 16 a page
  ASSERT_EQ(gaps.size(), 49U);
  for (std::size_t i = 0; i < gaps.size(); ++i) EXPECT_EQ(gaps[i], (NumberRange{2 * i + 2, 2 * i + 2}));
  EXPECT_EQ(duplicates.size(), kLedgerMaxRanges);
  EXPECT_EQ(duplicates.front(), (NumberRange{1, 1}));
}

TEST(LedgerService, MalformedRequestsAreCountedAndAnsweredAndChangeNothingElse) {
  FakeCluster cluster;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  apply(ledger, cluster, 1, 1);
  const LedgerReport before = ledger.report(1);
  ByteVector zero = record(1, 2);
  store_le<std::uint64_t>(zero.data() + 9, 0);
  for (const ByteVector& bad : {ByteVector{}, ByteVector{std::byte{1}}, ByteVector(17, std::byte{7}), zero}) {
    const LedgerReply reply = deliver(ledger, cluster, bad);
    ASSERT_TRUE(std::holds_alternative<LedgerError>(reply));
    EXPECT_FALSE(std::get<LedgerError>(reply).reason.empty());
  }
  EXPECT_EQ(ledger.malformed(), 4U);
  LedgerReport after = ledger.report(1);
  EXPECT_EQ(after.malformed, 4U);
  after.malformed = before.malformed;
  EXPECT_EQ(after, before);
  EXPECT_EQ(ledger.records(), 1U);
}

TEST(LedgerService, RandomlyDamagedRequestsNeverCrashAndAlwaysGetOneReply) {
  FakeCluster cluster;
  cluster.keep_all = false;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  Random random(5);
  std::uint64_t errors = 0;
  for (int i = 0; i < 50000; ++i) {
    ByteVector bytes = random.below(2) == 0
                           ? record(random.below(4), random.between(1, 500))
                           : query(random.below(4), static_cast<std::uint64_t>(i), random.between(1, 500));
    for (std::uint64_t e = random.below(3); e > 0; --e) {
      switch (random.below(3)) {
        case 0: bytes[random.below(bytes.size())] = static_cast<std::byte>(random.below(256)); break;
        case 1: bytes.resize(random.below(bytes.size())); break;
        default: bytes.push_back(static_cast<std::byte>(random.below(256)));
      }
      if (bytes.empty()) break;
    }
    if (std::holds_alternative<LedgerError>(deliver(ledger, cluster, bytes))) ++errors;
  }
  EXPECT_EQ(ledger.malformed(), errors);
  EXPECT_GT(errors, 0U);
  // What it holds still restores: the state stayed well-formed.
  LedgerService copy;
  EXPECT_NO_THROW(copy.on_start(cluster, ByteSpan(snapshot_of(ledger, cluster))));
  EXPECT_EQ(copy.state_hash(), ledger.state_hash());
}

TEST(LedgerService, SnapshotRestoresTheSameStateAndBehaviour) {
  FakeCluster cluster;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  for (const std::uint64_t n : std::initializer_list<std::uint64_t>{1, 2, 3, 5, 5, 9, 9, 9, 10})
    apply(ledger, cluster, 7, n);
  apply(ledger, cluster, 3, 100);
  deliver(ledger, cluster, ByteVector{std::byte{0}});
  ask(ledger, cluster, 7, 1);
  const ByteVector snapshot = snapshot_of(ledger, cluster);

  LedgerService restored;
  restored.on_start(cluster, ByteSpan(snapshot));
  EXPECT_EQ(snapshot_of(restored, cluster), snapshot);
  EXPECT_EQ(restored.state_hash(), ledger.state_hash());
  EXPECT_EQ(restored.report(7), ledger.report(7));
  EXPECT_EQ(restored.report(3, 50), ledger.report(3, 50));
  EXPECT_EQ(restored.queries(), 1U);
  EXPECT_EQ(restored.malformed(), 1U);
  // And goes on alike.
  EXPECT_EQ(apply(restored, cluster, 7, 4), apply(ledger, cluster, 7, 4));
  EXPECT_EQ(apply(restored, cluster, 7, 5), apply(ledger, cluster, 7, 5));
  EXPECT_EQ(restored.state_hash(), ledger.state_hash());
}

TEST(LedgerService, RestoreReplacesTheStateInsteadOfMerging) {
  FakeCluster cluster;
  LedgerService source;
  source.on_start(cluster, std::nullopt);
  apply(source, cluster, 1, 1);
  const ByteVector snapshot = snapshot_of(source, cluster);

  LedgerService target;
  target.on_start(cluster, std::nullopt);
  apply(target, cluster, 1, 2);
  apply(target, cluster, 2, 1);
  target.on_restore(cluster, snapshot);
  EXPECT_EQ(target.state_hash(), source.state_hash());
  EXPECT_EQ(target.tags(), 1U);
  EXPECT_EQ(target.times_applied(1, 2), 0);
}

TEST(LedgerService, AnEmptyLedgerSnapshotsAndRestores) {
  FakeCluster cluster;
  LedgerService empty;
  empty.on_start(cluster, std::nullopt);
  const ByteVector snapshot = snapshot_of(empty, cluster);
  LedgerService restored;
  restored.on_start(cluster, ByteSpan(snapshot));
  EXPECT_EQ(restored.state_hash(), empty.state_hash());
  EXPECT_EQ(restored.tags(), 0U);
}

TEST(LedgerService, ReplicasFedTheSameSequenceStayEqualAndASnapshotJoinsAnywhere) {
  Random random(9);
  std::vector<ByteVector> log;
  for (int i = 0; i < 3000; ++i)
    log.push_back(random.below(10) == 0 ? query(random.below(3), static_cast<std::uint64_t>(i), random.between(1, 200))
                                        : record(random.below(3), random.between(1, 200)));
  FakeCluster cluster;
  LedgerService a;
  LedgerService b;
  a.on_start(cluster, std::nullopt);
  b.on_start(cluster, std::nullopt);
  std::optional<LedgerService> joined;
  for (std::size_t i = 0; i < log.size(); ++i) {
    deliver(a, cluster, log[i]);
    const ByteVector reply_a = cluster.sent.back().second;
    deliver(b, cluster, log[i]);
    EXPECT_EQ(cluster.sent.back().second, reply_a) << "entry " << i;
    if (i == 1234) {
      joined.emplace();
      joined->on_start(cluster, ByteSpan(snapshot_of(a, cluster)));
    } else if (joined) {
      deliver(*joined, cluster, log[i]);
      EXPECT_EQ(cluster.sent.back().second, reply_a) << "entry " << i;
    }
  }
  EXPECT_EQ(a.state_hash(), b.state_hash());
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(joined->state_hash(), a.state_hash());
  EXPECT_EQ(snapshot_of(*joined, cluster), snapshot_of(a, cluster));
}

TEST(LedgerService, DifferentStatesHashDifferently) {
  FakeCluster cluster;
  LedgerService a;
  LedgerService b;
  apply(a, cluster, 1, 1);
  apply(b, cluster, 1, 2);
  EXPECT_NE(a.state_hash(), b.state_hash());
  apply(a, cluster, 1, 1);  // a duplicate changes the state too
  LedgerService c;
  apply(c, cluster, 1, 1);
  EXPECT_NE(a.state_hash(), c.state_hash());
}

TEST(LedgerService, AMalformedSnapshotThrows) {
  FakeCluster cluster;
  LedgerService ledger;
  for (const std::uint64_t n : std::initializer_list<std::uint64_t>{1, 2, 4, 4}) apply(ledger, cluster, 1, n);
  apply(ledger, cluster, 2, 1);
  const ByteVector good = snapshot_of(ledger, cluster);
  // Layout: header 40 bytes; account 1 at 40: tag, applications, 2 applied runs, 1 duplicated run, then the runs
  // 1..2 (72), 4..4 (88) and the duplicated 4..4 (104); account 2 at 120.
  ASSERT_EQ(load_le<std::uint64_t>(good.data() + 40), 1U);
  ASSERT_EQ(load_le<std::uint64_t>(good.data() + 56), 2U);
  ASSERT_EQ(load_le<std::uint64_t>(good.data() + 72), 1U);
  ASSERT_EQ(load_le<std::uint64_t>(good.data() + 120), 2U);

  const auto throws = [&](const std::function<void(ByteVector&)>& damage) {
    ByteVector bytes = good;
    damage(bytes);
    LedgerService target;
    try {
      target.on_start(cluster, ByteSpan(bytes));
    } catch (const std::runtime_error& error) {
      EXPECT_NE(std::string(error.what()).find("ledger service: malformed snapshot"), std::string::npos);
      return true;
    }
    return false;
  };
  for (std::size_t length = 0; length < good.size(); ++length)
    EXPECT_TRUE(throws([&](ByteVector& b) { b.resize(length); })) << "truncated to " << length;
  EXPECT_TRUE(throws([](ByteVector& b) { b.push_back(std::byte{0}); })) << "trailing byte";
  EXPECT_TRUE(throws([](ByteVector& b) { b[0] = std::byte{0}; })) << "magic";
  EXPECT_TRUE(throws([](ByteVector& b) { b[4] = std::byte{2}; })) << "format";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 8, 4); })) << "records";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 32, ~0ULL); })) << "account count";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 120, 1); })) << "tags repeated";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 56, ~0ULL); })) << "run count";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 88, 3); })) << "adjacent runs";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 88, 2); })) << "overlapping runs";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 72, 0); })) << "a run from 0";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 104, 3); })) << "duplicated not applied";
  EXPECT_TRUE(throws([](ByteVector& b) { store_le<std::uint64_t>(b.data() + 48, 3); })) << "too few applications";
}

TEST(LedgerService, ALongStreamInOrderIsOneRunAndALossyOneARunPerGap) {
  // The sets beneath hold ten million numbers in one run (NumberSet.AStreamInOrderIsOneRun); through the service,
  // a million keeps the test quick under the sanitizers.
  FakeCluster cluster;
  cluster.keep_all = false;
  LedgerService ledger;
  ledger.on_start(cluster, std::nullopt);
  constexpr std::uint64_t kCount = 1'000'000;
  for (std::uint64_t n = 1; n <= kCount; ++n) ledger.on_message(cluster, kSession, cluster.time(), record(0xabc, n));
  EXPECT_EQ(cluster.sends, kCount);
  EXPECT_EQ(ledger.run_count(), 1U);
  EXPECT_LT(snapshot_of(ledger, cluster).size(), 200U);
  const LedgerReport report = ledger.report(0xabc);
  EXPECT_EQ(report.distinct, kCount);
  EXPECT_EQ(report.missing, 0U);
  // Every hundredth number missing costs one run per gap: 10,000 runs (under a megabyte) for a million numbers.
  LedgerService lossy;
  for (std::uint64_t n = 1; n <= kCount; ++n)
    if (n % 100 != 0) lossy.on_message(cluster, kSession, cluster.time(), record(1, n));
  EXPECT_EQ(lossy.run_count(), kCount / 100);
  EXPECT_EQ(lossy.report(1).missing, kCount / 100 - 1);
}

}  // namespace
}  // namespace cohort::services
