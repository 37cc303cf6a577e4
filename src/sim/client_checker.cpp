#include "sim/client_checker.h"

#include <algorithm>
#include <type_traits>
#include <utility>
#include <variant>

namespace cohort::sim {

namespace {
double seconds(Time time) { return std::chrono::duration<double>(time).count(); }
}  // namespace

ClientChecker::ClientChecker(Checker& checker, Duration session_timeout, std::size_t window_messages)
    : checker_(checker), session_timeout_(session_timeout), window_messages_(window_messages) {}

ClientChecker::Instance* ClientChecker::instance(std::uint64_t id, const char* what) {
  const auto it = instances_.find(id);
  if (it != instances_.end()) return &it->second;
  checker_.fail(fmt::format("{} names client {}, which never existed", what, id));
  return nullptr;
}

// --- the clients ------------------------------------------------------------------------------------------------

void ClientChecker::on_client_started(std::uint64_t instance, host::Id128 client_id, std::uint32_t slot,
                                      ClientSettings settings, Time now) {
  Instance& client = instances_[instance];
  client.client_id = client_id;
  client.slot = slot;
  client.settings = settings;
  client.started = now;
  client.not_connected_since = now;
  by_client_id_[client_id] = instance;
}

void ClientChecker::on_close_requested(std::uint64_t instance) {
  if (Instance* client = this->instance(instance, "a close")) client->close_requested = true;
}

bool ClientChecker::closed(std::uint64_t instance) const {
  const auto it = instances_.find(instance);
  return it != instances_.end() && it->second.closed;
}

void ClientChecker::after_events(std::uint64_t instance, bool closed, Time now) {
  Instance* found = this->instance(instance, "a batch of events");
  if (found == nullptr) return;
  Instance& client = *found;
  if (!client.unknown_batch.empty() && !client.closed)
    return checker_.fail(fmt::format(
        "client {} seq {} has the fate unknown, but the client did not close with it (and every tombstone is kept)",
        instance, client.unknown_batch.front()));
  client.unknown_batch.clear();
  if (closed != client.closed)
    return checker_.fail(fmt::format("client {} is {}closed, but it {} so", instance, closed ? "" : "not ",
                                     closed ? "never said" : "said"));
  const Duration give_up = client.settings.give_up_after;
  if (!closed && !client.connected && give_up > Duration{0} &&
      now - client.not_connected_since > give_up + kDeadlineSlack)
    return checker_.fail(fmt::format(
        "client {} has had no session since {:.3f} s, past its give-up deadline of {:.1f} s, and is still open",
        instance, seconds(client.not_connected_since), seconds(Time{give_up})));
}

void ClientChecker::on_cut_off(std::uint32_t slot, bool cut, Time now) {
  auto& [since, healed] = cut_offs_.try_emplace(slot, Time::max(), Time{0}).first->second;
  if (cut) {
    // Cut off on its way back from a blackout: its session may expire meanwhile; not timed.
    for (auto& [id, client] : instances_)
      if (client.slot == slot) client.blackout_session.reset();
    since = std::min(since, now);
  } else if (since != Time::max()) {
    since = Time::max();
    healed = now;
  }
}

void ClientChecker::on_client_gone(std::uint64_t instance, Time now) {
  Instance* client = this->instance(instance, "a restart");
  if (client == nullptr) return;
  touch(*client, now);
  client->gone = true;
  client->gone_at = now;
  client->connected = false;
  client->blackout_session.reset();
}

void ClientChecker::on_accepted(std::uint64_t instance, std::uint64_t seq) {
  Instance* client = this->instance(instance, "an offer");
  if (client == nullptr) return;
  if (seq != client->accepted + 1)
    return checker_.fail(fmt::format("client {} accepts seq {} after seq {}", instance, seq, client->accepted));
  if (client->closed || client->close_requested)
    return checker_.fail(fmt::format("client {} accepts seq {} after its application closed it", instance, seq));
  client->accepted = seq;
  client->seqs.emplace_back();
}

void ClientChecker::touch(const Instance& client, Time now) {
  if (!client.connected || client.session == 0) return;
  sessions_[client.session].alive_at = now;
}

void ClientChecker::set_fate(std::uint64_t id, Instance& client, std::uint64_t seq, Fate fate,
                             const std::string& reason) {
  static constexpr const char* kNames[] = {"none", "applied", "rejected", "unknown"};
  if (seq == 0 || seq > client.accepted)
    return checker_.fail(fmt::format("client {} hears the fate {} of seq {}, which it never accepted ({})", id,
                                     kNames[static_cast<int>(fate)], seq, reason));
  Fate& current = client.seqs[seq - 1].fate;
  if (current != Fate::none)
    return checker_.fail(fmt::format("client {} seq {} gets a second fate: {} after {} ({})", id, seq,
                                     kNames[static_cast<int>(fate)], kNames[static_cast<int>(current)], reason));
  current = fate;
}

void ClientChecker::on_client_event(std::uint64_t instance, const client::Event& event, Time now) {
  Instance* found = this->instance(instance, "an event of a client");
  if (found == nullptr) return;
  Instance& client = *found;
  std::visit(
      [&](const auto& e) {
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, client::StateEvent>) {
          touch(client, now);
          if (client.closed)
            return checker_.fail(fmt::format("client {} is {} after it closed", instance, to_string(e.state)));
          const bool was_connected = client.connected;
          client.connected = e.state == ClientState::connected;
          if (client.connected) {
            client.ever_connected = true;
          } else if (was_connected) {
            client.not_connected_since = now;
          }
          if (e.state == ClientState::closed) on_closed(instance, client, e, now);
        } else if constexpr (std::is_same_v<E, client::SessionEvent>) {
          on_session(instance, client, e, now);
        } else if constexpr (std::is_same_v<E, client::AppliedEvent>) {
          if (e.seq >= 1 && e.seq <= client.accepted && client.seqs[e.seq - 1].applied_in == 0)
            return checker_.fail(
                fmt::format("client {} seq {} is acknowledged applied (at position {}), but no replica applied it",
                            instance, e.seq, e.position));
          set_fate(instance, client, e.seq, Fate::applied, "applied");
          if (e.seq >= 1 && e.seq <= client.accepted) {
            client.seqs[e.seq - 1].acked_in = epoch_;
            client.seqs[e.seq - 1].acked_session = client.session;
          }
        } else if constexpr (std::is_same_v<E, client::RejectedEvent>) {
          // Applied before a power loss that took it away again is not applied: only this epoch's count.
          if (e.seq >= 1 && e.seq <= client.accepted && client.seqs[e.seq - 1].applied_in == epoch_ + 1)
            return checker_.fail(
                fmt::format("client {} seq {} is rejected ({}), but a replica applied it", instance, e.seq, e.text));
          set_fate(instance, client, e.seq, Fate::rejected, e.text);
        } else if constexpr (std::is_same_v<E, client::UnknownEvent>) {
          set_fate(instance, client, e.seq, Fate::unknown, e.text);
          // A session and its tombstone gone with the log (a power loss): whether it was applied is unknown. Else
          // only a close explains it, in the same batch of events (after_events).
          if (e.reason == Reason::session_replaced && epoch_ > 0) return;
          if (e.reason != Reason::closed_by_application && e.reason != Reason::give_up_deadline &&
              e.reason != Reason::connect_deadline && !(e.reason == Reason::another_incarnation && epoch_ > 0))
            return checker_.fail(
                fmt::format("client {} seq {} has the fate unknown ({}: {}), but every tombstone "
                            "is still kept and no close explains it",
                            instance, e.seq, to_string(e.reason), e.text));
          client.unknown_batch.push_back(e.seq);
        } else if constexpr (std::is_same_v<E, client::EgressEvent>) {
          on_egress(instance, client, e);
        } else if constexpr (std::is_same_v<E, client::EgressGapEvent>) {
          client.gap = e;
        } else if constexpr (std::is_same_v<E, client::ConnectFailedEvent>) {
          // Another incarnation: only a cluster re-formed after a power loss took its whole log (on_closed).
          if (e.reason == Reason::node_misconfigured || e.reason == Reason::another_cluster ||
              (e.reason == Reason::another_incarnation && epoch_ == 0) || e.reason == Reason::incompatible_version)
            checker_.fail(fmt::format("client {} refuses node at {}: {}", instance, e.endpoint, e.text));
        } else if constexpr (std::is_same_v<E, client::DataLossEvent>) {
          on_data_loss(instance, client, e);
        } else if constexpr (std::is_same_v<E, client::EgressLostEvent>) {
          if (epoch_ == 0)
            return checker_.fail(
                fmt::format("client {} hears egress {}-{} lost, but no power loss of every node "
                            "happened",
                            instance, e.from, e.to));
          // The session's egress went back with its log: the next egress carries a seq the client was handed before.
          client.egress_rewound = true;
        }
      },
      event);
}

void ClientChecker::on_closed(std::uint64_t id, Instance& client, const client::StateEvent& event, Time now) {
  const Duration away = now - client.not_connected_since;
  bool explained = false;
  switch (event.reason) {
    case Reason::closed_by_application: explained = client.close_requested; break;
    case Reason::give_up_deadline:
      explained = client.settings.give_up_after > Duration{0} && away >= client.settings.give_up_after;
      break;
    case Reason::connect_deadline:
      explained = client.settings.connect_timeout > Duration{0} && !client.ever_connected &&
                  now - client.started >= client.settings.connect_timeout;
      break;
    case Reason::another_incarnation:
      // A power loss before the first segment was complete can take the whole log, the cluster's incarnation with
      // it: the cluster the nodes then form is a new one, and the client rightly refuses to go on in it.
      explained = epoch_ > 0;
      break;
    default: break;
  }
  if (!explained)
    return checker_.fail(
        fmt::format("client {} closes ({}: {}), but {}", id, to_string(event.reason), event.text,
                    event.reason == Reason::closed_by_application ? "its application never closed it"
                    : event.reason == Reason::give_up_deadline
                        ? fmt::format("it had been without a session for {:.3f} s only (give_up_after {:.1f} s)",
                                      seconds(Time{away}), seconds(Time{client.settings.give_up_after}))
                    : event.reason == Reason::connect_deadline
                        ? fmt::format("its connect deadline ({:.1f} s) had not passed without a session",
                                      seconds(Time{client.settings.connect_timeout}))
                        : std::string("nothing in a run may close a client for that")));
  for (std::uint64_t seq = 1; seq <= client.accepted; ++seq)
    if (client.seqs[seq - 1].fate == Fate::none)
      return checker_.fail(
          fmt::format("client {} closes ({}) with seq {} still without a fate", id, to_string(event.reason), seq));
  client.closed = true;
  if (event.reason == Reason::closed_by_application) ++closes_by_application_;
  if (event.reason == Reason::give_up_deadline || event.reason == Reason::connect_deadline) ++closes_by_deadline_;
  // Its session, if the close did not end it on the cluster, is abandoned: it must expire, like a restarted client's.
  client.gone = true;
  client.gone_at = now;
  client.blackout_session.reset();
}

void ClientChecker::on_data_loss(std::uint64_t id, Instance& client, const client::DataLossEvent& event) {
  if (epoch_ == 0)
    return checker_.fail(fmt::format("client {} hears seqs {}-{} lost, but no power loss of every node happened", id,
                                     event.from, event.to));
  if (event.from == 0 || event.from > event.to || event.to > client.accepted)
    return checker_.fail(fmt::format("client {} hears seqs {}-{} lost, of which it accepted only up to {}", id,
                                     event.from, event.to, client.accepted));
  for (std::uint64_t seq = event.from; seq <= event.to; ++seq) {
    Seq& entry = client.seqs[seq - 1];
    if (entry.fate != Fate::applied)
      return checker_.fail(fmt::format("client {} hears seq {} lost (of {}-{}), which it was never told applied", id,
                                       seq, event.from, event.to));
    if (entry.lost)
      return checker_.fail(
          fmt::format("client {} hears seq {} lost a second time (in {}-{})", id, seq, event.from, event.to));
    entry.lost = true;
    ++seqs_lost_;
  }
}

bool ClientChecker::reported_lost(std::uint64_t instance, std::uint64_t from, std::uint64_t to) const {
  const auto it = instances_.find(instance);
  if (it == instances_.end() || from == 0 || to > it->second.accepted) return false;
  for (std::uint64_t seq = from; seq <= to; ++seq)
    if (!it->second.seqs[seq - 1].lost) return false;
  return true;
}

void ClientChecker::on_session(std::uint64_t id, Instance& client, const client::SessionEvent& event, Time now) {
  touch(client, now);
  const SessionId previous = client.session;
  switch (event.change) {
    case SessionChange::opened:
      if (!client.sessions.empty())
        return checker_.fail(fmt::format("client {} hears session {} opened as its first, after session {}", id,
                                         event.session, previous));
      break;
    case SessionChange::resumed:
      if (event.session != previous)
        return checker_.fail(
            fmt::format("client {} hears session {} resumed, but its session was {}", id, event.session, previous));
      sessions_[event.session].resumed_in = epoch_;
      break;
    case SessionChange::replaced:
      // A power loss since the session was given may have taken it with the log (its open, or its close); then its
      // id may already name another client's new session (reused after the loss: sessions_ holds that one now).
      if (previous == 0 || event.session == previous ||
          (!sessions_[previous].closed && sessions_[previous].epoch == epoch_ && sessions_[previous].instance == id))
        return checker_.fail(
            fmt::format("client {} hears session {} replace session {}, which the cluster did not close", id,
                        event.session, previous));
      break;
  }
  if (client.blackout_session) {
    // The first session after the blackout's quorum was back: the same one, soon.
    const SessionId expected = *client.blackout_session;
    client.blackout_session.reset();
    if (event.change != SessionChange::resumed || event.session != expected)
      return checker_.fail(fmt::format("after the blackout, client {} hears session {} {}, not session {} resumed", id,
                                       event.session, to_string(event.change), expected));
    const Duration took = now - *blackout_quorum_;
    if (!blackout_disturbed_) blackout_reconnects_.push_back(took);
    if (!blackout_disturbed_ && took > kBlackoutReconnectLimit)
      return checker_.fail(fmt::format(
          "liveness: client {} resumes its session {:.3f} s after a quorum was back from the blackout (at most {:.0f} "
          "s)",
          id, seconds(Time{took}), seconds(Time{kBlackoutReconnectLimit})));
  }
  Session& session = sessions_[event.session];
  if (session.instance != 0 && session.instance != id && session.epoch == epoch_)
    return checker_.fail(
        fmt::format("client {} is given session {}, which client {} opened", id, event.session, session.instance));
  // An id from before a power loss, whose open was lost with the log, given out again (to this client or another):
  // a new session.
  if (session.instance != 0 && session.epoch != epoch_ &&
      (session.instance != id || event.change != SessionChange::resumed))
    session = Session{};
  session.instance = id;
  session.epoch = epoch_;
  if (event.change != SessionChange::resumed) client.sessions.push_back(event.session);
  client.session = event.session;
  client.gap.reset();
}

void ClientChecker::on_egress(std::uint64_t id, Instance& client, const client::EgressEvent& egress) {
  if (client.session == 0)
    return checker_.fail(fmt::format("client {} is handed egress seq {} before any session", id, egress.egress_seq));
  Session& session = sessions_[client.session];
  const auto sent = session.egress.find(egress.egress_seq);
  if (sent == session.egress.end())
    return checker_.fail(fmt::format("client {} is handed egress seq {} of session {}, which no service sent", id,
                                     egress.egress_seq, client.session));
  // After a data loss the session's egress starts again from where the cluster's log ends: once.
  if (std::exchange(client.egress_rewound, false) && egress.egress_seq <= session.delivered) {
    session.delivered = egress.egress_seq - 1;
    client.gap.reset();
  }
  if (sent->second.bytes != egress.message)
    return checker_.fail(
        fmt::format("client {} is handed egress seq {} of session {} with other bytes than the "
                    "service sent",
                    id, egress.egress_seq, client.session));
  if (egress.egress_seq <= session.delivered)
    return checker_.fail(
        fmt::format("client {} is handed egress seq {} of session {} after seq {}: not once and in order", id,
                    egress.egress_seq, client.session, session.delivered));
  const std::optional<client::EgressGapEvent> gap = std::exchange(client.gap, std::nullopt);
  if (egress.egress_seq != session.delivered + 1) {
    if (!gap || gap->from != session.delivered + 1 || gap->to + 1 != egress.egress_seq)
      return checker_.fail(fmt::format(
          "an egress skipped: client {} is handed egress seq {} of session {} right after seq {}, and no gap was "
          "reported",
          id, egress.egress_seq, client.session, session.delivered));
    // The window holds a session's newest window_messages_ egress, so what the client missed is lost only if the
    // session had sent that many more by its resume (and the newest sent so far bounds what it had sent then).
    const std::uint64_t newest = session.egress.rbegin()->first;
    if (gap->to + window_messages_ > newest)
      return checker_.fail(fmt::format(
          "an egress skipped: client {} hears egress {}-{} of session {} lost, but the window of {} messages still "
          "held them (newest sent: {})",
          id, gap->from, gap->to, client.session, window_messages_, newest));
  }
  session.delivered = egress.egress_seq;
}

// --- the replicas -----------------------------------------------------------------------------------------------

void ClientChecker::on_applied(NodeId node, RequestId request) {
  Instance* client = instance(request.instance, "an applied request");
  if (client == nullptr) return;
  if (request.seq == 0 || request.seq > client->accepted)
    return checker_.fail(fmt::format("node {} applies seq {} of client {}, which it never accepted", node.value(),
                                     request.seq, request.instance));
  if (client->seqs[request.seq - 1].fate == Fate::rejected)
    return checker_.fail(fmt::format("node {} applies seq {} of client {}, which the client heard was rejected",
                                     node.value(), request.seq, request.instance));
  client->seqs[request.seq - 1].applied_in = epoch_ + 1;
}

void ClientChecker::on_host_output(const host::HostOutput& output) {
  if (const auto* opened = std::get_if<host::SessionOpened>(&output)) {
    const auto owner = by_client_id_.find(opened->client);
    const std::uint64_t instance = owner == by_client_id_.end() ? 0 : owner->second;
    const auto [it, inserted] = sessions_.try_emplace(opened->session);
    Session& session = it->second;
    if (session.instance != 0 && session.instance != instance) {
      if (session.epoch == epoch_)
        return checker_.fail(fmt::format("session {} of client {} is opened for client {}", opened->session,
                                         session.instance, instance));
      session = Session{};  // its id was lost with the log in a power loss, and is a new session's now
    }
    if (inserted) session.epoch = epoch_;
    // A new session's activity is the stamp of the open that created it, which some leader appended when it got
    // one of the client's opens (maybe long before it is applied, and maybe an earlier open than the last): no
    // moment of life is known from the open alone. Its client's being connected in it is (touch()).
    session.instance = instance;
  } else if (const auto* egress = std::get_if<host::EgressOut>(&output)) {
    auto& sent = sessions_[egress->session].egress;
    const auto [it, inserted] = sent.try_emplace(egress->egress_seq, Sent{egress->message.to_vector(), epoch_});
    if (!inserted && !std::ranges::equal(it->second.bytes, egress->message)) {
      // Sent before a power loss that took it away with the log: its seq is sent again, for another message.
      if (it->second.epoch < epoch_)
        it->second = Sent{egress->message.to_vector(), epoch_};
      else
        checker_.fail(fmt::format("replicas' services send different egress seq {} in session {}", egress->egress_seq,
                                  egress->session));
    }
  } else if (const auto* ended = std::get_if<host::SessionEnded>(&output)) {
    sessions_[ended->session].closed = true;
  }
}

void ClientChecker::on_timeout_close(NodeId node, SessionId id, Term term, Time now) {
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.instance == 0) return;  // the simulator's own probes have no client
  Session& session = it->second;
  if (session.closed) return;  // checked on the replica that applied it first
  session.closed = true;
  Instance& client = instances_.at(session.instance);
  touch(client, now);
  const auto elected = leader_since_.find(term.value());
  const Time renewed = elected == leader_since_.end() ? Time{0} : elected->second;
  const Time away_since = std::max(session.alive_at, renewed);
  if (now >= away_since + session_timeout_ - kExpirySlack) {
    // Away for long enough, but something must have kept it away within the session timeout (and the slack) before
    // the decision: a cut-off, a restart, or a partition. The decision was taken while its leader led, so at or after
    // its election, and it may be applied much later (its commit waits for the cluster): whatever kept the client
    // away counts from the timeout before that election on.
    const auto cut = cut_offs_.find(client.slot);
    const Time since = std::min(now, renewed) - (session_timeout_ + kExpirySlack);
    const bool cut_off = cut != cut_offs_.end() && (cut->second.first != Time::max() || cut->second.second >= since);
    const bool partition = partitioned_ || partition_healed_ >= since;
    if (client.gone || cut_off || partition) return;
    return checker_.fail(fmt::format(
        "expired a live client: node {} closes session {} of client {} by timeout (decided in term {}), but the "
        "client was neither cut off nor restarted, and no partition could strand it, from {:.3f} s on (the session "
        "timeout of {:.1f} s and {:.0f} s of slack before the leader of term {} was elected); it was last connected in "
        "it at {:.3f} s",
        node.value(), id, session.instance, term.value(), seconds(since), seconds(session_timeout_),
        seconds(kExpirySlack), term.value(), seconds(session.alive_at)));
  }
  checker_.fail(fmt::format(
      "expired a live client: node {} closes session {} of client {} by timeout (decided in term {}), but its client "
      "was {} in it at {:.3f} s and the leader of term {} renewed every session at {:.3f} s: less than the session "
      "timeout of {:.1f} s (less {:.0f} s of slack) before",
      node.value(), id, session.instance, term.value(),
      client.gone ? "last connected (before it restarted)" : "last connected", seconds(session.alive_at), term.value(),
      seconds(renewed), seconds(session_timeout_), seconds(kExpirySlack)));
}

void ClientChecker::on_leader(Term term, Time now) { leader_since_.try_emplace(term.value(), now); }

void ClientChecker::on_power_loss(Time /*now*/) { ++epoch_; }

void ClientChecker::on_blackout(Time quorum_back) {
  blackout_quorum_ = quorum_back;
  for (auto& [id, client] : instances_) {
    if (client.gone || client.closed || client.close_requested || client.session == 0 ||
        client.settings.give_up_after > Duration{0})
      continue;
    const auto cut = cut_offs_.find(client.slot);
    if (cut != cut_offs_.end() && cut->second.first != Time::max()) continue;
    client.blackout_session = client.session;
  }
}

void ClientChecker::on_partition(bool partitioned, Time now) {
  if (partitioned_ && !partitioned) partition_healed_ = now;
  partitioned_ = partitioned;
  if (partitioned) on_node_stopped(now);
}

void ClientChecker::on_node_stopped(Time now) {
  if (blackout_quorum_ && now >= *blackout_quorum_) blackout_disturbed_ = true;
}

// --- the end ----------------------------------------------------------------------------------------------------

std::optional<SessionId> ClientChecker::abandoned_open(const host::ServiceHost& leader) const {
  for (const auto& [id, session] : sessions_) {
    if (session.instance == 0 || session.closed || !instances_.at(session.instance).gone) continue;
    if (leader.session_open(id)) return id;
  }
  return std::nullopt;
}

}  // namespace cohort::sim
