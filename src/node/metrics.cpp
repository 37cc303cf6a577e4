#include "node/metrics.h"

#include <exception>
#include <utility>

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "io/transport.h"

namespace cohort::node {
namespace {

// 10 us to 1 s: a fast disk's fsync and a loop turn at the low end, a stalled disk or a long snapshot at the high.
prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0};
}

double seconds(std::chrono::nanoseconds took) { return std::chrono::duration<double>(took).count(); }

// A counter fed from a total the node keeps: the registry is told only what was added since the last publish.
struct CounterFeed {
  prometheus::Counter* counter = nullptr;
  std::uint64_t published = 0;

  void feed(std::uint64_t total) {
    if (total <= published) return;
    counter->Increment(static_cast<double>(total - published));
    published = total;
  }
};

}  // namespace

struct NodeMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  prometheus::Labels node_label;

  prometheus::Gauge* role = nullptr;
  prometheus::Gauge* leader = nullptr;
  prometheus::Gauge* term = nullptr;
  prometheus::Gauge* commit_index = nullptr;
  prometheus::Gauge* applied_index = nullptr;
  prometheus::Gauge* last_index = nullptr;
  prometheus::Gauge* sessions_open = nullptr;
  std::vector<prometheus::Gauge*> follower_lag;  // in start()'s order of the other members
  CounterFeed elections_started, elections_won, sessions_opened, sessions_expired, ingress_messages, ingress_bytes,
      egress_messages, egress_bytes, redirects, back_pressure, snapshots_taken, snapshots_installed, storage_errors;
  prometheus::Histogram* append = nullptr;
  prometheus::Histogram* fsync = nullptr;
  prometheus::Histogram* commit = nullptr;
  prometheus::Histogram* apply = nullptr;

  prometheus::Gauge* gauge(const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add(node_label);
  }
  CounterFeed counter(const char* name, const char* help) {
    return CounterFeed{&prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add(node_label), 0};
  }
  prometheus::Histogram* histogram(const char* name, const char* help) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry).Add(node_label, latency_buckets());
  }
};

Result<std::unique_ptr<NodeMetrics>, std::string> NodeMetrics::start(const std::string& address, std::uint32_t node_id,
                                                                     const std::vector<std::uint32_t>& others) {
  auto endpoint = io::parse_endpoint(address);
  if (!endpoint) return unexpected(endpoint.error());
  auto resolved = io::resolve_for_listening(*endpoint);
  if (!resolved) return unexpected(resolved.error());
  auto impl = std::make_unique<Impl>();
  impl->node_label = {{"node", std::to_string(node_id)}};
  const bool v6 = resolved->host.find(':') != std::string::npos;
  const std::string bind = v6 ? fmt::format("[{}]:{}", resolved->host, resolved->port)
                              : fmt::format("{}:{}", resolved->host, resolved->port);
  try {
    // One serving thread: a scrape every few seconds needs no more, and the node's CPUs are the loop's.
    impl->exposer = std::make_unique<prometheus::Exposer>(bind, 1);
  } catch (const std::exception& error) {
    return unexpected(fmt::format("cannot serve metrics on {}: {}", address, error.what()));
  }
  const std::vector<int> ports = impl->exposer->GetListeningPorts();
  if (ports.empty()) return unexpected(fmt::format("cannot serve metrics on {}: nothing bound", address));
  Impl& m = *impl;
  m.role = m.gauge("cohort_role", "This node's role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader");
  m.leader = m.gauge("cohort_leader", "1 while this node leads, else 0");
  m.term = m.gauge("cohort_term", "This node's current term");
  m.elections_started =
      m.counter("cohort_elections_started_total", "Elections this node stood in as a candidate (each in a new term)");
  m.elections_won = m.counter("cohort_elections_won_total", "Elections this node won");
  m.commit_index = m.gauge("cohort_commit_index", "The highest log index this node knows committed");
  m.applied_index = m.gauge("cohort_applied_index", "The highest log index this node's service has applied");
  m.last_index = m.gauge("cohort_last_index", "The index of this node's last log entry");
  auto& lag = prometheus::BuildGauge()
                  .Name("cohort_follower_lag_entries")
                  .Help("While this node leads: the entries of its log a follower does not hold yet")
                  .Register(*m.registry);
  for (const std::uint32_t other : others)
    m.follower_lag.push_back(&lag.Add({{"node", std::to_string(node_id)}, {"follower", std::to_string(other)}}));
  m.append = m.histogram("cohort_append_seconds", "Time to write one group of log records (before any fsync)");
  m.fsync = m.histogram("cohort_fsync_seconds", "Time of one fdatasync of the log (sync policy fsync)");
  m.commit = m.histogram("cohort_commit_seconds",
                         "Leader: from appending a batch of entries to knowing it committed (per batch)");
  m.apply = m.histogram("cohort_apply_seconds", "Time of one loop turn's applying of committed entries");
  m.sessions_open = m.gauge("cohort_sessions_open", "Client sessions open in the replicated state");
  m.sessions_opened = m.counter("cohort_sessions_opened_total", "New client sessions this node applied");
  m.sessions_expired =
      m.counter("cohort_sessions_expired_total", "Client sessions this node applied the close of by timeout");
  m.ingress_messages =
      m.counter("cohort_ingress_messages_total", "Client messages this node appended to the log (as leader)");
  m.ingress_bytes = m.counter("cohort_ingress_bytes_total", "Payload bytes of those messages");
  m.egress_messages = m.counter("cohort_egress_messages_total", "Egress messages sent to clients (resends included)");
  m.egress_bytes = m.counter("cohort_egress_bytes_total", "Payload bytes of those messages");
  m.redirects = m.counter("cohort_redirects_total", "Session opens this node sent to the leader");
  m.back_pressure = m.counter("cohort_back_pressure_events_total",
                              "Session opens answered busy, and pauses of reading client connections");
  m.snapshots_taken = m.counter("cohort_snapshots_taken_total", "Snapshots this node wrote of its own state");
  m.snapshots_installed = m.counter("cohort_snapshots_installed_total", "Snapshots this node installed from a leader");
  m.storage_errors = m.counter("cohort_storage_errors_total",
                               "Failed writes: a log write stops the node, a snapshot write is tried again later");
  impl->exposer->RegisterCollectable(impl->registry);
  const std::string served =
      v6 ? fmt::format("[{}]:{}", resolved->host, ports.front()) : fmt::format("{}:{}", resolved->host, ports.front());
  return std::unique_ptr<NodeMetrics>(new NodeMetrics(std::move(impl), served));
}

NodeMetrics::NodeMetrics(std::unique_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

NodeMetrics::~NodeMetrics() = default;

void NodeMetrics::publish(const MetricValues& v) {
  Impl& m = *impl_;
  m.role->Set(v.role);
  m.leader->Set(v.role == 3 ? 1 : 0);
  m.term->Set(static_cast<double>(v.term));
  m.commit_index->Set(static_cast<double>(v.commit_index));
  m.applied_index->Set(static_cast<double>(v.applied_index));
  m.last_index->Set(static_cast<double>(v.last_index));
  m.sessions_open->Set(static_cast<double>(v.sessions_open));
  m.elections_started.feed(v.elections_started);
  m.elections_won.feed(v.elections_won);
  m.sessions_opened.feed(v.sessions_opened);
  m.sessions_expired.feed(v.sessions_expired);
  m.ingress_messages.feed(v.ingress_messages);
  m.ingress_bytes.feed(v.ingress_bytes);
  m.egress_messages.feed(v.egress_messages);
  m.egress_bytes.feed(v.egress_bytes);
  m.redirects.feed(v.redirects);
  m.back_pressure.feed(v.back_pressure);
  m.snapshots_taken.feed(v.snapshots_taken);
  m.snapshots_installed.feed(v.snapshots_installed);
  m.storage_errors.feed(v.storage_errors);
}

void NodeMetrics::set_follower_lag(std::size_t index, std::uint64_t entries) {
  if (index < impl_->follower_lag.size()) impl_->follower_lag[index]->Set(static_cast<double>(entries));
}

void NodeMetrics::clear_follower_lag() {
  for (prometheus::Gauge* lag : impl_->follower_lag) lag->Set(0);
}

void NodeMetrics::observe_append(std::chrono::nanoseconds took) { impl_->append->Observe(seconds(took)); }
void NodeMetrics::observe_fsync(std::chrono::nanoseconds took) { impl_->fsync->Observe(seconds(took)); }
void NodeMetrics::observe_commit(std::chrono::nanoseconds took) { impl_->commit->Observe(seconds(took)); }
void NodeMetrics::observe_apply(std::chrono::nanoseconds took) { impl_->apply->Observe(seconds(took)); }

}  // namespace cohort::node
