// Admin requests: one admin connection, one request, one reply, on a private event loop.

#include "cohort/admin.h"

#include <functional>

#include <fmt/format.h>

#include "io/event_loop.h"
#include "io/tcp_transport.h"
#include "protocol/catalogue.h"

namespace cohort {
namespace {

const char* role_name(protocol::NodeRole role) {
  switch (role) {
    case protocol::NodeRole::follower: return "follower";
    case protocol::NodeRole::pre_candidate: return "pre-candidate";
    case protocol::NodeRole::candidate: return "candidate";
    case protocol::NodeRole::leader: return "leader";
  }
  return "unknown";
}

// One admin exchange: connect, send `request`, wait for one frame of `reply_type`, hand it to `on_reply` (which
// returns an error text, or an empty one), close.
class AdminExchange final : public io::TransportHandler {
 public:
  using OnReply = std::function<std::string(const protocol::Frame&)>;
  AdminExchange(std::vector<std::byte> request, protocol::MessageType reply_type, OnReply on_reply)
      : request_(std::move(request)), reply_type_(reply_type), on_reply_(std::move(on_reply)) {}
  void attach(io::Transport& transport) { transport_ = &transport; }
  bool done() const { return done_; }
  bool ok() const { return done_ && error_.empty(); }
  const std::string& error() const { return error_; }

  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& /*peer*/) override {
    if (transport_->send(id, request_) != io::SendResult::queued) finish("cannot send the request");
  }
  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override {
    if (frame.header.type != reply_type_) return;
    finish(on_reply_(frame));
    transport_->close(id);
  }
  void on_disconnected(io::ConnectionId /*id*/, io::DisconnectReason reason, std::string_view detail) override {
    finish(fmt::format("{}: {}", io::to_string(reason), detail));
  }

 private:
  void finish(std::string error) {
    if (done_) return;
    error_ = std::move(error);
    done_ = true;
  }

  std::vector<std::byte> request_;
  protocol::MessageType reply_type_;
  OnReply on_reply_;
  io::Transport* transport_ = nullptr;
  bool done_ = false;
  std::string error_;
};

// Runs one exchange with the node at `client_endpoint` on a private event loop; returns an error text or "".
template <typename Request>
std::string exchange(const std::string& client_endpoint, std::uint64_t cluster_id, std::chrono::milliseconds timeout,
                     const Request& request, protocol::MessageType reply_type, AdminExchange::OnReply on_reply) {
  auto endpoint = io::parse_endpoint(client_endpoint);
  if (!endpoint) return endpoint.error();
  std::vector<std::byte> frame;
  protocol::append_frame(request, frame);
  io::EventLoop loop;
  AdminExchange query(std::move(frame), reply_type, std::move(on_reply));
  io::TcpTransportConfig config;
  config.identity = protocol::client_identity(cluster_id, protocol::PeerRole::admin);
  config.handshake_timeout = timeout;
  io::TcpTransport transport(loop, config, query);
  query.attach(transport);
  transport.connect(*endpoint);
  if (!loop.run_until([&] { return query.done(); }, timeout) && !query.done())
    return fmt::format("no answer from {} within {} ms", client_endpoint, timeout.count());
  return query.error();
}

}  // namespace

StatusResult query_status(const std::string& client_endpoint, std::uint64_t cluster_id,
                          std::chrono::milliseconds timeout) {
  StatusResult result;
  result.error = exchange(client_endpoint, cluster_id, timeout, protocol::StatusRequest{},
                          protocol::MessageType::status_reply, [&](const protocol::Frame& frame) -> std::string {
                            auto reply = protocol::decode<protocol::StatusReply>(frame);
                            if (!reply) return fmt::format("malformed status reply: {}", reply.error().describe());
                            NodeStatus& status = result.status;
                            status.node_id = reply->node_id;
                            status.role = role_name(reply->role);
                            // The decoder admits these only.
                            static constexpr const char* kStandings[] = {"member", "fresh", "recovering"};
                            status.standing = kStandings[reply->standing];
                            status.leader_id = reply->leader_id;
                            status.entry_faults = reply->entry_faults;
                            status.term = reply->term;
                            status.commit_index = reply->commit_index;
                            status.applied_index = reply->applied_index;
                            status.last_index = reply->last_index;
                            status.state_hash = reply->state_hash;
                            status.open_sessions = reply->open_sessions;
                            status.members.assign(reply->members.view().begin(), reply->members.view().end());
                            status.configuration_id = protocol::configuration_id(reply->members);
                            status.problems.clear();
                            for (std::size_t i = 0; i < reply->problem_count; ++i)
                              status.problems.emplace_back(reply->problems[i]);
                            return {};
                          });
  result.ok = result.error.empty();
  return result;
}

SnapshotResult request_snapshot(const std::string& client_endpoint, std::uint64_t cluster_id,
                                std::chrono::milliseconds timeout) {
  SnapshotResult result;
  result.error = exchange(client_endpoint, cluster_id, timeout, protocol::SnapshotRequest{},
                          protocol::MessageType::snapshot_reply, [&](const protocol::Frame& frame) -> std::string {
                            auto reply = protocol::decode<protocol::SnapshotReply>(frame);
                            if (!reply) return fmt::format("malformed snapshot reply: {}", reply.error().describe());
                            if (reply->status != protocol::SnapshotStatus::written)
                              return fmt::format("the snapshot was not written: {} (the node's log says why)",
                                                 protocol::to_string(reply->status));
                            result.index = reply->index;
                            result.term = reply->term;
                            result.size = reply->size;
                            return {};
                          });
  result.ok = result.error.empty();
  return result;
}

}  // namespace cohort
