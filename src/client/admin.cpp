// query_status: one admin connection, one status_request, one status_reply, on a private event loop.

#include "cohort/admin.h"

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

class StatusQuery final : public io::TransportHandler {
 public:
  explicit StatusQuery(StatusResult& result) : result_(result) {}
  void attach(io::Transport& transport) { transport_ = &transport; }
  bool done() const { return done_; }

  void on_connected(io::ConnectionId id, const protocol::PeerIdentity& /*peer*/) override {
    std::vector<std::byte> frame;
    protocol::append_frame(protocol::StatusRequest{}, frame);
    if (transport_->send(id, frame) != io::SendResult::queued) finish("cannot send the request");
  }
  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override {
    if (frame.header.type != protocol::MessageType::status_reply) return;
    auto reply = protocol::decode<protocol::StatusReply>(frame);
    if (!reply) return finish(fmt::format("malformed status reply: {}", reply.error().describe()));
    NodeStatus& status = result_.status;
    status.node_id = reply->node_id;
    status.role = role_name(reply->role);
    static constexpr const char* kStandings[] = {"member", "fresh", "recovering"};  // the decoder admits these only
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
    for (std::size_t i = 0; i < reply->problem_count; ++i) status.problems.emplace_back(reply->problems[i]);
    result_.ok = true;
    done_ = true;
    transport_->close(id);
  }
  void on_disconnected(io::ConnectionId /*id*/, io::DisconnectReason reason, std::string_view detail) override {
    finish(fmt::format("{}: {}", io::to_string(reason), detail));
  }

 private:
  void finish(std::string error) {
    if (done_) return;
    result_.error = std::move(error);
    done_ = true;
  }

  StatusResult& result_;
  io::Transport* transport_ = nullptr;
  bool done_ = false;
};

}  // namespace

StatusResult query_status(const std::string& client_endpoint, std::uint64_t cluster_id,
                          std::chrono::milliseconds timeout) {
  StatusResult result;
  auto endpoint = io::parse_endpoint(client_endpoint);
  if (!endpoint) {
    result.error = endpoint.error();
    return result;
  }
  io::EventLoop loop;
  StatusQuery query(result);
  io::TcpTransportConfig config;
  config.identity = protocol::client_identity(cluster_id, protocol::PeerRole::admin);
  config.handshake_timeout = timeout;
  io::TcpTransport transport(loop, config, query);
  query.attach(transport);
  transport.connect(*endpoint);
  if (!loop.run_until([&] { return query.done(); }, timeout) && !result.ok && result.error.empty())
    result.error = fmt::format("no answer from {} within {} ms", client_endpoint, timeout.count());
  return result;
}

}  // namespace cohort
