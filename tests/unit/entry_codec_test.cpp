// The entry envelope (host/entry_codec.h): every kind round-trips, every malformed envelope is refused with a
// reason that names the problem, and no byte string, however random, crashes the decoder.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/random.h"
#include "host/entry_codec.h"

namespace cohort::host {
namespace {

using ByteVector = std::vector<std::byte>;

constexpr ClusterTime kStamp{1'700'000'000'123'456'789};

DecodedEntry decoded(const ByteVector& payload) {
  auto entry = decode_entry(payload);
  EXPECT_TRUE(entry.has_value()) << (entry.has_value() ? "" : entry.error());
  return entry.has_value() ? *entry : DecodedEntry{};
}

std::string refusal(const ByteVector& payload) {
  auto entry = decode_entry(payload);
  EXPECT_FALSE(entry.has_value()) << "a malformed envelope of " << payload.size() << " bytes was accepted";
  return entry.has_value() ? std::string() : entry.error();
}

constexpr std::uint32_t kThreeMembers[] = {1, 2, 3};

// One valid envelope of each kind, for the tests that damage them.
ByteVector valid(EntryKind kind) {
  ByteVector out;
  switch (kind) {
    case EntryKind::bootstrap: encode_bootstrap(out, kStamp, Id128{1, 2}, kThreeMembers); break;
    case EntryKind::session_open: encode_session_open(out, kStamp, Id128{3, 4}); break;
    case EntryKind::session_close: encode_session_close(out, kStamp, 5, CloseReason::timeout); break;
    case EntryKind::ingress: encode_ingress(out, kStamp, 6, 7, as_bytes("payload")); break;
    case EntryKind::timer: encode_timer(out, kStamp, 8, 9); break;
    case EntryKind::ingress_refused: encode_ingress_refused(out, kStamp, 10, 11); break;
    case EntryKind::activity: {
      constexpr SessionId sessions[] = {12, 13};
      encode_activity(out, kStamp, sessions);
      break;
    }
  }
  return out;
}

constexpr EntryKind kAllKinds[] = {EntryKind::bootstrap, EntryKind::session_open, EntryKind::session_close,
                                   EntryKind::ingress,   EntryKind::timer,        EntryKind::ingress_refused,
                                   EntryKind::activity};

// --- round trips ------------------------------------------------------------------------------------------------

TEST(Envelope, BootstrapRoundTripsItsIncarnationStampAndInitialMembers) {
  ByteVector out;
  constexpr std::uint32_t members[] = {2, 5, 0xFFFFFFFF};
  encode_bootstrap(out, kStamp, Id128{0xDEADBEEF00000001ULL, 0xFFFFFFFFFFFFFFFFULL}, members);
  EXPECT_EQ(out.size(), kEnvelopeHeaderSize + 24 + 3 * 4);
  const DecodedEntry entry = decoded(out);
  EXPECT_EQ(entry.kind, EntryKind::bootstrap);
  EXPECT_EQ(entry.stamp, kStamp);
  EXPECT_EQ(entry.id, (Id128{0xDEADBEEF00000001ULL, 0xFFFFFFFFFFFFFFFFULL}));
  EXPECT_EQ(member_ids(entry), (std::vector<std::uint32_t>{2, 5, 0xFFFFFFFF}));
}

TEST(Envelope, ABootstrapWhoseMembersAreMissingUnorderedOrMiscountedIsRefused) {
  const ByteVector full = valid(EntryKind::bootstrap);  // members 1, 2, 3
  const std::size_t count_at = kEnvelopeHeaderSize + 16;
  const std::size_t ids_at = kEnvelopeHeaderSize + 24;
  {
    ByteVector none = full;
    store_le<std::uint32_t>(none.data() + count_at, 0);
    none.resize(ids_at);
    EXPECT_NE(refusal(none).find("names no members"), std::string::npos);
  }
  {
    ByteVector miscounted = full;
    store_le<std::uint32_t>(miscounted.data() + count_at, 4);
    EXPECT_NE(refusal(miscounted).find("with 4 members has a 36-byte body, expected 40"), std::string::npos)
        << refusal(miscounted);
  }
  for (const auto& [at, id] : std::vector<std::pair<std::size_t, std::uint32_t>>{{0, 0}, {4, 1}, {8, 1}}) {
    ByteVector unordered = full;
    store_le<std::uint32_t>(unordered.data() + ids_at + at, id);
    EXPECT_NE(refusal(unordered).find("strictly ascending"), std::string::npos) << at << ": " << refusal(unordered);
  }
  ByteVector reserved = full;
  reserved[count_at + 4] = std::byte{1};
  EXPECT_NE(refusal(reserved).find("reserved"), std::string::npos);
}

TEST(Envelope, SessionOpenRoundTripsTheClientIdAndTheSessionToResume) {
  ByteVector out;
  encode_session_open(out, kStamp, Id128{42, 43}, 0xFEDCBA9876543210ULL);
  const DecodedEntry entry = decoded(out);
  EXPECT_EQ(entry.kind, EntryKind::session_open);
  EXPECT_EQ(entry.stamp, kStamp);
  EXPECT_EQ(entry.id, (Id128{42, 43}));
  EXPECT_EQ(entry.session, 0xFEDCBA9876543210ULL);
}

TEST(Envelope, SessionCloseRoundTripsEveryReasonAndTheIdleStamp) {
  for (const CloseReason reason : {CloseReason::client_closed, CloseReason::timeout, CloseReason::service}) {
    ByteVector out;
    encode_session_close(out, kStamp, 0x0123456789ABCDEFULL, reason, ClusterTime{777});
    EXPECT_EQ(out.size(), kEnvelopeHeaderSize + 24);
    const DecodedEntry entry = decoded(out);
    EXPECT_EQ(entry.kind, EntryKind::session_close);
    EXPECT_EQ(entry.stamp, kStamp);
    EXPECT_EQ(entry.session, 0x0123456789ABCDEFULL);
    EXPECT_EQ(entry.reason, reason) << to_string(reason);
    EXPECT_EQ(entry.idle_since, ClusterTime{777});
  }
}

TEST(Envelope, ActivityRoundTripsItsSessionsAndRefusesUnorderedOrTooMany) {
  ByteVector out;
  constexpr SessionId sessions[] = {3, 9, 0xFFFFFFFFFFFFFFFFULL};
  encode_activity(out, kStamp, sessions);
  EXPECT_EQ(out.size(), kEnvelopeHeaderSize + 8 + 3 * 8);
  const DecodedEntry entry = decoded(out);
  EXPECT_EQ(entry.kind, EntryKind::activity);
  ASSERT_EQ(entry.sessions.size(), 24U);
  EXPECT_EQ(activity_session(entry, 0), 3U);
  EXPECT_EQ(activity_session(entry, 2), 0xFFFFFFFFFFFFFFFFULL);
  ByteVector empty;
  encode_activity(empty, kStamp, {});
  EXPECT_TRUE(decoded(empty).sessions.empty());

  ByteVector unordered = out;
  store_le<std::uint64_t>(unordered.data() + kEnvelopeHeaderSize + 8 + 8, 3);
  EXPECT_NE(refusal(unordered).find("strictly ascending"), std::string::npos);
  ByteVector miscounted = out;
  store_le<std::uint32_t>(miscounted.data() + kEnvelopeHeaderSize, 4);
  EXPECT_NE(refusal(miscounted).find("with 4 sessions"), std::string::npos);
  ByteVector too_many = out;
  store_le<std::uint32_t>(too_many.data() + kEnvelopeHeaderSize, static_cast<std::uint32_t>(kMaxActivitySessions + 1));
  EXPECT_NE(refusal(too_many).find("at most"), std::string::npos);
}

TEST(Envelope, IngressRoundTripsSessionSeqAndTheMessageBytes) {
  const std::string message = std::string("binary\0bytes", 12) + std::string(300, 'x');
  ByteVector out;
  encode_ingress(out, kStamp, 17, 0xFFFFFFFFFFFFFFFEULL, as_bytes(message));
  EXPECT_EQ(out.size(), kEnvelopeHeaderSize + 16 + message.size());
  const DecodedEntry entry = decoded(out);
  EXPECT_EQ(entry.kind, EntryKind::ingress);
  EXPECT_EQ(entry.stamp, kStamp);
  EXPECT_EQ(entry.session, 17U);
  EXPECT_EQ(entry.seq, 0xFFFFFFFFFFFFFFFEULL);
  EXPECT_EQ(as_chars(entry.message), message);
  // The message is a view into the payload, not a copy.
  EXPECT_EQ(entry.message.data(), out.data() + kEnvelopeHeaderSize + 16);
}

TEST(Envelope, IngressWithAnEmptyMessageRoundTrips) {
  ByteVector out;
  encode_ingress(out, kStamp, 1, 1, ByteSpan{});
  EXPECT_EQ(out.size(), kEnvelopeHeaderSize + 16);
  const DecodedEntry entry = decoded(out);
  EXPECT_EQ(entry.kind, EntryKind::ingress);
  EXPECT_TRUE(entry.message.empty());
}

TEST(Envelope, TimerRoundTripsIdAndGeneration) {
  ByteVector out;
  encode_timer(out, kStamp, 99, 12345);
  const DecodedEntry entry = decoded(out);
  EXPECT_EQ(entry.kind, EntryKind::timer);
  EXPECT_EQ(entry.stamp, kStamp);
  EXPECT_EQ(entry.timer, 99U);
  EXPECT_EQ(entry.seq, 12345U);
}

TEST(Envelope, StampsFromZeroToTheLargestSignedValueRoundTrip) {
  for (const ClusterTime stamp :
       {ClusterTime{0}, ClusterTime{1}, ClusterTime{std::numeric_limits<std::int64_t>::max()}}) {
    ByteVector out;
    encode_timer(out, stamp, 1, 1);
    EXPECT_EQ(decoded(out).stamp, stamp);
    EXPECT_EQ(entry_stamp(out), stamp);
  }
}

TEST(Envelope, EncodersReplaceTheBufferContentsInsteadOfAppending) {
  ByteVector out(500, std::byte{0xAB});
  encode_timer(out, kStamp, 1, 2);
  EXPECT_EQ(out.size(), kEnvelopeHeaderSize + 16);
  EXPECT_EQ(decoded(out).timer, 1U);
  encode_ingress(out, kStamp, 3, 4, as_bytes("ab"));
  EXPECT_EQ(out.size(), kEnvelopeHeaderSize + 18);
  EXPECT_EQ(as_chars(decoded(out).message), "ab");
}

TEST(Envelope, EntryStampReadsTheStampOrNothingFromAShortPayload) {
  const ByteVector out = valid(EntryKind::ingress);
  EXPECT_EQ(entry_stamp(out), kStamp);
  EXPECT_EQ(entry_stamp(ByteSpan(out).first(kEnvelopeHeaderSize)), kStamp);
  EXPECT_FALSE(entry_stamp(ByteSpan(out).first(kEnvelopeHeaderSize - 1)).has_value());
  EXPECT_FALSE(entry_stamp(ByteSpan{}).has_value());
}

// --- refusals ---------------------------------------------------------------------------------------------------

TEST(Envelope, AnEnvelopeShorterThanItsHeaderIsRefused) {
  const ByteVector full = valid(EntryKind::timer);
  for (std::size_t size = 0; size < kEnvelopeHeaderSize; ++size) {
    const std::string why = refusal(ByteVector(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(size)));
    EXPECT_NE(why.find("shorter than its 16-byte header"), std::string::npos) << size << ": " << why;
  }
}

TEST(Envelope, AnUnknownKindIsRefused) {
  for (const int kind : {0, 8, 9, 128, 255}) {
    ByteVector out = valid(EntryKind::timer);
    out[0] = static_cast<std::byte>(kind);
    const std::string why = refusal(out);
    EXPECT_NE(why.find("unknown entry kind " + std::to_string(kind)), std::string::npos) << why;
  }
}

TEST(Envelope, ANonZeroReservedHeaderByteIsRefused) {
  for (const EntryKind kind : kAllKinds) {
    for (std::size_t at = 1; at < 8; ++at) {
      ByteVector out = valid(kind);
      out[at] = std::byte{0x01};
      const std::string why = refusal(out);
      EXPECT_NE(why.find("reserved envelope byte " + std::to_string(at)), std::string::npos) << why;
    }
  }
}

TEST(Envelope, AFixedSizeKindWithAnyOtherBodySizeIsRefused) {
  for (const EntryKind kind : {EntryKind::session_open, EntryKind::session_close, EntryKind::timer}) {
    const ByteVector full = valid(kind);
    const std::size_t expected = full.size() - kEnvelopeHeaderSize;
    for (const std::size_t body : {std::size_t{0}, std::size_t{8}, expected - 1, expected + 1, std::size_t{40}}) {
      ByteVector out = full;
      out.resize(kEnvelopeHeaderSize + body, std::byte{0});
      const std::string why = refusal(out);
      EXPECT_NE(why.find(fmt::format("has a {}-byte body, expected {}", body, expected)), std::string::npos)
          << "kind " << static_cast<int>(kind) << ": " << why;
    }
  }
}

TEST(Envelope, AnIngressBodyTooShortForSessionAndSeqIsRefused) {
  const ByteVector full = valid(EntryKind::ingress);
  for (std::size_t body = 0; body < 16; ++body) {
    const ByteVector out(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(kEnvelopeHeaderSize + body));
    const std::string why = refusal(out);
    EXPECT_NE(why.find("-byte body"), std::string::npos) << body << ": " << why;
  }
}

TEST(Envelope, AnUnknownCloseReasonIsRefused) {
  for (const int reason : {0, 4, 255}) {
    ByteVector out = valid(EntryKind::session_close);
    out[kEnvelopeHeaderSize + 8] = static_cast<std::byte>(reason);
    const std::string why = refusal(out);
    EXPECT_NE(why.find("unknown close reason " + std::to_string(reason)), std::string::npos) << why;
  }
}

// Like every reserved field of the envelope, the 7 bytes after a session_close's reason must be zero.
TEST(Envelope, ANonZeroReservedByteInASessionCloseBodyIsRefused) {
  for (std::size_t at = kEnvelopeHeaderSize + 9; at < kEnvelopeHeaderSize + 16; ++at) {
    ByteVector out = valid(EntryKind::session_close);
    out[at] = std::byte{0x01};
    const std::string why = refusal(out);
    EXPECT_NE(why.find("reserved"), std::string::npos) << "byte " << at << ": " << why;
  }
}

TEST(Envelope, AStampBeyondTheSignedRangeIsRefused) {
  ByteVector out = valid(EntryKind::timer);
  store_le<std::uint64_t>(out.data() + 8, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1);
  EXPECT_NE(refusal(out).find("out of range"), std::string::npos);
  store_le<std::uint64_t>(out.data() + 8, std::numeric_limits<std::uint64_t>::max());
  EXPECT_NE(refusal(out).find("out of range"), std::string::npos);
}

// --- random input -----------------------------------------------------------------------------------------------

// What the decoded entry encodes back to (each kind's fields only).
ByteVector reencode(const DecodedEntry& entry) {
  ByteVector out;
  switch (entry.kind) {
    case EntryKind::bootstrap: {
      const std::vector<std::uint32_t> members = member_ids(entry);
      encode_bootstrap(out, entry.stamp, entry.id, members);
      break;
    }
    case EntryKind::session_open: encode_session_open(out, entry.stamp, entry.id, entry.session); break;
    case EntryKind::session_close:
      encode_session_close(out, entry.stamp, entry.session, entry.reason, entry.idle_since);
      break;
    case EntryKind::activity: {
      std::vector<SessionId> sessions;
      for (std::size_t i = 0; i < entry.sessions.size() / 8; ++i) sessions.push_back(activity_session(entry, i));
      encode_activity(out, entry.stamp, sessions);
      break;
    }
    case EntryKind::ingress: encode_ingress(out, entry.stamp, entry.session, entry.seq, entry.message); break;
    case EntryKind::timer: encode_timer(out, entry.stamp, entry.timer, entry.seq); break;
    case EntryKind::ingress_refused: encode_ingress_refused(out, entry.stamp, entry.session, entry.seq); break;
  }
  return out;
}

TEST(Envelope, RandomBytesAreRefusedOrDecodedToAnEnvelopeThatEncodesBackToThem) {
  Random random(20240611);
  std::size_t accepted = 0;
  std::size_t refused = 0;
  for (int round = 0; round < 5000; ++round) {
    ByteVector bytes(static_cast<std::size_t>(random.below(57)));
    for (auto& byte : bytes) byte = static_cast<std::byte>(random.next());
    // Bias towards envelopes that get past the header checks, so the body checks run too.
    if (bytes.size() >= 8 && random.below(4) != 0) {
      bytes[0] = static_cast<std::byte>(random.below(8));
      for (std::size_t i = 1; i < 8; ++i) bytes[i] = std::byte{0};
      if (bytes.size() >= 16 && random.below(2) == 0) bytes[15] = std::byte{0};  // a stamp in range
      if (bytes.size() >= kEnvelopeHeaderSize + 9 && random.below(2) == 0)
        bytes[kEnvelopeHeaderSize + 8] = static_cast<std::byte>(random.below(5));  // a close reason
    }
    auto entry = decode_entry(bytes);
    if (!entry.has_value()) {
      EXPECT_FALSE(entry.error().empty());
      ++refused;
      continue;
    }
    ++accepted;
    const ByteVector again = reencode(*entry);
    if (entry->kind == EntryKind::session_close) {
      // The reserved bytes after the reason are not checked (see the disabled test above): compare the rest.
      ASSERT_EQ(again.size(), bytes.size());
      EXPECT_TRUE(std::equal(again.begin(), again.begin() + kEnvelopeHeaderSize + 9, bytes.begin()));
    } else {
      EXPECT_EQ(again, bytes) << "round " << round << ": a decoded envelope is not canonical";
    }
  }
  // The generator reaches both outcomes, so the checks above ran.
  EXPECT_GT(accepted, 100U);
  EXPECT_GT(refused, 100U);
}

}  // namespace
}  // namespace cohort::host
