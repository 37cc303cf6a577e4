#include "node/peer_codec.h"

#include <fmt/format.h>

#include "protocol/catalogue.h"

namespace cohort::node {
namespace {

using namespace protocol;

RaftHeader header_of(const consensus::Message& message) {
  return RaftHeader{message.from.value(), message.to.value(), message.term.value(), message.boot};
}

EntryView to_view(const consensus::Entry& entry) noexcept {
  return EntryView{entry.index.value(), entry.term.value(), entry.checksum, static_cast<std::uint8_t>(entry.type),
                   entry.payload};
}

void set_header(consensus::Message& out, const RaftHeader& header) {
  out.from = NodeId{header.from};
  out.to = NodeId{header.to};
  out.term = Term{header.term};
  out.boot = header.boot;
}

template <typename Wire>
Status<std::string> decode_into(const Frame& frame, consensus::Message& out, std::vector<consensus::Entry>& spare,
                                auto&& convert) {
  auto wire = decode<Wire>(frame);
  if (!wire) return unexpected(fmt::format("malformed {}: {}", to_string(frame.header.type), wire.error().describe()));
  set_header(out, wire->header);
  // Another kind of message replaces an append request's body: its entries' vector is kept for the next one.
  if constexpr (!std::is_same_v<Wire, PeerAppendRequest>)
    if (auto* request = std::get_if<consensus::AppendRequest>(&out.body)) spare.swap(request->entries);
  return convert(*wire);
}

}  // namespace

bool is_peer_message(MessageType type) noexcept {
  switch (type) {
    case MessageType::vote_request:
    case MessageType::vote_response:
    case MessageType::append_request:
    case MessageType::append_response:
    case MessageType::heartbeat:
    case MessageType::heartbeat_response:
    case MessageType::timeout_now:
    case MessageType::standing_query:
    case MessageType::standing_answer:
    case MessageType::snapshot_chunk:
    case MessageType::snapshot_ack: return true;
    default: return false;
  }
}

void append_peer_frame(const consensus::Message& message, std::vector<std::byte>& out) {
  const RaftHeader header = header_of(message);
  std::visit(
      [&](const auto& body) {
        using Body = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<Body, consensus::VoteRequest>) {
          append_frame(
              PeerVoteRequest{header, body.last_index.value(), body.last_term.value(), body.pre_vote, body.transfer},
              out);
        } else if constexpr (std::is_same_v<Body, consensus::VoteResponse>) {
          append_frame(PeerVoteResponse{header, body.granted, body.pre_vote}, out);
        } else if constexpr (std::is_same_v<Body, consensus::AppendRequest>) {
          PeerAppendRequest request;
          request.header = header;
          request.prev_index = body.prev_index.value();
          request.prev_term = body.prev_term.value();
          request.commit = body.commit.value();
          request.to_encode =
              EntrySource::over<consensus::Entry, &to_view>(std::span<const consensus::Entry>(body.entries));
          append_frame(request, out);
        } else if constexpr (std::is_same_v<Body, consensus::AppendResponse>) {
          append_frame(PeerAppendResponse{header, body.success, body.match_index.value(), body.rejected_prev.value(),
                                          body.conflict_index.value(), body.conflict_term.value()},
                       out);
        } else if constexpr (std::is_same_v<Body, consensus::Heartbeat>) {
          append_frame(PeerHeartbeat{header, body.commit.value()}, out);
        } else if constexpr (std::is_same_v<Body, consensus::HeartbeatResponse>) {
          append_frame(PeerHeartbeatResponse{header}, out);
        } else if constexpr (std::is_same_v<Body, consensus::TimeoutNow>) {
          append_frame(PeerTimeoutNow{header}, out);
        } else if constexpr (std::is_same_v<Body, consensus::StandingQuery>) {
          append_frame(PeerStandingQuery{header}, out);
        } else if constexpr (std::is_same_v<Body, consensus::SnapshotChunk>) {
          append_frame(PeerSnapshotChunk{header, body.position.index.value(), body.position.term.value(), body.size,
                                         body.checksum, body.offset, body.data},
                       out);
        } else if constexpr (std::is_same_v<Body, consensus::SnapshotAck>) {
          append_frame(PeerSnapshotAck{header, body.position.index.value(), body.position.term.value(), body.checksum,
                                       body.received},
                       out);
        } else {
          static_assert(std::is_same_v<Body, consensus::StandingAnswer>);
          append_frame(PeerStandingAnswer{header, body.asker_boot, static_cast<std::uint8_t>(body.standing),
                                          body.leader, body.last_index.value(), body.founded_with_asker},
                       out);
        }
      },
      message.body);
}

Status<std::string> decode_peer_frame(const Frame& frame, consensus::Message& out,
                                      std::vector<consensus::Entry>& spare_entries) {
  switch (frame.header.type) {
    case MessageType::vote_request:
      return decode_into<PeerVoteRequest>(
          frame, out, spare_entries, [&](const PeerVoteRequest& w) -> Status<std::string> {
            out.body = consensus::VoteRequest{LogIndex{w.last_index}, Term{w.last_term}, w.pre_vote, w.transfer};
            return {};
          });
    case MessageType::vote_response:
      return decode_into<PeerVoteResponse>(frame, out, spare_entries,
                                           [&](const PeerVoteResponse& w) -> Status<std::string> {
                                             out.body = consensus::VoteResponse{w.granted, w.pre_vote};
                                             return {};
                                           });
    case MessageType::append_request:
      return decode_into<PeerAppendRequest>(
          frame, out, spare_entries, [&](const PeerAppendRequest& w) -> Status<std::string> {
            // Reuse the entries' vector of the last request decoded into `out`, or the one kept from it.
            if (!std::holds_alternative<consensus::AppendRequest>(out.body)) {
              out.body = consensus::AppendRequest{};
              std::get<consensus::AppendRequest>(out.body).entries.swap(spare_entries);
            }
            auto& request = std::get<consensus::AppendRequest>(out.body);
            request.prev_index = LogIndex{w.prev_index};
            request.prev_term = Term{w.prev_term};
            request.commit = LogIndex{w.commit};
            request.entries.resize(w.entry_count);
            EntryCursor cursor = w.cursor();
            EntryView view;
            for (consensus::Entry& entry : request.entries) {
              if (!cursor.next(view)) return unexpected(std::string("append request: fewer entries than its count"));
              const auto type = static_cast<consensus::EntryType>(view.type);
              if (!consensus::is_known(type))
                return unexpected(fmt::format("append request: entry {} has unknown type {}", view.index, view.type));
              entry.index = LogIndex{view.index};
              entry.term = Term{view.term};
              entry.type = type;
              entry.checksum = view.checksum;
              entry.payload = Payload(view.payload);
            }
            return {};
          });
    case MessageType::append_response:
      return decode_into<PeerAppendResponse>(
          frame, out, spare_entries, [&](const PeerAppendResponse& w) -> Status<std::string> {
            out.body = consensus::AppendResponse{w.success, LogIndex{w.match_index}, LogIndex{w.rejected_prev},
                                                 LogIndex{w.conflict_index}, Term{w.conflict_term}};
            return {};
          });
    case MessageType::heartbeat:
      return decode_into<PeerHeartbeat>(frame, out, spare_entries, [&](const PeerHeartbeat& w) -> Status<std::string> {
        out.body = consensus::Heartbeat{LogIndex{w.commit}};
        return {};
      });
    case MessageType::heartbeat_response:
      return decode_into<PeerHeartbeatResponse>(frame, out, spare_entries,
                                                [&](const PeerHeartbeatResponse&) -> Status<std::string> {
                                                  out.body = consensus::HeartbeatResponse{};
                                                  return {};
                                                });
    case MessageType::timeout_now:
      return decode_into<PeerTimeoutNow>(frame, out, spare_entries, [&](const PeerTimeoutNow&) -> Status<std::string> {
        out.body = consensus::TimeoutNow{};
        return {};
      });
    case MessageType::standing_query:
      return decode_into<PeerStandingQuery>(frame, out, spare_entries,
                                            [&](const PeerStandingQuery&) -> Status<std::string> {
                                              out.body = consensus::StandingQuery{};
                                              return {};
                                            });
    case MessageType::standing_answer:
      return decode_into<PeerStandingAnswer>(
          frame, out, spare_entries, [&](const PeerStandingAnswer& w) -> Status<std::string> {
            // The decoder admits only the three standings there are.
            out.body = consensus::StandingAnswer{w.asker_boot, static_cast<consensus::Standing>(w.standing), w.leader,
                                                 LogIndex{w.last_index}, w.founded_with_asker};
            return {};
          });
    case MessageType::snapshot_chunk:
      return decode_into<PeerSnapshotChunk>(frame, out, spare_entries,
                                            [&](const PeerSnapshotChunk& w) -> Status<std::string> {
                                              if (!std::holds_alternative<consensus::SnapshotChunk>(out.body))
                                                out.body = consensus::SnapshotChunk{};
                                              auto& chunk = std::get<consensus::SnapshotChunk>(out.body);
                                              chunk.position = consensus::LogBase{LogIndex{w.index}, Term{w.term}};
                                              chunk.size = w.size;
                                              chunk.checksum = w.checksum;
                                              chunk.offset = w.offset;
                                              chunk.data.assign(w.data.begin(), w.data.end());
                                              return {};
                                            });
    case MessageType::snapshot_ack:
      return decode_into<
          PeerSnapshotAck>(frame, out, spare_entries, [&](const PeerSnapshotAck& w) -> Status<std::string> {
        out.body = consensus::SnapshotAck{consensus::LogBase{LogIndex{w.index}, Term{w.term}}, w.checksum, w.received};
        return {};
      });
    default: return unexpected(fmt::format("{} is not a consensus message", to_string(frame.header.type)));
  }
}

}  // namespace cohort::node
