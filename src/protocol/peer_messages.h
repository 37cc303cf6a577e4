#pragma once
// Consensus traffic between nodes: the wire form of consensus::Message. Every body starts with the same 24-byte
// RaftHeader (from, to, term, boot), then the fields of its kind. The protocol sits below consensus, so ids, terms and
// indexes are plain integers here and an entry's type is a non-zero byte whose meaning consensus judges.
//
// Append entries. Decoding does not allocate: a decoded PeerAppendRequest keeps `entry_count` and `entries`, the
// raw entries region inside the frame, which decode_body has validated completely (exactly entry_count entries,
// every length inside the frame, nothing left over); EntryCursor walks it. Encoding takes the entries from an
// EntrySource, a non-owning view over the caller's own entry type (consensus::Entry, say) projected to EntryView
// one at a time, so neither side copies entries into an intermediate array.

#include <cstddef>
#include <cstdint>
#include <span>

#include "protocol/messages.h"

namespace cohort::protocol {

inline constexpr std::size_t kRaftHeaderSize = 24;
/// index u64 | term u64 | checksum u64 | type u8 | reserved 3 | payload_length u32, then the payload.
inline constexpr std::size_t kEntryHeaderSize = 32;

struct RaftHeader {
  std::uint32_t from = 0;
  std::uint32_t to = 0;
  std::uint64_t term = 0;  // the sender's current term (a pre-vote request: the term it would stand in)
  std::uint64_t boot = 0;  // the sender's boot id, drawn at its start
  friend bool operator==(const RaftHeader&, const RaftHeader&) = default;
};

/// One log entry on the wire. `payload` is a view (into the frame when decoded).
struct EntryView {
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  std::uint64_t checksum = 0;
  std::uint8_t type = 0;  // non-zero; its meaning belongs to consensus
  ByteSpan payload;

  std::size_t encoded_size() const noexcept { return kEntryHeaderSize + payload.size(); }
  friend bool operator==(const EntryView& a, const EntryView& b) noexcept {
    return a.index == b.index && a.term == b.term && a.checksum == b.checksum && a.type == b.type &&
           detail::bytes_equal(a.payload, b.payload);
  }
};

/// Walks an entries region that PeerAppendRequest::decode_body validated. Never reads outside the region, and
/// stops (next() returns false) at its end or at anything malformed, which a validated region does not hold.
class EntryCursor {
 public:
  EntryCursor() = default;
  explicit EntryCursor(ByteSpan region) noexcept : rest_(region) {}

  /// Fills `entry` with the next entry and returns true, or returns false at the end.
  bool next(EntryView& entry) noexcept;

 private:
  ByteSpan rest_;
};

/// A non-owning, allocation-free list of entries to encode: `size()` entries, the i-th being `(*this)[i]`.
/// The items it refers to must outlive the encoding.
class EntrySource {
 public:
  EntrySource() = default;
  /// Over views the caller already has.
  explicit EntrySource(std::span<const EntryView> views) noexcept
      : items_(views.data()), count_(views.size()), view_(&project_view) {}

  /// Over the caller's own entries, each turned into an EntryView by `Project`, e.g.
  ///   EntrySource::over<consensus::Entry, &to_entry_view>(request.entries)
  template <typename Item, EntryView (*Project)(const Item&) noexcept>
  static EntrySource over(std::span<const Item> items) noexcept {
    EntrySource source;
    source.items_ = items.data();
    source.count_ = items.size();
    source.view_ = [](const void* all, std::size_t i) noexcept { return Project(static_cast<const Item*>(all)[i]); };
    return source;
  }

  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  EntryView operator[](std::size_t i) const noexcept {
    COHORT_ASSERT(i < count_);
    return view_(items_, i);
  }

 private:
  static EntryView project_view(const void* all, std::size_t i) noexcept {
    return static_cast<const EntryView*>(all)[i];
  }

  const void* items_ = nullptr;
  std::size_t count_ = 0;
  EntryView (*view_)(const void*, std::size_t) noexcept = nullptr;
};

struct PeerVoteRequest {
  static constexpr MessageType kType = MessageType::vote_request;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize + 24;
  static constexpr std::uint8_t kPreVoteFlag = 0x01;
  static constexpr std::uint8_t kTransferFlag = 0x02;

  RaftHeader header;
  std::uint64_t last_index = 0;
  std::uint64_t last_term = 0;
  bool pre_vote = false;
  bool transfer = false;  // sent after a timeout_now: overrides the voters' leader stickiness

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerVoteRequest, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerVoteRequest&, const PeerVoteRequest&) = default;
};

struct PeerVoteResponse {
  static constexpr MessageType kType = MessageType::vote_response;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize + 8;

  RaftHeader header;
  bool granted = false;
  bool pre_vote = false;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerVoteResponse, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerVoteResponse&, const PeerVoteResponse&) = default;
};

/// Two ways to hold entries (see the top of this header): set `to_encode` to send; a decoded request has
/// `entry_count` and `entries` instead. Encoding a request with `to_encode` empty writes `entries` as they are,
/// so a decoded request re-encodes (or is forwarded) byte for byte. Setting both is a programmer error.
struct PeerAppendRequest {
  static constexpr MessageType kType = MessageType::append_request;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kFixedBodySize = kRaftHeaderSize + 32;  // the body without its entries

  RaftHeader header;
  std::uint64_t prev_index = 0;
  std::uint64_t prev_term = 0;
  std::uint64_t commit = 0;
  std::uint32_t entry_count = 0;  // decoded: number of entries in `entries`
  ByteSpan entries;               // decoded: the raw entries region, a view into the frame
  EntrySource to_encode;          // encoding: the entries to send

  /// Iterates a decoded request's entries (none for a request built for encoding).
  EntryCursor cursor() const noexcept { return EntryCursor(entries); }

  std::size_t body_size() const noexcept;
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerAppendRequest, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  /// Equal fields and the same entries, whichever way each side holds them.
  friend bool operator==(const PeerAppendRequest& a, const PeerAppendRequest& b) noexcept;
};

struct PeerAppendResponse {
  static constexpr MessageType kType = MessageType::append_response;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize + 40;

  RaftHeader header;
  bool success = false;
  std::uint64_t match_index = 0;     // success: the follower's log matches the leader's up to here
  std::uint64_t rejected_prev = 0;   // failure: the prev_index of the refused request
  std::uint64_t conflict_index = 0;  // failure: where the leader should look next
  std::uint64_t conflict_term = 0;   // failure: the follower's term at rejected_prev, 0 if it has no such entry

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerAppendResponse, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerAppendResponse&, const PeerAppendResponse&) = default;
};

struct PeerHeartbeat {
  static constexpr MessageType kType = MessageType::heartbeat;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize + 8;

  RaftHeader header;
  std::uint64_t commit = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerHeartbeat, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerHeartbeat&, const PeerHeartbeat&) = default;
};

struct PeerHeartbeatResponse {
  static constexpr MessageType kType = MessageType::heartbeat_response;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize;

  RaftHeader header;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerHeartbeatResponse, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerHeartbeatResponse&, const PeerHeartbeatResponse&) = default;
};

struct PeerTimeoutNow {
  static constexpr MessageType kType = MessageType::timeout_now;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize;

  RaftHeader header;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerTimeoutNow, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerTimeoutNow&, const PeerTimeoutNow&) = default;
};

struct PeerStandingQuery {
  static constexpr MessageType kType = MessageType::standing_query;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize;

  RaftHeader header;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerStandingQuery, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerStandingQuery&, const PeerStandingQuery&) = default;
};

struct PeerStandingAnswer {
  static constexpr MessageType kType = MessageType::standing_answer;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize + 24;

  RaftHeader header;
  std::uint64_t asker_boot = 0;
  std::uint8_t standing = 0;  // 0 member, 1 fresh, 2 recovering
  bool leader = false;
  std::uint64_t last_index = 0;
  bool founded_with_asker = false;  // consensus::StandingAnswer::founded_with_asker

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerStandingAnswer, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerStandingAnswer&, const PeerStandingAnswer&) = default;
};

/// A piece of a snapshot (consensus::SnapshotChunk). `data` is a view (into the frame when decoded).
struct PeerSnapshotChunk {
  static constexpr MessageType kType = MessageType::snapshot_chunk;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kFixedBodySize = kRaftHeaderSize + 40;

  RaftHeader header;
  std::uint64_t index = 0;  // the snapshot's position
  std::uint64_t term = 0;
  std::uint64_t size = 0;  // of the whole snapshot
  std::uint64_t checksum = 0;
  std::uint64_t offset = 0;  // of `data` in the snapshot
  ByteSpan data;             // the rest of the frame

  std::size_t body_size() const noexcept { return kFixedBodySize + data.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerSnapshotChunk, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerSnapshotChunk& a, const PeerSnapshotChunk& b) noexcept {
    return a.header == b.header && a.index == b.index && a.term == b.term && a.size == b.size &&
           a.checksum == b.checksum && a.offset == b.offset && detail::bytes_equal(a.data, b.data);
  }
};

struct PeerSnapshotAck {
  static constexpr MessageType kType = MessageType::snapshot_ack;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = kRaftHeaderSize + 32;

  RaftHeader header;
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  std::uint64_t checksum = 0;
  std::uint64_t received = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<PeerSnapshotAck, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const PeerSnapshotAck&, const PeerSnapshotAck&) = default;
};

}  // namespace cohort::protocol
