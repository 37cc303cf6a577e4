#include "protocol/peer_messages.h"

#include <limits>
#include <optional>

namespace cohort::protocol {
namespace {

using detail::finish;
using detail::read_bool;
using detail::read_reserved;
using detail::write_zeros;

// RaftHeader: from u32 | to u32 | term u64 | boot u64, at the start of every peer message.
void write_header(BodyWriter& out, const RaftHeader& header) noexcept {
  out.write<std::uint32_t>(header.from);
  out.write<std::uint32_t>(header.to);
  out.write<std::uint64_t>(header.term);
  out.write<std::uint64_t>(header.boot);
}

RaftHeader read_header(BodyReader& in) noexcept {
  RaftHeader header;
  header.from = in.read<std::uint32_t>("from");
  header.to = in.read<std::uint32_t>("to");
  header.term = in.read<std::uint64_t>("term");
  header.boot = in.read<std::uint64_t>("boot");
  return header;
}

/// The entries a request would encode, from whichever side holds them.
class EntryWalk {
 public:
  explicit EntryWalk(const PeerAppendRequest& request) noexcept
      : source_(request.to_encode), cursor_(request.cursor()) {}

  bool next(EntryView& entry) noexcept {
    if (source_.empty()) return cursor_.next(entry);
    if (at_ == source_.size()) return false;
    entry = source_[at_++];
    return true;
  }

 private:
  EntrySource source_;
  EntryCursor cursor_;
  std::size_t at_ = 0;
};

// Where the entries region starts in the body: its decoder's offsets are relative to it.
constexpr std::size_t kEntriesOffset = PeerAppendRequest::kFixedBodySize;

/// Checks that `region` holds exactly `count` well-formed entries. Errors carry offsets and sizes relative to the
/// region; the caller moves them to the frame.
std::optional<DecodeError> check_entries(ByteSpan region, std::uint32_t count) noexcept {
  BodyReader in(region);
  for (std::uint32_t i = 0; i < count && !in.failed(); ++i) {
    (void)in.read<std::uint64_t>("entry.index");
    (void)in.read<std::uint64_t>("entry.term");
    (void)in.read<std::uint64_t>("entry.checksum");
    // Zero is never a valid entry type; which non-zero types exist is for consensus to say.
    if (const auto type = in.read<std::uint8_t>("entry.type"); !in.failed() && type == 0)
      in.fail_invalid("entry.type", 0);
    read_reserved(in, 3, "entry.reserved");
    const auto length = in.read<std::uint32_t>("entry.payload_length");
    (void)in.read_bytes(length, "entry.payload");
  }
  in.expect_end();
  if (!in.failed()) return std::nullopt;
  DecodeError error = in.error();
  error.offset += static_cast<std::uint32_t>(kEntriesOffset);
  if (error.code == DecodeErrc::body_too_long) {  // sizes of the whole body, not of the region
    error.value += kEntriesOffset;
    error.limit += kEntriesOffset;
  }
  return error;
}

}  // namespace

bool EntryCursor::next(EntryView& entry) noexcept {
  if (rest_.size() < kEntryHeaderSize) return false;
  const std::byte* at = rest_.data();
  const auto length = load_le<std::uint32_t>(at + 28);
  if (rest_.size() - kEntryHeaderSize < length) return false;
  entry.index = load_le<std::uint64_t>(at);
  entry.term = load_le<std::uint64_t>(at + 8);
  entry.checksum = load_le<std::uint64_t>(at + 16);
  entry.type = load_le<std::uint8_t>(at + 24);
  entry.payload = rest_.subspan(kEntryHeaderSize, length);
  rest_ = rest_.subspan(kEntryHeaderSize + length);
  return true;
}

// VoteRequest v1: header | last_index u64 | last_term u64 | flags u8 (bit 0 pre_vote, bit 1 transfer) | reserved 7
void PeerVoteRequest::encode_body(BodyWriter& out) const noexcept {
  write_header(out, header);
  out.write<std::uint64_t>(last_index);
  out.write<std::uint64_t>(last_term);
  out.write<std::uint8_t>(static_cast<std::uint8_t>((pre_vote ? kPreVoteFlag : 0U) | (transfer ? kTransferFlag : 0U)));
  write_zeros(out, 7);
}

Result<PeerVoteRequest, DecodeError> PeerVoteRequest::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  PeerVoteRequest request;
  request.header = read_header(in);
  request.last_index = in.read<std::uint64_t>("last_index");
  request.last_term = in.read<std::uint64_t>("last_term");
  const auto flags = in.read<std::uint8_t>("flags");
  constexpr auto kKnown = static_cast<std::uint8_t>(kPreVoteFlag | kTransferFlag);
  if ((flags & ~kKnown) != 0) in.fail_invalid("flags", flags, kKnown);
  request.pre_vote = (flags & kPreVoteFlag) != 0;
  request.transfer = (flags & kTransferFlag) != 0;
  read_reserved(in, 7);
  return finish(in, request);
}

// VoteResponse v1: header | granted u8 | pre_vote u8 | reserved 6
void PeerVoteResponse::encode_body(BodyWriter& out) const noexcept {
  write_header(out, header);
  out.write<std::uint8_t>(granted ? 1 : 0);
  out.write<std::uint8_t>(pre_vote ? 1 : 0);
  write_zeros(out, 6);
}

Result<PeerVoteResponse, DecodeError> PeerVoteResponse::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  PeerVoteResponse response;
  response.header = read_header(in);
  response.granted = read_bool(in, "granted");
  response.pre_vote = read_bool(in, "pre_vote");
  read_reserved(in, 6);
  return finish(in, response);
}

// AppendRequest v1: header | prev_index u64 | prev_term u64 | commit u64 | entry_count u32 | reserved u32 | entries
std::size_t PeerAppendRequest::body_size() const noexcept {
  if (to_encode.empty()) return kFixedBodySize + entries.size();
  std::size_t size = kFixedBodySize;
  for (std::size_t i = 0; i < to_encode.size(); ++i) size += to_encode[i].encoded_size();
  return size;
}

void PeerAppendRequest::encode_body(BodyWriter& out) const noexcept {
  COHORT_ASSERT(to_encode.empty() || (entry_count == 0 && entries.empty()));
  write_header(out, header);
  out.write<std::uint64_t>(prev_index);
  out.write<std::uint64_t>(prev_term);
  out.write<std::uint64_t>(commit);
  if (to_encode.empty()) {
    out.write<std::uint32_t>(entry_count);
    out.write<std::uint32_t>(0);
    out.write_bytes(entries);
    return;
  }
  COHORT_ASSERT(to_encode.size() <= std::numeric_limits<std::uint32_t>::max());
  out.write<std::uint32_t>(static_cast<std::uint32_t>(to_encode.size()));
  out.write<std::uint32_t>(0);
  for (std::size_t i = 0; i < to_encode.size(); ++i) {
    const EntryView entry = to_encode[i];
    COHORT_ASSERT(entry.type != 0);
    COHORT_ASSERT(entry.payload.size() <= std::numeric_limits<std::uint32_t>::max());
    out.write<std::uint64_t>(entry.index);
    out.write<std::uint64_t>(entry.term);
    out.write<std::uint64_t>(entry.checksum);
    out.write<std::uint8_t>(entry.type);
    write_zeros(out, 3);
    out.write<std::uint32_t>(static_cast<std::uint32_t>(entry.payload.size()));
    out.write_bytes(entry.payload);
  }
}

Result<PeerAppendRequest, DecodeError> PeerAppendRequest::decode_body(BodyReader& in,
                                                                      std::uint8_t /*version*/) noexcept {
  PeerAppendRequest request;
  request.header = read_header(in);
  request.prev_index = in.read<std::uint64_t>("prev_index");
  request.prev_term = in.read<std::uint64_t>("prev_term");
  request.commit = in.read<std::uint64_t>("commit");
  request.entry_count = in.read<std::uint32_t>("entry_count");
  // A count the rest of the body cannot hold is refused at once, naming the count rather than the entry where the
  // body runs out.
  if (!in.failed() && in.remaining() >= 4 && request.entry_count > (in.remaining() - 4) / kEntryHeaderSize)
    in.fail_invalid("entry_count", request.entry_count, (in.remaining() - 4) / kEntryHeaderSize);
  read_reserved(in, 4);
  if (in.failed()) return unexpected(in.error());
  request.entries = in.read_bytes(in.remaining(), "entries");
  if (auto error = check_entries(request.entries, request.entry_count)) return unexpected(*error);
  return finish(in, request);
}

bool operator==(const PeerAppendRequest& a, const PeerAppendRequest& b) noexcept {
  if (a.header != b.header || a.prev_index != b.prev_index || a.prev_term != b.prev_term || a.commit != b.commit)
    return false;
  EntryWalk left(a);
  EntryWalk right(b);
  EntryView x;
  EntryView y;
  while (true) {
    const bool more = left.next(x);
    if (more != right.next(y)) return false;
    if (!more) return true;
    if (x != y) return false;
  }
}

// AppendResponse v1: header | success u8 | reserved 7 | match_index u64 | rejected_prev u64 | conflict_index u64 |
//                    conflict_term u64
void PeerAppendResponse::encode_body(BodyWriter& out) const noexcept {
  write_header(out, header);
  out.write<std::uint8_t>(success ? 1 : 0);
  write_zeros(out, 7);
  out.write<std::uint64_t>(match_index);
  out.write<std::uint64_t>(rejected_prev);
  out.write<std::uint64_t>(conflict_index);
  out.write<std::uint64_t>(conflict_term);
}

Result<PeerAppendResponse, DecodeError> PeerAppendResponse::decode_body(BodyReader& in,
                                                                        std::uint8_t /*version*/) noexcept {
  PeerAppendResponse response;
  response.header = read_header(in);
  response.success = read_bool(in, "success");
  read_reserved(in, 7);
  response.match_index = in.read<std::uint64_t>("match_index");
  response.rejected_prev = in.read<std::uint64_t>("rejected_prev");
  response.conflict_index = in.read<std::uint64_t>("conflict_index");
  response.conflict_term = in.read<std::uint64_t>("conflict_term");
  return finish(in, response);
}

// Heartbeat v1: header | commit u64
void PeerHeartbeat::encode_body(BodyWriter& out) const noexcept {
  write_header(out, header);
  out.write<std::uint64_t>(commit);
}

Result<PeerHeartbeat, DecodeError> PeerHeartbeat::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  PeerHeartbeat heartbeat;
  heartbeat.header = read_header(in);
  heartbeat.commit = in.read<std::uint64_t>("commit");
  return finish(in, heartbeat);
}

// HeartbeatResponse v1 and TimeoutNow v1: the header alone
void PeerHeartbeatResponse::encode_body(BodyWriter& out) const noexcept { write_header(out, header); }

Result<PeerHeartbeatResponse, DecodeError> PeerHeartbeatResponse::decode_body(BodyReader& in,
                                                                              std::uint8_t /*version*/) noexcept {
  PeerHeartbeatResponse response;
  response.header = read_header(in);
  return finish(in, response);
}

void PeerTimeoutNow::encode_body(BodyWriter& out) const noexcept { write_header(out, header); }

Result<PeerTimeoutNow, DecodeError> PeerTimeoutNow::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  PeerTimeoutNow timeout;
  timeout.header = read_header(in);
  return finish(in, timeout);
}

// StandingQuery v1: header only
void PeerStandingQuery::encode_body(BodyWriter& out) const noexcept { write_header(out, header); }

Result<PeerStandingQuery, DecodeError> PeerStandingQuery::decode_body(BodyReader& in,
                                                                      std::uint8_t /*version*/) noexcept {
  PeerStandingQuery query;
  query.header = read_header(in);
  return finish(in, query);
}

// StandingAnswer v1: header | asker_boot u64 | standing u8 | leader u8 | founded_with_asker u8 | reserved 5 |
// last_index u64
void PeerStandingAnswer::encode_body(BodyWriter& out) const noexcept {
  write_header(out, header);
  out.write<std::uint64_t>(asker_boot);
  out.write<std::uint8_t>(standing);
  out.write<std::uint8_t>(leader ? 1 : 0);
  out.write<std::uint8_t>(founded_with_asker ? 1 : 0);
  write_zeros(out, 5);
  out.write<std::uint64_t>(last_index);
}

Result<PeerStandingAnswer, DecodeError> PeerStandingAnswer::decode_body(BodyReader& in,
                                                                        std::uint8_t /*version*/) noexcept {
  PeerStandingAnswer answer;
  answer.header = read_header(in);
  answer.asker_boot = in.read<std::uint64_t>("asker_boot");
  answer.standing = in.read<std::uint8_t>("standing");
  if (!in.failed() && answer.standing > 2) in.fail_invalid("standing", answer.standing, 2);
  answer.leader = read_bool(in, "leader");
  answer.founded_with_asker = read_bool(in, "founded_with_asker");
  read_reserved(in, 5);
  answer.last_index = in.read<std::uint64_t>("last_index");
  return finish(in, answer);
}

// SnapshotChunk v1: header | index u64 | term u64 | size u64 | checksum u64 | offset u64 | data (the rest)
void PeerSnapshotChunk::encode_body(BodyWriter& out) const noexcept {
  write_header(out, header);
  out.write<std::uint64_t>(index);
  out.write<std::uint64_t>(term);
  out.write<std::uint64_t>(size);
  out.write<std::uint64_t>(checksum);
  out.write<std::uint64_t>(offset);
  out.write_bytes(data);
}

Result<PeerSnapshotChunk, DecodeError> PeerSnapshotChunk::decode_body(BodyReader& in,
                                                                      std::uint8_t /*version*/) noexcept {
  PeerSnapshotChunk chunk;
  chunk.header = read_header(in);
  chunk.index = in.read<std::uint64_t>("index");
  chunk.term = in.read<std::uint64_t>("term");
  chunk.size = in.read<std::uint64_t>("size");
  chunk.checksum = in.read<std::uint64_t>("checksum");
  chunk.offset = in.read<std::uint64_t>("offset");
  chunk.data = in.read_bytes(in.remaining(), "data");
  return finish(in, chunk);
}

// SnapshotAck v1: header | index u64 | term u64 | checksum u64 | received u64
void PeerSnapshotAck::encode_body(BodyWriter& out) const noexcept {
  write_header(out, header);
  out.write<std::uint64_t>(index);
  out.write<std::uint64_t>(term);
  out.write<std::uint64_t>(checksum);
  out.write<std::uint64_t>(received);
}

Result<PeerSnapshotAck, DecodeError> PeerSnapshotAck::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  PeerSnapshotAck ack;
  ack.header = read_header(in);
  ack.index = in.read<std::uint64_t>("index");
  ack.term = in.read<std::uint64_t>("term");
  ack.checksum = in.read<std::uint64_t>("checksum");
  ack.received = in.read<std::uint64_t>("received");
  return finish(in, ack);
}

}  // namespace cohort::protocol
