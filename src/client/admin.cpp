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
// returns an error text, or an empty one), then close; or, with `wait_for_close`, wait until the node closes the
// connection (a shutdown: the node's process is gone).
class AdminExchange final : public io::TransportHandler {
 public:
  using OnReply = std::function<std::string(const protocol::Frame&)>;
  AdminExchange(std::vector<std::byte> request, protocol::MessageType reply_type, OnReply on_reply, bool wait_for_close)
      : request_(std::move(request)),
        reply_type_(reply_type),
        on_reply_(std::move(on_reply)),
        wait_for_close_(wait_for_close) {}
  void attach(io::Transport& transport) { transport_ = &transport; }
  bool done() const { return done_; }
  bool replied() const { return replied_; }
  const std::string& error() const { return error_; }

  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& /*peer*/) override {
    if (transport_->send(id, request_) != io::SendResult::queued) finish("cannot send the request");
  }
  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override {
    if (frame.header.type != reply_type_ || replied_) return;
    replied_ = true;
    std::string error = on_reply_(frame);
    if (wait_for_close_ && error.empty()) return;  // on_disconnected finishes it
    finish(std::move(error));
    transport_->close(id);
  }
  void on_disconnected(io::ConnectionId /*id*/, io::DisconnectReason reason, std::string_view detail) override {
    if (wait_for_close_ && replied_) return finish("");
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
  bool wait_for_close_;
  io::Transport* transport_ = nullptr;
  bool replied_ = false;
  bool done_ = false;
  std::string error_;
};

// Runs one exchange with the node at `endpoint` on a private event loop; returns an error text or "".
template <typename Request>
std::string exchange(const std::string& endpoint, std::uint64_t cluster_id, std::chrono::milliseconds timeout,
                     const Request& request, protocol::MessageType reply_type, AdminExchange::OnReply on_reply,
                     bool wait_for_close = false) {
  auto parsed = io::parse_endpoint(endpoint);
  if (!parsed) return parsed.error();
  std::vector<std::byte> frame;
  protocol::append_frame(request, frame);
  io::EventLoop loop;
  AdminExchange query(std::move(frame), reply_type, std::move(on_reply), wait_for_close);
  io::TcpTransportConfig config;
  config.identity = protocol::client_identity(cluster_id, protocol::PeerRole::admin);
  config.handshake_timeout = timeout;
  io::TcpTransport transport(loop, config, query);
  query.attach(transport);
  transport.connect(*parsed);
  if (!loop.run_until([&] { return query.done(); }, timeout) && !query.done()) {
    if (query.replied())
      return fmt::format("{} said it stops, but had not exited {} ms after the request", endpoint, timeout.count());
    return fmt::format("no answer from {} within {} ms", endpoint, timeout.count());
  }
  return query.error();
}

// An admin command's exchange: the reply's outcome and text become the result.
AdminResult command(const AdminTarget& node, protocol::AdminCommand what, std::uint32_t target) {
  AdminResult result;
  protocol::AdminRequest request;
  request.command = what;
  request.node_id = node.node_id;
  request.target = target;
  if (node.credential.size() > protocol::kMaxCredentialLength) {
    result.error = fmt::format("the credential is longer than {} bytes", protocol::kMaxCredentialLength);
    return result;
  }
  request.credential = as_bytes(std::string_view(node.credential));
  const bool shutdown = what == protocol::AdminCommand::shutdown;
  result.error = exchange(
      node.endpoint, node.cluster_id, node.timeout, request, protocol::MessageType::admin_reply,
      [&](const protocol::Frame& frame) -> std::string {
        auto reply = protocol::decode<protocol::AdminReply>(frame);
        if (!reply) return fmt::format("malformed admin reply: {}", reply.error().describe());
        result.node_id = reply->node_id;
        result.leader_id = reply->leader_id;
        result.index = reply->index;
        result.term = reply->term;
        result.size = reply->size;
        if (reply->outcome == protocol::AdminOutcome::done) return {};
        // A node already stopping (a SIGTERM first) is where a shutdown leads: wait for it to exit all the same.
        if (shutdown && reply->outcome == protocol::AdminOutcome::stopping) return {};
        const std::string why =
            reply->text.empty() ? std::string(protocol::to_string(reply->outcome)) : std::string(reply->text);
        if (reply->outcome == protocol::AdminOutcome::not_leader)
          return reply->leader_id != 0 ? fmt::format("{}; the leader is node {}", why, reply->leader_id)
                                       : fmt::format("{}; no leader is known", why);
        return fmt::format("{}: {}", protocol::to_string(reply->outcome), why);
      },
      shutdown);
  result.ok = result.error.empty();
  return result;
}

}  // namespace

StatusResult query_status(const std::string& endpoint, std::uint64_t cluster_id, std::chrono::milliseconds timeout,
                          bool with_state_hash) {
  StatusResult result;
  protocol::StatusRequest request;
  request.state_hash = with_state_hash;
  result.error = exchange(endpoint, cluster_id, timeout, request, protocol::MessageType::status_reply,
                          [&](const protocol::Frame& frame) -> std::string {
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
                            status.state_hash_included = reply->state_hash_included;
                            status.open_sessions = reply->open_sessions;
                            status.snapshot_index = reply->snapshot_index;
                            status.snapshot_term = reply->snapshot_term;
                            status.uptime = std::chrono::milliseconds(reply->uptime_ms);
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

AdminResult request_snapshot(const AdminTarget& node) { return command(node, protocol::AdminCommand::snapshot, 0); }

AdminResult transfer_leadership(const AdminTarget& leader, std::uint32_t to) {
  return command(leader, protocol::AdminCommand::transfer_leadership, to);
}

AdminResult request_shutdown(const AdminTarget& node) { return command(node, protocol::AdminCommand::shutdown, 0); }

}  // namespace cohort
