// cohortd's configuration: the TOML file first, then the flags over it, then cohort::validate() on the result.
// Every problem is collected, not just the first, so one run shows everything to fix. validate() runs only
// when every setting was read cleanly: on a half-read configuration it would report the gaps, not the causes.

#include "cohortd/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <cohort/version.h>
#include <fmt/format.h>
#include <toml++/toml.h>
#include <CLI/CLI.hpp>

#include "io/logging.h"

namespace cohortd {

namespace {

using cohort::Result;
using cohort::unexpected;
using Problems = std::vector<std::string>;

constexpr std::array<std::string_view, 4> kServices{"kv", "counter", "echo", "ledger"};
constexpr std::array<std::string_view, 5> kLogLevels{"trace", "debug", "info", "warn", "error"};
constexpr std::array<std::string_view, 3> kIdleStrategies{"block", "yield", "spin"};
constexpr std::array<std::string_view, 2> kSyncPolicies{"fsync", "none"};

constexpr std::uint64_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();
// Longer timeouts are typos, not tuning: an hour without a heartbeat is a dead leader.
constexpr std::uint64_t kMaxTimeoutMs = 3'600'000;
// The session settings' own bounds are validate()'s; these only keep the conversions to durations exact.
constexpr std::uint64_t kMaxSessionTimeoutMs = kMaxU32;
constexpr std::uint64_t kMaxTombstoneAgeS = kMaxU32;

// ---- shared by the file and the flags ----

std::string join(std::span<const std::string_view> items) {
  std::string out;
  for (const auto item : items) out += (out.empty() ? "" : ", ") + std::string(item);
  return out;
}

/// The reason `value` is not one of `choices`, or nullopt if it is.
std::optional<std::string> check_choice(std::string_view value, std::span<const std::string_view> choices) {
  for (const auto choice : choices) {
    if (value == choice) return std::nullopt;
  }
  return fmt::format("'{}' is not one of {}", value, join(choices));
}

std::string out_of_range(std::string_view value, std::uint64_t max) {
  return fmt::format("{} is out of range (0..{})", value, max);
}

/// A whole decimal integer in 0..max; the error is the reason it is not.
Result<std::uint64_t, std::string> parse_integer(std::string_view text, std::uint64_t max) {
  const char* const end = text.data() + text.size();
  if (text.starts_with('-')) {
    // Any negative number is out of range; telling it apart from garbage keeps the message precise.
    std::int64_t negative = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), end, negative);
    if (ptr == end && (ec == std::errc{} || ec == std::errc::result_out_of_range)) {
      return unexpected(out_of_range(text, max));
    }
    return unexpected(fmt::format("'{}' is not an integer", text));
  }
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ptr != end) return unexpected(fmt::format("'{}' is not an integer", text));
  if (ec == std::errc::result_out_of_range || value > max) return unexpected(out_of_range(text, max));
  return value;
}

// `text` is one of kLogLevels, all of which parse_log_level knows.
cohort::LogLevel to_log_level(std::string_view text) { return cohort::io::parse_log_level(text).value(); }

std::optional<cohort::SyncPolicy> to_sync_policy(std::string_view text) {
  if (text == "fsync") return cohort::SyncPolicy::fsync;
  if (text == "none") return cohort::SyncPolicy::none;
  return std::nullopt;
}

std::chrono::milliseconds to_ms(std::uint64_t value) {
  // value <= kMaxTimeoutMs or kMaxSessionTimeoutMs, so the conversion is exact.
  return std::chrono::milliseconds{static_cast<std::chrono::milliseconds::rep>(value)};
}

std::chrono::seconds to_seconds(std::uint64_t value) {
  // value <= kMaxTombstoneAgeS, so the conversion is exact.
  return std::chrono::seconds{static_cast<std::chrono::seconds::rep>(value)};
}

// The current errno as text; std::strerror is not thread-safe.
std::string errno_text() { return std::error_code(errno, std::generic_category()).message(); }

/// The whole file, or the reason it cannot be read.
Result<std::string, std::string> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return unexpected(fmt::format("cannot open: {}", errno_text()));
  std::string text;
  std::string error;
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    error = fmt::format("cannot stat: {}", errno_text());
  } else if (S_ISDIR(status.st_mode)) {
    error = "is a directory, not a file";
  } else {
    std::array<char, 8192> buffer{};
    for (;;) {
      const ssize_t got = ::read(fd, buffer.data(), buffer.size());
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        error = fmt::format("cannot read: {}", errno_text());
        break;
      }
      if (got == 0) break;
      text.append(buffer.data(), static_cast<std::size_t>(got));
    }
  }
  ::close(fd);
  if (!error.empty()) return unexpected(std::move(error));
  return text;
}

// ---- the TOML file ----

const char* describe(toml::node_type type) {
  switch (type) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "an unknown value";
}

class FileReader {
 public:
  FileReader(std::string path, Problems& problems) : path_(std::move(path)), problems_(problems) {}

  void read(DaemonConfig& config) {
    auto text = read_file(path_);
    if (!text) {
      problems_.push_back(fmt::format("config {}: {}", path_, text.error()));
      return;
    }
    toml::table root;
    try {
      root = toml::parse(*text, std::string_view(path_));
    } catch (const toml::parse_error& error) {
      const auto& where = error.source().begin;
      problems_.push_back(fmt::format("config {}: syntax error at line {}, column {}: {}", path_, where.line,
                                      where.column, error.description()));
      return;
    }

    for (auto&& [key, node] : root) {
      const std::string_view name = key.str();
      if (name == "node_id") {
        if (auto value = read_integer(name, node, kMaxU32)) config.node.node_id = static_cast<std::uint32_t>(*value);
      } else if (name == "cluster_id") {
        if (auto value = read_integer(name, node, kMaxU64)) config.node.cluster_id = *value;
      } else if (name == "data_dir") {
        if (auto value = read_string(name, node)) config.node.data_dir = std::move(*value);
      } else if (name == "service") {
        if (auto value = read_choice(name, node, kServices)) config.service = std::move(*value);
      } else if (name == "log_level") {
        if (auto value = read_choice(name, node, kLogLevels)) config.node.log_level = to_log_level(*value);
      } else if (name == "idle") {
        if (auto value = read_choice(name, node, kIdleStrategies))
          config.node.idle = *cohort::parse_idle_strategy(*value);
      } else if (name == "log_file") {
        auto path = read_string(name, node);
        if (path && path->empty()) {
          problem(name, node, "is empty (leave it out to log to stderr)");
        } else if (path) {
          config.log_file = std::move(*path);
        }
      } else if (name == "sync") {
        if (auto value = read_choice(name, node, kSyncPolicies)) config.node.sync = *to_sync_policy(*value);
      } else if (name == "metrics") {
        if (auto value = read_string(name, node)) config.node.metrics_endpoint = std::move(*value);
      } else if (name == "admin_credentials_file") {
        auto path = read_string(name, node);
        if (path && path->empty()) {
          problem(name, node, "is empty (leave it out to take admin commands on the admin endpoint only)");
        } else if (path) {
          config.admin_credentials_file = std::move(*path);
        }
      } else if (name == "segment_size") {
        if (auto value = read_integer(name, node, kMaxU64)) config.node.segment_size = *value;
      } else if (name == "snapshot_threshold") {
        if (auto value = read_integer(name, node, kMaxU64)) config.node.snapshot_threshold = *value;
      } else if (name == "compaction_margin") {
        if (auto value = read_integer(name, node, kMaxU64)) config.node.compaction_margin = *value;
      } else if (name == "max_message_size") {
        if (auto value = read_integer(name, node, kMaxU64))
          config.node.max_message_size = static_cast<std::size_t>(*value);
      } else if (name == "timeouts") {
        read_timeouts(node, config.node);
      } else if (name == "sessions") {
        read_sessions(node, config);
      } else if (name == "members") {
        read_members(node, config.node);
      } else {
        unknown(name, key);
      }
    }
  }

 private:
  void problem(std::string_view setting, const toml::node& node, std::string_view reason) {
    problems_.push_back(fmt::format("{}: {} (config {}, line {})", setting, reason, path_, node.source().begin.line));
  }

  void unknown(std::string_view setting, const toml::key& key) {
    problems_.push_back(
        fmt::format("config {}: unknown setting '{}' (line {})", path_, setting, key.source().begin.line));
  }

  void wrong_type(std::string_view setting, const toml::node& node, std::string_view expected) {
    problem(setting, node, fmt::format("expected {}, got {}", expected, describe(node.type())));
  }

  std::optional<std::uint64_t> read_integer(std::string_view setting, const toml::node& node, std::uint64_t max) {
    const auto* value = node.as_integer();
    if (value == nullptr) {
      wrong_type(setting, node, "an integer");
      return std::nullopt;
    }
    const std::int64_t raw = value->get();
    if (raw < 0 || static_cast<std::uint64_t>(raw) > max) {
      problem(setting, node, out_of_range(std::to_string(raw), max));
      return std::nullopt;
    }
    return static_cast<std::uint64_t>(raw);
  }

  std::optional<std::string> read_string(std::string_view setting, const toml::node& node) {
    const auto* value = node.as_string();
    if (value == nullptr) {
      wrong_type(setting, node, "a string");
      return std::nullopt;
    }
    return value->get();
  }

  std::optional<std::string> read_choice(std::string_view setting, const toml::node& node,
                                         std::span<const std::string_view> choices) {
    auto value = read_string(setting, node);
    if (!value) return std::nullopt;
    if (auto reason = check_choice(*value, choices)) {
      problem(setting, node, *reason);
      return std::nullopt;
    }
    return value;
  }

  void read_timeouts(const toml::node& node, cohort::NodeOptions& options) {
    const auto* table = node.as_table();
    if (table == nullptr) {
      wrong_type("timeouts", node, "a table ([timeouts])");
      return;
    }
    for (auto&& [key, value] : *table) {
      const std::string name = fmt::format("timeouts.{}", key.str());
      std::chrono::milliseconds* target = nullptr;
      if (key.str() == "heartbeat_ms") {
        target = &options.heartbeat_interval;
      } else if (key.str() == "election_min_ms") {
        target = &options.election_timeout_min;
      } else if (key.str() == "election_max_ms") {
        target = &options.election_timeout_max;
      } else if (key.str() == "client_keepalive_ms") {
        target = &options.client_keepalive_interval;
      } else {
        unknown(name, key);
        continue;
      }
      if (auto ms = read_integer(name, value, kMaxTimeoutMs)) *target = to_ms(*ms);
    }
  }

  void read_sessions(const toml::node& node, DaemonConfig& config) {
    const auto* table = node.as_table();
    if (table == nullptr) {
      wrong_type("sessions", node, "a table ([sessions])");
      return;
    }
    auto& options = config.node;
    for (auto&& [key, value] : *table) {
      const std::string_view field = key.str();
      const std::string name = fmt::format("sessions.{}", field);
      if (field == "timeout_ms") {
        if (auto ms = read_integer(name, value, kMaxSessionTimeoutMs)) options.session_timeout = to_ms(*ms);
      } else if (field == "max_sessions") {
        if (auto count = read_integer(name, value, kMaxU64)) options.max_sessions = static_cast<std::size_t>(*count);
      } else if (field == "max_tombstones") {
        if (auto count = read_integer(name, value, kMaxU64)) options.max_tombstones = static_cast<std::size_t>(*count);
      } else if (field == "tombstone_max_age_s") {
        if (auto age = read_integer(name, value, kMaxTombstoneAgeS)) options.tombstone_max_age = to_seconds(*age);
      } else if (field == "egress_window_messages") {
        if (auto count = read_integer(name, value, kMaxU64)) {
          options.egress_window_messages = static_cast<std::size_t>(*count);
        }
      } else if (field == "egress_window_bytes") {
        if (auto bytes = read_integer(name, value, kMaxU64)) {
          options.egress_window_bytes = static_cast<std::size_t>(*bytes);
        }
      } else if (field == "credentials_file") {
        auto path = read_string(name, value);
        if (path && path->empty()) {
          // Not "no authentication": that is the setting left out.
          problem(name, value, "is empty (leave it out to accept every client)");
        } else if (path) {
          config.credentials_file = std::move(*path);
        }
      } else {
        unknown(name, key);
      }
    }
  }

  void read_members(const toml::node& node, cohort::NodeOptions& options) {
    const auto* array = node.as_array();
    if (array == nullptr) {
      wrong_type("members", node, "an array of tables ([[members]])");
      return;
    }
    options.members.clear();
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto& element = *array->get(i);
      const std::string prefix = fmt::format("members[{}]", i);
      const auto* table = element.as_table();
      if (table == nullptr) {
        wrong_type(prefix, element, "a table with id, peer, client and (optionally) admin");
        continue;
      }
      cohort::Member member;
      bool complete = true;
      for (auto&& [key, value] : *table) {
        const std::string name = fmt::format("{}.{}", prefix, key.str());
        if (key.str() == "id") {
          auto id = read_integer(name, value, kMaxU32);
          complete = complete && id.has_value();
          if (id) member.id = static_cast<std::uint32_t>(*id);
        } else if (key.str() == "peer" || key.str() == "client" || key.str() == "admin") {
          auto endpoint = read_string(name, value);
          complete = complete && endpoint.has_value();
          if (!endpoint) continue;
          if (key.str() == "peer")
            member.peer_endpoint = std::move(*endpoint);
          else if (key.str() == "client")
            member.client_endpoint = std::move(*endpoint);
          else
            member.admin_endpoint = std::move(*endpoint);
        } else {
          unknown(name, key);
          complete = false;
        }
      }
      for (const char* field : {"id", "peer", "client"}) {
        if (!table->contains(field)) {
          problem(fmt::format("{}.{}", prefix, field), element, "missing");
          complete = false;
        }
      }
      if (complete) options.members.push_back(std::move(member));
    }
  }

  std::string path_;
  Problems& problems_;
};

// ---- the flags ----

struct Flags {
  std::string config_file;
  std::string node_id;
  std::string cluster_id;
  std::string data_dir;
  std::string service;
  std::string sync;
  std::string log_level;
  std::string log_file;
  std::string metrics;
  std::string idle;
  std::string heartbeat_ms;
  std::string election_timeout_ms;
  std::string client_keepalive_ms;
  std::string segment_size;
  std::string snapshot_threshold;
  std::string compaction_margin;
  std::string max_message_size;
  std::string session_timeout_ms;
  std::string max_sessions;
  std::string credentials_file;
  std::string admin_credentials_file;
  std::vector<std::string> members;
};

// Every flag is taken as text and converted here, so the file and the flags refuse values alike and every bad
// flag is reported, not just the first one CLI11 meets.
void define_flags(CLI::App& app, Flags& flags) {
  app.set_version_flag("--version", cohort::kVersionString);
  app.add_option("--config", flags.config_file, "TOML file with the settings below (see config/node1.toml)")
      ->type_name("FILE");
  app.add_option("--node-id", flags.node_id, "this node's id, one of the members' ids (node_id)")->type_name("ID");
  app.add_option("--cluster-id", flags.cluster_id, "the cluster's id (cluster_id); peers and clients present the same")
      ->type_name("ID");
  app.add_option("--data-dir", flags.data_dir, "directory for the log and metadata (data_dir)")->type_name("DIR");
  app.add_option("--service", flags.service, "the service to run: kv, counter, echo, ledger (service; default kv)")
      ->type_name("NAME");
  app.add_option("--sync", flags.sync, "fsync (durable on each node; default) or none (durable by replication) (sync)")
      ->type_name("POLICY");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error (log_level; default info)")
      ->type_name("LEVEL");
  app.add_option("--idle", flags.idle,
                 "block (sleep while idle; default), yield or spin (poll: lowest latency, a CPU kept busy) (idle)")
      ->type_name("STRATEGY");
  app.add_option("--log-file", flags.log_file, "append log lines to FILE instead of stderr (log_file)")
      ->type_name("FILE");
  app.add_option("--metrics", flags.metrics,
                 "serve Prometheus metrics at http://HOST:PORT/metrics (metrics; default: not served)")
      ->type_name("HOST:PORT");
  app.add_option("--heartbeat-ms", flags.heartbeat_ms, "leader heartbeat interval (timeouts.heartbeat_ms; default 50)")
      ->type_name("MS");
  app.add_option("--election-timeout-ms", flags.election_timeout_ms,
                 "election timeout range, max exclusive (timeouts.election_min_ms/_max_ms; default 500-1000)")
      ->type_name("MIN-MAX");
  app.add_option("--client-keepalive-ms", flags.client_keepalive_ms,
                 "client keep-alive interval (timeouts.client_keepalive_ms; default 250)")
      ->type_name("MS");
  app.add_option("--segment-size", flags.segment_size,
                 "log segment size in bytes, at least 4096 (segment_size; default 16 MiB)")
      ->type_name("BYTES");
  app.add_option("--snapshot-threshold", flags.snapshot_threshold,
                 "take a snapshot once this many bytes of log follow the last one, at least 65536; 0: never "
                 "(snapshot_threshold; default 16 MiB)")
      ->type_name("BYTES");
  app.add_option("--compaction-margin", flags.compaction_margin,
                 "log entries kept before the newest snapshot besides the log since the previous one, for lagging "
                 "followers (compaction_margin; default 0)")
      ->type_name("ENTRIES");
  app.add_option("--max-message-size", flags.max_message_size,
                 "largest client message payload in bytes, 1..16 MiB (max_message_size; default 1 MiB)")
      ->type_name("BYTES");
  app.add_option("--session-timeout-ms", flags.session_timeout_ms,
                 "a session idle this long is closed, at least 4 keep-alive intervals and 100 ms "
                 "(sessions.timeout_ms; default 10000)")
      ->type_name("MS");
  app.add_option("--max-sessions", flags.max_sessions,
                 "open sessions at most, the same on every node (sessions.max_sessions; default 10000)")
      ->type_name("COUNT");
  app.add_option("--credentials-file", flags.credentials_file,
                 "only clients presenting a credential listed in FILE, one per line, may open sessions "
                 "(sessions.credentials_file; default: every client may)")
      ->type_name("FILE");
  app.add_option("--admin-credentials-file", flags.admin_credentials_file,
                 "admin commands sent to the client endpoint are taken with a credential listed in FILE "
                 "(admin_credentials_file; default: only on the member's admin endpoint)")
      ->type_name("FILE");
  app.add_option("--member", flags.members,
                 "a voting member, repeated for each (this node included); replaces the file's members")
      ->type_name("ID,PEER_HOST:PORT,CLIENT_HOST:PORT[,ADMIN_HOST:PORT]");
  app.footer(
      "Settings come from --config FILE, then from the flags, which win over the file. Port 0 in an endpoint\n"
      "picks any free port.");
}

/// `--member ID,PEER,CLIENT[,ADMIN]`, or the reason it is not one.
Result<cohort::Member, std::string> parse_member(std::string_view text) {
  std::vector<std::string_view> fields;
  for (std::size_t begin = 0;;) {
    const std::size_t comma = text.find(',', begin);
    fields.push_back(text.substr(begin, comma == std::string_view::npos ? std::string_view::npos : comma - begin));
    if (comma == std::string_view::npos) break;
    begin = comma + 1;
  }
  if (fields.size() != 3 && fields.size() != 4)
    return unexpected(fmt::format("'{}' is not ID,PEER_HOST:PORT,CLIENT_HOST:PORT[,ADMIN_HOST:PORT]", text));
  auto id = parse_integer(fields[0], kMaxU32);
  if (!id) return unexpected(fmt::format("'{}': the id {}", text, id.error()));
  return cohort::Member{static_cast<std::uint32_t>(*id), std::string(fields[1]), std::string(fields[2]),
                        fields.size() == 4 ? std::string(fields[3]) : std::string()};
}

void apply_flags(const CLI::App& app, const Flags& flags, DaemonConfig& config, Problems& problems) {
  const auto given = [&](const char* flag) { return app.count(flag) > 0; };
  const auto integer = [&](const char* flag, const std::string& text,
                           std::uint64_t max) -> std::optional<std::uint64_t> {
    auto value = parse_integer(text, max);
    if (!value) {
      problems.push_back(fmt::format("{}: {}", flag, value.error()));
      return std::nullopt;
    }
    return *value;
  };
  const auto choice = [&](const char* flag, const std::string& text, std::span<const std::string_view> choices) {
    auto reason = check_choice(text, choices);
    if (reason) problems.push_back(fmt::format("{}: {}", flag, *reason));
    return !reason;
  };

  if (given("--node-id")) {
    if (auto value = integer("--node-id", flags.node_id, kMaxU32)) {
      config.node.node_id = static_cast<std::uint32_t>(*value);
    }
  }
  if (given("--cluster-id")) {
    if (auto value = integer("--cluster-id", flags.cluster_id, kMaxU64)) config.node.cluster_id = *value;
  }
  if (given("--data-dir")) config.node.data_dir = flags.data_dir;
  if (given("--service") && choice("--service", flags.service, kServices)) config.service = flags.service;
  if (given("--log-level") && choice("--log-level", flags.log_level, kLogLevels))
    config.node.log_level = to_log_level(flags.log_level);
  if (given("--idle") && choice("--idle", flags.idle, kIdleStrategies))
    config.node.idle = *cohort::parse_idle_strategy(flags.idle);
  if (given("--log-file")) {
    if (flags.log_file.empty()) {
      problems.emplace_back("--log-file: is empty (leave the flag out to log to stderr)");
    } else {
      config.log_file = flags.log_file;
    }
  }
  if (given("--sync") && choice("--sync", flags.sync, kSyncPolicies)) config.node.sync = *to_sync_policy(flags.sync);
  if (given("--metrics")) config.node.metrics_endpoint = flags.metrics;
  if (given("--heartbeat-ms")) {
    if (auto value = integer("--heartbeat-ms", flags.heartbeat_ms, kMaxTimeoutMs)) {
      config.node.heartbeat_interval = to_ms(*value);
    }
  }
  if (given("--election-timeout-ms")) {
    const std::string_view text = flags.election_timeout_ms;
    const auto dash = text.find('-', 1);  // from 1: a leading '-' is a sign, refused below as out of range
    if (dash == std::string_view::npos) {
      problems.push_back(
          fmt::format("--election-timeout-ms: '{}' is not MIN-MAX in milliseconds (e.g. 500-1000)", text));
    } else {
      auto min = integer("--election-timeout-ms", std::string(text.substr(0, dash)), kMaxTimeoutMs);
      auto max = integer("--election-timeout-ms", std::string(text.substr(dash + 1)), kMaxTimeoutMs);
      if (min && max) {
        config.node.election_timeout_min = to_ms(*min);
        config.node.election_timeout_max = to_ms(*max);
      }
    }
  }
  if (given("--client-keepalive-ms")) {
    if (auto value = integer("--client-keepalive-ms", flags.client_keepalive_ms, kMaxTimeoutMs)) {
      config.node.client_keepalive_interval = to_ms(*value);
    }
  }
  if (given("--segment-size")) {
    if (auto value = integer("--segment-size", flags.segment_size, kMaxU64)) config.node.segment_size = *value;
  }
  if (given("--snapshot-threshold")) {
    if (auto value = integer("--snapshot-threshold", flags.snapshot_threshold, kMaxU64))
      config.node.snapshot_threshold = *value;
  }
  if (given("--compaction-margin")) {
    if (auto value = integer("--compaction-margin", flags.compaction_margin, kMaxU64))
      config.node.compaction_margin = *value;
  }
  if (given("--max-message-size")) {
    if (auto value = integer("--max-message-size", flags.max_message_size, kMaxU64)) {
      config.node.max_message_size = static_cast<std::size_t>(*value);
    }
  }
  if (given("--session-timeout-ms")) {
    if (auto value = integer("--session-timeout-ms", flags.session_timeout_ms, kMaxSessionTimeoutMs)) {
      config.node.session_timeout = to_ms(*value);
    }
  }
  if (given("--max-sessions")) {
    if (auto value = integer("--max-sessions", flags.max_sessions, kMaxU64)) {
      config.node.max_sessions = static_cast<std::size_t>(*value);
    }
  }
  if (given("--credentials-file")) {
    if (flags.credentials_file.empty()) {
      // Not "no authentication": an empty value from a script's unset variable must not open the cluster.
      problems.emplace_back("--credentials-file: is empty (leave the flag out to accept every client)");
    } else {
      config.credentials_file = flags.credentials_file;
    }
  }
  if (given("--admin-credentials-file")) {
    if (flags.admin_credentials_file.empty())
      problems.emplace_back(
          "--admin-credentials-file: is empty (leave the flag out to take admin commands on the admin endpoint only)");
    else
      config.admin_credentials_file = flags.admin_credentials_file;
  }
  if (!flags.members.empty()) {
    // Wholesale: mixing the file's list with the flags' would make a membership nobody wrote down.
    config.node.members.clear();
    for (const auto& text : flags.members) {
      auto member = parse_member(text);
      if (member) {
        config.node.members.push_back(std::move(member).value());
      } else {
        problems.push_back(fmt::format("--member: {}", member.error()));
      }
    }
  }
}

/// An authenticator of the credentials in `path` (null if `path` is empty, or unreadable: then a problem naming
/// `setting`). The clients' file and the operators' each get their own.
std::shared_ptr<cohort::CredentialListAuthenticator> load_credentials(const std::string& path, std::string_view setting,
                                                                      Problems& problems) {
  if (path.empty()) return nullptr;
  auto credentials = read_credentials(path);
  if (!credentials) {
    problems.push_back(fmt::format("{}: {}: {}", setting, path, credentials.error()));
    return nullptr;
  }
  return std::make_shared<cohort::CredentialListAuthenticator>(std::move(credentials).value());
}

std::string without_trailing_newlines(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

}  // namespace

Result<std::vector<std::string>, std::string> read_credentials(const std::string& path) {
  auto text = read_file(path);
  if (!text) return unexpected(std::move(text).error());
  std::vector<std::string> credentials;
  std::string_view rest = *text;
  while (!rest.empty()) {
    const auto newline = rest.find('\n');
    std::string_view line = rest.substr(0, newline);
    rest = newline == std::string_view::npos ? std::string_view{} : rest.substr(newline + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty() || line.starts_with('#')) continue;
    credentials.emplace_back(line);
  }
  if (credentials.empty()) {
    return unexpected(
        std::string("holds no credential (one per line; empty lines and lines starting with '#' are "
                    "skipped)"));
  }
  return credentials;
}

Result<DaemonConfig, ConfigExit> load_config(const std::vector<std::string>& args) {
  CLI::App app{"cohortd: a Cohort cluster node", "cohortd"};
  Flags flags;
  define_flags(app, flags);
  try {
    // CLI11 takes the arguments last first.
    app.parse(std::vector<std::string>(args.rbegin(), args.rend()));
  } catch (const CLI::ParseError& error) {
    std::ostringstream out;
    std::ostringstream err;
    if (app.exit(error, out, err) == 0) return unexpected(ConfigExit{0, without_trailing_newlines(out.str())});
    return unexpected(ConfigExit{kBadConfigExitCode, without_trailing_newlines(err.str())});
  }

  DaemonConfig config;
  Problems problems;
  if (app.count("--config") > 0) FileReader(flags.config_file, problems).read(config);
  apply_flags(app, flags, config, problems);
  if (auto clients = load_credentials(
          config.credentials_file,
          app.count("--credentials-file") > 0 ? "--credentials-file" : "sessions.credentials_file", problems)) {
    config.credential_count = clients->size();
    config.node.authenticator = std::move(clients);
  }
  config.node.admin_authenticator = load_credentials(
      config.admin_credentials_file,
      app.count("--admin-credentials-file") > 0 ? "--admin-credentials-file" : "admin_credentials_file", problems);
  if (problems.empty()) {
    if (auto invalid = cohort::validate(config.node)) problems.push_back(std::move(*invalid));
  }
  if (problems.empty()) return config;

  std::string message;
  for (const auto& problem : problems) message += (message.empty() ? "" : "\n") + problem;
  return unexpected(ConfigExit{kBadConfigExitCode, std::move(message)});
}

Result<DaemonConfig, ConfigExit> load_config(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return load_config(args);
}

}  // namespace cohortd
