// cohortd's configuration (TOML file, then flags) and cohort::validate(NodeOptions).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <cohort/node.h>
#include <cohort/version.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cohortd/config.h"

namespace {

using namespace std::chrono_literals;
using cohortd::DaemonConfig;
using cohortd::load_config;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

// A TOML file in the temp directory, removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    std::random_device random;
    path_ = std::filesystem::temp_directory_path() /
            ("cohort-config-test-" + std::to_string(random()) + "-" + std::to_string(random()) + ".toml");
    std::ofstream out(path_);
    out << content;
  }
  ~TempFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

constexpr const char* kFullFile = R"(# every setting, none at its default
node_id = 2
cluster_id = 42
data_dir = "/tmp/cohort/n2"
service = "counter"
sync = "none"
log_level = "debug"
log_file = "/var/log/cohort/n2.log"
segment_size = 1048576
max_message_size = 65536

[timeouts]
heartbeat_ms = 20
election_min_ms = 300
election_max_ms = 600
client_keepalive_ms = 100

[sessions]
timeout_ms = 5000
max_sessions = 500
max_tombstones = 0
tombstone_max_age_s = 3600
egress_window_messages = 16
egress_window_bytes = 65536

[[members]]
id = 1
peer = "127.0.0.1:7101"
client = "127.0.0.1:7201"

[[members]]
id = 2
peer = "127.0.0.1:7102"
client = "127.0.0.1:7202"

[[members]]
id = 3
peer = "127.0.0.1:7103"
client = "127.0.0.1:7203"
)";

// The smallest file that passes validation: every other setting keeps its default.
constexpr const char* kMinimalFile = R"(node_id = 1
cluster_id = 7
data_dir = "/tmp/cohort/n1"
[[members]]
id = 1
peer = "127.0.0.1:7101"
client = "127.0.0.1:7201"
)";

DaemonConfig load_ok(const std::vector<std::string>& args) {
  auto config = load_config(args);
  EXPECT_TRUE(config.has_value()) << (config ? "" : config.error().message);
  return config ? *config : DaemonConfig{};
}

// The message of a refused configuration; fails the test unless it was refused with the bad-config exit code.
std::string refusal(const std::vector<std::string>& args) {
  auto config = load_config(args);
  EXPECT_FALSE(config.has_value());
  if (config) return "";
  EXPECT_EQ(config.error().exit_code, cohortd::kBadConfigExitCode) << config.error().message;
  return config.error().message;
}

std::string refusal_of_file(const std::string& content, std::vector<std::string> extra_args = {}) {
  TempFile file(content);
  std::vector<std::string> args{"--config", file.path()};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return refusal(args);
}

std::vector<cohort::Member> three_members() {
  return {{1, "127.0.0.1:7101", "127.0.0.1:7201"},
          {2, "127.0.0.1:7102", "127.0.0.1:7202"},
          {3, "127.0.0.1:7103", "127.0.0.1:7203"}};
}

cohort::NodeOptions valid_options() {
  cohort::NodeOptions options;
  options.node_id = 1;
  options.cluster_id = 42;
  options.members = three_members();
  options.data_dir = "/tmp/cohort/n1";
  return options;
}

std::span<const std::byte> bytes(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }

// Whether `authenticator` lets a client presenting `credential` open a session.
bool accepts(cohort::Authenticator& authenticator, std::string_view credential) {
  return !authenticator.refuse(1, 2, bytes(credential)).has_value();
}

std::string problems_of(const cohort::NodeOptions& options) {
  auto problems = cohort::validate(options);
  EXPECT_TRUE(problems.has_value());
  return problems.value_or("");
}

// ---- loading ----

TEST(Config, ValidFileIsParsedFully) {
  TempFile file(kFullFile);
  const auto config = load_ok({"--config", file.path()});
  const auto& node = config.node;
  EXPECT_EQ(node.node_id, 2U);
  EXPECT_EQ(node.cluster_id, 42U);
  EXPECT_EQ(node.data_dir, "/tmp/cohort/n2");
  EXPECT_EQ(config.service, "counter");
  EXPECT_EQ(node.sync, cohort::SyncPolicy::none);
  EXPECT_EQ(node.log_level, cohort::LogLevel::debug);
  EXPECT_EQ(config.log_file, "/var/log/cohort/n2.log");
  EXPECT_EQ(node.segment_size, 1048576U);
  EXPECT_EQ(node.max_message_size, 65536U);
  EXPECT_EQ(node.heartbeat_interval, 20ms);
  EXPECT_EQ(node.election_timeout_min, 300ms);
  EXPECT_EQ(node.election_timeout_max, 600ms);
  EXPECT_EQ(node.client_keepalive_interval, 100ms);
  EXPECT_EQ(node.session_timeout, 5000ms);
  EXPECT_EQ(node.max_sessions, 500U);
  EXPECT_EQ(node.max_tombstones, 0U);  // none kept is a valid choice
  EXPECT_EQ(node.tombstone_max_age, 3600s);
  EXPECT_EQ(node.egress_window_messages, 16U);
  EXPECT_EQ(node.egress_window_bytes, 65536U);
  EXPECT_EQ(node.members, three_members());
}

TEST(Config, UnsetSettingsKeepTheirDefaults) {
  TempFile file(kMinimalFile);
  const auto config = load_ok({"--config", file.path()});
  const cohort::NodeOptions defaults;
  EXPECT_EQ(config.service, "kv");
  EXPECT_EQ(config.node.log_level, cohort::LogLevel::info);
  EXPECT_EQ(config.log_file, "");  // stderr
  EXPECT_FALSE(config.node.log);   // main sets the sink; load_config opens no file
  EXPECT_EQ(config.node.sync, defaults.sync);
  EXPECT_EQ(config.node.heartbeat_interval, defaults.heartbeat_interval);
  EXPECT_EQ(config.node.election_timeout_min, defaults.election_timeout_min);
  EXPECT_EQ(config.node.election_timeout_max, defaults.election_timeout_max);
  EXPECT_EQ(config.node.client_keepalive_interval, defaults.client_keepalive_interval);
  EXPECT_EQ(config.node.segment_size, defaults.segment_size);
  EXPECT_EQ(config.node.max_message_size, defaults.max_message_size);
  EXPECT_EQ(config.node.session_timeout, defaults.session_timeout);
  EXPECT_EQ(config.node.max_sessions, defaults.max_sessions);
  EXPECT_EQ(config.node.max_tombstones, defaults.max_tombstones);
  EXPECT_EQ(config.node.tombstone_max_age, defaults.tombstone_max_age);
  EXPECT_EQ(config.node.egress_window_messages, defaults.egress_window_messages);
  EXPECT_EQ(config.node.egress_window_bytes, defaults.egress_window_bytes);
  // No credentials file: no authenticator, so the node accepts every client.
  EXPECT_EQ(config.node.authenticator, nullptr);
  EXPECT_EQ(config.credentials_file, "");
}

TEST(Config, SessionDefaultsAreTheDocumentedOnes) {
  // docs/operations.md and config/node1.toml state these; the session layer's own defaults are the same.
  const cohort::NodeOptions defaults;
  EXPECT_EQ(defaults.session_timeout, 10s);
  EXPECT_EQ(defaults.max_sessions, 10000U);
  EXPECT_EQ(defaults.max_tombstones, 100000U);
  EXPECT_EQ(defaults.tombstone_max_age, 24h);
  EXPECT_EQ(defaults.egress_window_messages, 128U);
  EXPECT_EQ(defaults.egress_window_bytes, 1048576U);
  EXPECT_EQ(cohort::validate(valid_options()), std::nullopt);
}

TEST(Config, FlagsOverrideTheFile) {
  TempFile file(kFullFile);
  const auto config = load_ok({"--config",
                               file.path(),
                               "--node-id",
                               "3",
                               "--cluster-id",
                               "43",
                               "--data-dir",
                               "/var/lib/cohort",
                               "--service",
                               "echo",
                               "--sync",
                               "fsync",
                               "--log-level",
                               "warn",
                               "--log-file",
                               "/tmp/cohortd.log",
                               "--heartbeat-ms",
                               "30",
                               "--election-timeout-ms",
                               "400-900",
                               "--client-keepalive-ms",
                               "150",
                               "--segment-size",
                               "8192",
                               "--max-message-size=4096",
                               "--session-timeout-ms",
                               "2000",
                               "--max-sessions",
                               "7"});
  const auto& node = config.node;
  EXPECT_EQ(node.node_id, 3U);
  EXPECT_EQ(node.cluster_id, 43U);
  EXPECT_EQ(node.data_dir, "/var/lib/cohort");
  EXPECT_EQ(config.service, "echo");
  EXPECT_EQ(node.sync, cohort::SyncPolicy::fsync);
  EXPECT_EQ(node.log_level, cohort::LogLevel::warn);
  EXPECT_EQ(config.log_file, "/tmp/cohortd.log");
  EXPECT_EQ(node.heartbeat_interval, 30ms);
  EXPECT_EQ(node.election_timeout_min, 400ms);
  EXPECT_EQ(node.election_timeout_max, 900ms);
  EXPECT_EQ(node.client_keepalive_interval, 150ms);
  EXPECT_EQ(node.segment_size, 8192U);
  EXPECT_EQ(node.max_message_size, 4096U);
  EXPECT_EQ(node.session_timeout, 2000ms);
  EXPECT_EQ(node.max_sessions, 7U);
  EXPECT_EQ(node.max_tombstones, 0U);        // no flag: the file's value stands
  EXPECT_EQ(node.members, three_members());  // no --member: the file's list stands
}

TEST(Config, LogLevelsMapOntoTheNodesLevels) {
  // No line of Cohort's is finer than debug, so trace shows the same lines.
  const std::vector<std::pair<std::string, cohort::LogLevel>> levels{{"trace", cohort::LogLevel::debug},
                                                                     {"debug", cohort::LogLevel::debug},
                                                                     {"info", cohort::LogLevel::info},
                                                                     {"warn", cohort::LogLevel::warn},
                                                                     {"error", cohort::LogLevel::error}};
  for (const auto& [text, level] : levels) {
    TempFile file("log_level = \"" + text + "\"\n" + std::string(kMinimalFile));
    EXPECT_EQ(load_ok({"--config", file.path()}).node.log_level, level) << text;
    TempFile minimal(kMinimalFile);
    EXPECT_EQ(load_ok({"--config", minimal.path(), "--log-level", text}).node.log_level, level) << text;
  }
}

TEST(Config, LogFileFlagWinsOverTheFilesSetting) {
  TempFile file("log_file = \"/var/log/from-file.log\"\n" + std::string(kMinimalFile));
  EXPECT_EQ(load_ok({"--config", file.path()}).log_file, "/var/log/from-file.log");
  EXPECT_EQ(load_ok({"--config", file.path(), "--log-file", "/var/log/from-flag.log"}).log_file,
            "/var/log/from-flag.log");
}

TEST(Config, MemberFlagsReplaceTheFilesMembers) {
  TempFile file(kFullFile);
  const auto config = load_ok({"--config", file.path(), "--node-id", "5", "--member", "5,10.0.0.5:8101,10.0.0.5:8201",
                               "--member", "6,[::1]:8102,[::1]:8202"});
  const std::vector<cohort::Member> expected{{5, "10.0.0.5:8101", "10.0.0.5:8201"}, {6, "[::1]:8102", "[::1]:8202"}};
  EXPECT_EQ(config.node.members, expected);
}

TEST(Config, FlagsAloneMakeAConfiguration) {
  const auto config =
      load_ok({"--node-id", "1", "--cluster-id", "9", "--data-dir", "/tmp/x", "--member", "1,127.0.0.1:0,127.0.0.1:0"});
  EXPECT_EQ(config.node.node_id, 1U);
  EXPECT_EQ(config.node.cluster_id, 9U);
  ASSERT_EQ(config.node.members.size(), 1U);
  EXPECT_EQ(config.node.members[0].peer_endpoint, "127.0.0.1:0");
}

TEST(Config, HelpAndVersionExitZero) {
  auto help = load_config(std::vector<std::string>{"--help"});
  ASSERT_FALSE(help.has_value());
  EXPECT_EQ(help.error().exit_code, 0);
  EXPECT_THAT(help.error().message, HasSubstr("--config"));
  EXPECT_THAT(help.error().message, HasSubstr("--member"));
  EXPECT_THAT(help.error().message, HasSubstr("--election-timeout-ms"));
  EXPECT_THAT(help.error().message, HasSubstr("--session-timeout-ms"));
  EXPECT_THAT(help.error().message, HasSubstr("--max-sessions"));
  EXPECT_THAT(help.error().message, HasSubstr("--credentials-file"));
  EXPECT_THAT(help.error().message, HasSubstr("--log-file"));

  auto version = load_config(std::vector<std::string>{"--version"});
  ASSERT_FALSE(version.has_value());
  EXPECT_EQ(version.error().exit_code, 0);
  EXPECT_EQ(version.error().message, cohort::kVersionString);
}

TEST(Config, ArgcArgvFormSkipsTheProgramName) {
  std::string program = "cohortd";
  std::string flag = "--help";
  std::vector<char*> argv{program.data(), flag.data()};
  auto help = load_config(static_cast<int>(argv.size()), argv.data());
  ASSERT_FALSE(help.has_value());
  EXPECT_EQ(help.error().exit_code, 0);
}

TEST(Config, UnknownFlagAndMissingValueAreRefused) {
  EXPECT_THAT(refusal({"--bogus"}), HasSubstr("--bogus"));
  EXPECT_THAT(refusal({"--node-id"}), HasSubstr("--node-id"));
  EXPECT_THAT(refusal({"stray"}), HasSubstr("stray"));
}

// ---- the file refused ----

TEST(Config, MissingOrUnreadableFileIsRefused) {
  const auto missing = (std::filesystem::temp_directory_path() / "cohort-config-test-does-not-exist.toml").string();
  EXPECT_THAT(refusal({"--config", missing}),
              HasSubstr("config " + missing + ": cannot open: No such file or directory"));
  const auto directory = std::filesystem::temp_directory_path().string();
  EXPECT_THAT(refusal({"--config", directory}), HasSubstr("config " + directory + ": is a directory"));
}

TEST(Config, SyntaxErrorsNameLineAndColumn) {
  TempFile file("node_id = 1\ncluster_id = = 2\n");
  const auto message = refusal({"--config", file.path()});
  EXPECT_THAT(message, HasSubstr("config " + file.path() + ": syntax error at line 2, column"));
  // A key given twice is a syntax error in TOML.
  EXPECT_THAT(refusal_of_file("node_id = 1\nnode_id = 2\n"), HasSubstr("syntax error at line 2"));
}

TEST(Config, UnknownSettingsAreRefusedWithTheirLine) {
  // After [[members]], a key belongs to the member: the root's unknown key goes first.
  TempFile file("nodeid = 3\n" + std::string(kMinimalFile) + "[timeouts]\nheartbeat = 5\n");
  const auto message = refusal({"--config", file.path()});
  EXPECT_THAT(message, HasSubstr("config " + file.path() + ": unknown setting 'nodeid' (line 1)"));
  EXPECT_THAT(message, HasSubstr("config " + file.path() + ": unknown setting 'timeouts.heartbeat' (line 10)"));

  EXPECT_THAT(refusal_of_file(std::string(kMinimalFile) + "host = \"x\"\n"),
              HasSubstr("unknown setting 'members[0].host' (line 8)"));
  EXPECT_THAT(refusal_of_file(std::string(kMinimalFile) + "[timeout]\n"), HasSubstr("unknown setting 'timeout'"));
  EXPECT_THAT(refusal_of_file("[sessions]\ntimeout = 5000\n"),
              HasSubstr("unknown setting 'sessions.timeout' (line 2)"));
}

TEST(Config, WrongTypesAreRefused) {
  EXPECT_THAT(refusal_of_file("node_id = \"1\"\n"), HasSubstr("node_id: expected an integer, got a string"));
  EXPECT_THAT(refusal_of_file("cluster_id = 4.5\n"),
              HasSubstr("cluster_id: expected an integer, got a floating-point number"));
  EXPECT_THAT(refusal_of_file("data_dir = 5\n"), HasSubstr("data_dir: expected a string, got an integer"));
  EXPECT_THAT(refusal_of_file("service = true\n"), HasSubstr("service: expected a string, got a boolean"));
  EXPECT_THAT(refusal_of_file("segment_size = \"64M\"\n"),
              HasSubstr("segment_size: expected an integer, got a string"));
  EXPECT_THAT(refusal_of_file("max_message_size = [1]\n"),
              HasSubstr("max_message_size: expected an integer, got an array"));
  EXPECT_THAT(refusal_of_file("timeouts = 5\n"), HasSubstr("timeouts: expected a table ([timeouts]), got an integer"));
  EXPECT_THAT(refusal_of_file("sessions = 5\n"), HasSubstr("sessions: expected a table ([sessions]), got an integer"));
  EXPECT_THAT(refusal_of_file("[sessions]\nmax_sessions = \"many\"\n"),
              HasSubstr("sessions.max_sessions: expected an integer, got a string"));
  EXPECT_THAT(refusal_of_file("[sessions]\ntimeout_ms = 1.5\n"),
              HasSubstr("sessions.timeout_ms: expected an integer, got a floating-point number"));
  EXPECT_THAT(refusal_of_file("[sessions]\ncredentials_file = [\"a\"]\n"),
              HasSubstr("sessions.credentials_file: expected a string, got an array"));
  EXPECT_THAT(refusal_of_file("[timeouts]\nheartbeat_ms = 5.5\n"),
              HasSubstr("timeouts.heartbeat_ms: expected an integer, got a floating-point number (config "));
  EXPECT_THAT(refusal_of_file("log_file = 5\n"), HasSubstr("log_file: expected a string, got an integer"));
  EXPECT_THAT(refusal_of_file("log_file = \"\"\n"), HasSubstr("log_file: is empty (leave it out to log to stderr)"));
  EXPECT_THAT(refusal_of_file("members = \"1,2,3\"\n"),
              HasSubstr("members: expected an array of tables ([[members]]), got a string"));
  EXPECT_THAT(refusal_of_file("members = [1]\n"),
              HasSubstr("members[0]: expected a table with id, peer, client and (optionally) admin"));
  EXPECT_THAT(refusal_of_file("[[members]]\nid = 1\npeer = 7101\nclient = \"127.0.0.1:7201\"\n"),
              HasSubstr("members[0].peer: expected a string, got an integer"));
}

TEST(Config, TypeErrorsNameTheLine) {
  TempFile file("cluster_id = 1\n\nnode_id = \"one\"\n");
  EXPECT_THAT(refusal({"--config", file.path()}),
              HasSubstr("node_id: expected an integer, got a string (config " + file.path() + ", line 3)"));
}

TEST(Config, MissingMemberFieldsAreRefused) {
  const auto message =
      refusal_of_file("[[members]]\nid = 1\npeer = \"127.0.0.1:7101\"\n[[members]]\nclient = \"a:1\"\n");
  EXPECT_THAT(message, HasSubstr("members[0].client: missing"));
  EXPECT_THAT(message, HasSubstr("members[1].id: missing"));
  EXPECT_THAT(message, HasSubstr("members[1].peer: missing"));
}

TEST(Config, OutOfRangeValuesAreRefused) {
  EXPECT_THAT(refusal_of_file("node_id = 5000000000\n"),
              HasSubstr("node_id: 5000000000 is out of range (0..4294967295)"));
  EXPECT_THAT(refusal_of_file("cluster_id = -3\n"), HasSubstr("cluster_id: -3 is out of range"));
  EXPECT_THAT(refusal_of_file("[timeouts]\nheartbeat_ms = -1\n"),
              HasSubstr("timeouts.heartbeat_ms: -1 is out of range (0..3600000)"));
  EXPECT_THAT(refusal_of_file("[timeouts]\nelection_max_ms = 999999999\n"),
              HasSubstr("timeouts.election_max_ms: 999999999 is out of range"));
  EXPECT_THAT(refusal_of_file("segment_size = -4096\n"), HasSubstr("segment_size: -4096 is out of range"));
  EXPECT_THAT(refusal_of_file("[[members]]\nid = -1\npeer = \"a:1\"\nclient = \"a:2\"\n"),
              HasSubstr("members[0].id: -1 is out of range (0..4294967295)"));
  EXPECT_THAT(refusal_of_file("[sessions]\nmax_tombstones = -1\n"),
              HasSubstr("sessions.max_tombstones: -1 is out of range"));
  EXPECT_THAT(refusal_of_file("[sessions]\ntimeout_ms = 5000000000\n"),
              HasSubstr("sessions.timeout_ms: 5000000000 is out of range (0..4294967295)"));
  EXPECT_THAT(refusal_of_file("[sessions]\ntombstone_max_age_s = -86400\n"),
              HasSubstr("sessions.tombstone_max_age_s: -86400 is out of range"));
  EXPECT_THAT(refusal_of_file("[sessions]\negress_window_bytes = -1\n"),
              HasSubstr("sessions.egress_window_bytes: -1 is out of range"));
}

TEST(Config, BadChoicesAreRefused) {
  EXPECT_THAT(refusal_of_file("service = \"kvx\"\n"), HasSubstr("service: 'kvx' is not one of kv, counter, echo"));
  EXPECT_THAT(refusal_of_file("sync = \"always\"\n"), HasSubstr("sync: 'always' is not one of fsync, none"));
  EXPECT_THAT(refusal_of_file("log_level = \"verbose\"\n"),
              HasSubstr("log_level: 'verbose' is not one of trace, debug, info, warn, error"));
  EXPECT_THAT(refusal_of_file("idle = \"sleep\"\n"), HasSubstr("idle: 'sleep' is not one of block, yield, spin"));
  EXPECT_THAT(refusal_of_file("", {"--idle", "busy"}), HasSubstr("--idle: 'busy' is not one of block, yield, spin"));
}

TEST(Config, TheIdleStrategyIsBlockUnlessTheFileOrAFlagSaysOtherwise) {
  TempFile minimal(kMinimalFile);
  EXPECT_EQ(load_ok({"--config", minimal.path()}).node.idle, cohort::IdleStrategy::block);
  TempFile file("idle = \"spin\"\n" + std::string(kMinimalFile));
  EXPECT_EQ(load_ok({"--config", file.path()}).node.idle, cohort::IdleStrategy::spin);
  EXPECT_EQ(load_ok({"--config", file.path(), "--idle", "yield"}).node.idle, cohort::IdleStrategy::yield);
}

TEST(Config, EveryProblemIsReportedOnALineOfItsOwn) {
  const auto message = refusal_of_file("node_id = \"x\"\nservice = \"y\"\nbogus = 1\n", {"--sync", "sometimes"});
  EXPECT_THAT(message, HasSubstr("node_id: expected an integer"));
  EXPECT_THAT(message, HasSubstr("service: 'y' is not one of"));
  EXPECT_THAT(message, HasSubstr("unknown setting 'bogus'"));
  EXPECT_THAT(message, HasSubstr("--sync: 'sometimes' is not one of fsync, none"));
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 3);
  // Until every setting reads cleanly, validate() stays quiet: its complaints would be about the gaps.
  EXPECT_THAT(message, Not(HasSubstr("members:")));
}

// ---- the flags refused ----

TEST(Config, BadFlagValuesAreRefused) {
  EXPECT_THAT(refusal({"--node-id", "abc"}), HasSubstr("--node-id: 'abc' is not an integer"));
  EXPECT_THAT(refusal({"--node-id", "-1"}), HasSubstr("--node-id: -1 is out of range (0..4294967295)"));
  EXPECT_THAT(refusal({"--node-id", "4294967296"}), HasSubstr("--node-id: 4294967296 is out of range"));
  EXPECT_THAT(refusal({"--cluster-id", "99999999999999999999999"}),
              HasSubstr("--cluster-id: 99999999999999999999999 is out of range (0..18446744073709551615)"));
  EXPECT_THAT(refusal({"--heartbeat-ms", "1.5"}), HasSubstr("--heartbeat-ms: '1.5' is not an integer"));
  EXPECT_THAT(refusal({"--client-keepalive-ms", ""}), HasSubstr("--client-keepalive-ms: '' is not an integer"));
  EXPECT_THAT(refusal({"--segment-size", "64M"}), HasSubstr("--segment-size: '64M' is not an integer"));
  EXPECT_THAT(refusal({"--max-message-size", "-5"}), HasSubstr("--max-message-size: -5 is out of range"));
  EXPECT_THAT(refusal({"--service", "kvx"}), HasSubstr("--service: 'kvx' is not one of kv, counter, echo"));
  EXPECT_THAT(refusal({"--sync", "always"}), HasSubstr("--sync: 'always' is not one of fsync, none"));
  EXPECT_THAT(refusal({"--log-level", "loud"}), HasSubstr("--log-level: 'loud' is not one of trace"));
  EXPECT_THAT(refusal({"--session-timeout-ms", "10s"}), HasSubstr("--session-timeout-ms: '10s' is not an integer"));
  EXPECT_THAT(refusal({"--max-sessions", "-1"}), HasSubstr("--max-sessions: -1 is out of range"));
  EXPECT_THAT(refusal({"--credentials-file", ""}), HasSubstr("--credentials-file: is empty"));
  EXPECT_THAT(refusal({"--log-file", ""}), HasSubstr("--log-file: is empty"));
}

TEST(Config, BadElectionTimeoutRangesAreRefused) {
  EXPECT_THAT(refusal({"--election-timeout-ms", "500"}),
              HasSubstr("--election-timeout-ms: '500' is not MIN-MAX in milliseconds (e.g. 500-1000)"));
  EXPECT_THAT(refusal({"--election-timeout-ms", "500-abc"}),
              HasSubstr("--election-timeout-ms: 'abc' is not an integer"));
  EXPECT_THAT(refusal({"--election-timeout-ms", "500-9999999"}),
              HasSubstr("--election-timeout-ms: 9999999 is out of range (0..3600000)"));
}

TEST(Config, AMemberMayNameItsAdminEndpoint) {
  auto config =
      load_config({"--node-id", "2", "--cluster-id", "7", "--data-dir", "/tmp/x", "--member",
                   "1,127.0.0.1:7101,127.0.0.1:7201", "--member", "2,127.0.0.1:7102,127.0.0.1:7202,127.0.0.1:7302"});
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->node.members[0].admin_endpoint, "");
  EXPECT_EQ(config->node.members[1].admin_endpoint, "127.0.0.1:7302");
}

TEST(Config, BadMemberFlagsAreRefused) {
  EXPECT_THAT(refusal({"--member", "1,127.0.0.1:7101"}),
              HasSubstr("--member: '1,127.0.0.1:7101' is not ID,PEER_HOST:PORT,CLIENT_HOST:PORT"));
  EXPECT_THAT(refusal({"--member", "1,a:1,b:2,c:3,d:4"}), HasSubstr("is not ID,PEER_HOST:PORT,CLIENT_HOST:PORT"));
  EXPECT_THAT(refusal({"--node-id", "1", "--data-dir", "/tmp/x", "--member", "1,127.0.0.1:1,127.0.0.1:2,nonsense"}),
              HasSubstr("members: member 1 admin endpoint"));
  EXPECT_THAT(refusal({"--node-id", "1", "--data-dir", "/tmp/x", "--member", "1,127.0.0.1:1,127.0.0.1:2,127.0.0.1:2"}),
              HasSubstr("members: member 1 admin endpoint 127.0.0.1:2 is also its client endpoint"));
  EXPECT_THAT(refusal({"--member", "x,a:1,b:2"}), HasSubstr("--member: 'x,a:1,b:2': the id 'x' is not an integer"));
}

// ---- the credentials file ----

// Comments, blank lines (CRLF ones too), a CRLF line, inner and edge spaces kept, no newline at the end.
constexpr const char* kCredentialsFile = "# clients allowed in\n\nalpha\r\n\r\nbeta\n  spaced out \n#gamma\ndelta";

TEST(Credentials, EachLineIsACredentialExceptCommentsAndBlankLines) {
  TempFile file(kCredentialsFile);
  auto credentials = cohortd::read_credentials(file.path());
  ASSERT_TRUE(credentials.has_value()) << credentials.error();
  EXPECT_THAT(*credentials, ElementsAre("alpha", "beta", "  spaced out ", "delta"));
}

TEST(Credentials, OnlyOneTrailingCarriageReturnIsStripped) {
  TempFile file("a\r\r\nb\rc\n");
  auto credentials = cohortd::read_credentials(file.path());
  ASSERT_TRUE(credentials.has_value()) << credentials.error();
  EXPECT_THAT(*credentials, ElementsAre("a\r", "b\rc"));
}

TEST(Credentials, FileSettingInstallsACredentialListAuthenticator) {
  TempFile credentials(kCredentialsFile);
  TempFile config(std::string(kMinimalFile) + "[sessions]\ncredentials_file = \"" + credentials.path() + "\"\n");
  const auto loaded = load_ok({"--config", config.path()});
  EXPECT_EQ(loaded.credentials_file, credentials.path());
  EXPECT_EQ(loaded.credential_count, 4U);
  ASSERT_NE(loaded.node.authenticator, nullptr);
  auto& authenticator = *loaded.node.authenticator;
  EXPECT_TRUE(accepts(authenticator, "alpha"));
  EXPECT_TRUE(accepts(authenticator, "  spaced out "));
  EXPECT_TRUE(accepts(authenticator, "delta"));
  EXPECT_FALSE(accepts(authenticator, "alpha\r"));
  EXPECT_FALSE(accepts(authenticator, "#gamma"));
  EXPECT_FALSE(accepts(authenticator, "spaced out"));
  EXPECT_FALSE(accepts(authenticator, ""));
}

TEST(Credentials, FlagWinsOverTheFilesSetting) {
  TempFile from_file("file-secret\n");
  TempFile from_flag("flag-secret\n");
  TempFile config(std::string(kMinimalFile) + "[sessions]\ncredentials_file = \"" + from_file.path() + "\"\n");
  const auto loaded = load_ok({"--config", config.path(), "--credentials-file", from_flag.path()});
  EXPECT_EQ(loaded.credentials_file, from_flag.path());
  ASSERT_NE(loaded.node.authenticator, nullptr);
  EXPECT_TRUE(accepts(*loaded.node.authenticator, "flag-secret"));
  EXPECT_FALSE(accepts(*loaded.node.authenticator, "file-secret"));
}

TEST(Credentials, MissingUnreadableOrEmptyFileIsRefused) {
  const auto missing = (std::filesystem::temp_directory_path() / "cohort-config-test-no-credentials").string();
  TempFile config(std::string(kMinimalFile) + "[sessions]\ncredentials_file = \"" + missing + "\"\n");
  EXPECT_THAT(refusal({"--config", config.path()}),
              HasSubstr("sessions.credentials_file: " + missing + ": cannot open: No such file or directory"));
  EXPECT_THAT(refusal({"--config", config.path(), "--credentials-file", missing}),
              HasSubstr("--credentials-file: " + missing + ": cannot open: No such file or directory"));

  const auto directory = std::filesystem::temp_directory_path().string();
  EXPECT_THAT(refusal({"--config", config.path(), "--credentials-file", directory}),
              HasSubstr("--credentials-file: " + directory + ": is a directory"));

  TempFile empty("");
  EXPECT_THAT(refusal({"--config", config.path(), "--credentials-file", empty.path()}),
              HasSubstr("--credentials-file: " + empty.path() + ": holds no credential"));
  TempFile only_comments("# nobody yet\n\r\n\n");
  EXPECT_THAT(refusal({"--config", config.path(), "--credentials-file", only_comments.path()}),
              HasSubstr(only_comments.path() + ": holds no credential"));

  EXPECT_THAT(refusal_of_file(std::string(kMinimalFile) + "[sessions]\ncredentials_file = \"\"\n"),
              HasSubstr("sessions.credentials_file: is empty (leave it out to accept every client)"));
}

TEST(Credentials, ProblemsAreReportedWithTheOthers) {
  const auto missing = (std::filesystem::temp_directory_path() / "cohort-config-test-no-credentials").string();
  const auto message = refusal({"--node-id", "x", "--credentials-file", missing});
  EXPECT_THAT(message, HasSubstr("--node-id: 'x' is not an integer"));
  EXPECT_THAT(message, HasSubstr("--credentials-file: " + missing + ": cannot open"));
}

// ---- validate() on the merged result ----

TEST(Config, ValidationRunsOnTheMergedResult) {
  TempFile file(kFullFile);
  EXPECT_THAT(refusal({"--config", file.path(), "--node-id", "4"}),
              HasSubstr("node_id: 4 is not among the members (1, 2, 3)"));
  EXPECT_THAT(refusal({"--config", file.path(), "--heartbeat-ms", "300"}),
              HasSubstr("timeouts.heartbeat_ms: 300 ms must be below timeouts.election_min_ms (300 ms)"));
  EXPECT_THAT(refusal({"--config", file.path(), "--member", "2,a:1,a:1"}), HasSubstr("members: a:1 is used twice"));
  // The file's keep-alive is 100 ms: a session must outlive 4 of them.
  EXPECT_THAT(refusal({"--config", file.path(), "--session-timeout-ms", "300"}),
              HasSubstr("sessions.timeout_ms: 300 ms must be at least 4 times timeouts.client_keepalive_ms (100 ms)"));
  EXPECT_THAT(refusal({"--config", file.path(), "--max-sessions", "0"}),
              HasSubstr("sessions.max_sessions: 0 is not valid"));
  EXPECT_THAT(refusal_of_file(std::string(kMinimalFile) + "[sessions]\negress_window_messages = 0\n"),
              HasSubstr("sessions.egress_window_messages: 0 is not valid"));
  // Nothing set at all: validate() names every required setting.
  const auto message = refusal({});
  EXPECT_THAT(message, HasSubstr("node_id: 0 is not valid"));
  EXPECT_THAT(message, HasSubstr("cluster_id: 0 is not valid"));
  EXPECT_THAT(message, HasSubstr("members: none given"));
  EXPECT_THAT(message, HasSubstr("data_dir: is empty"));
}

TEST(Validate, AcceptsValidOptions) {
  EXPECT_EQ(cohort::validate(valid_options()), std::nullopt);
  auto single = valid_options();
  single.members = {{1, "127.0.0.1:0", "127.0.0.1:0"}};  // port 0 twice: two free ports, no clash
  EXPECT_EQ(cohort::validate(single), std::nullopt);
}

TEST(Validate, NodeIdMustBeAmongTheMembers) {
  auto options = valid_options();
  options.node_id = 4;
  EXPECT_EQ(problems_of(options), "node_id: 4 is not among the members (1, 2, 3)");
  options.node_id = 0;
  EXPECT_EQ(problems_of(options), "node_id: 0 is not valid (node ids start at 1)");
}

TEST(Validate, ClusterIdMustNotBeZero) {
  auto options = valid_options();
  options.cluster_id = 0;
  EXPECT_THAT(problems_of(options), HasSubstr("cluster_id: 0 is not valid"));
}

TEST(Validate, MemberIdsMustBeNonZeroAndUnique) {
  auto options = valid_options();
  options.members[2].id = 2;
  EXPECT_EQ(problems_of(options), "members: id 2 appears twice");
  options.members[0].id = 2;
  options.node_id = 2;
  EXPECT_EQ(problems_of(options), "members: id 2 appears 3 times");
  options = valid_options();
  options.members[1].id = 0;
  EXPECT_EQ(problems_of(options), "members: id 0 is not valid (member ids start at 1)");
  options.members.clear();
  EXPECT_THAT(problems_of(options), HasSubstr("members: none given"));
}

TEST(Validate, EndpointsMustParse) {
  auto options = valid_options();
  options.members[1].peer_endpoint = "nonsense";
  options.members[2].client_endpoint = "127.0.0.1:99999";
  const auto problems = problems_of(options);
  EXPECT_THAT(problems, HasSubstr("members: member 2 peer endpoint 'nonsense' is not host:port"));
  EXPECT_THAT(problems, HasSubstr("members: member 3 client endpoint '127.0.0.1:99999' has no valid port"));
}

TEST(Validate, EndpointsMustNotRepeat) {
  auto options = valid_options();
  options.members[1].client_endpoint = "127.0.0.1:7101";
  EXPECT_EQ(problems_of(options), "members: 127.0.0.1:7101 is used twice: member 1 peer and member 2 client");
  options.members[2].peer_endpoint = "127.0.0.1:7101";
  EXPECT_EQ(problems_of(options),
            "members: 127.0.0.1:7101 is used 3 times: member 1 peer, member 2 client and member 3 peer");
  options = valid_options();
  options.members[0].client_endpoint = "127.0.0.1:7101";  // a member's own two endpoints clash too
  EXPECT_EQ(problems_of(options), "members: 127.0.0.1:7101 is used twice: member 1 peer and member 1 client");
}

TEST(Validate, AtMost64MembersFitTheHandshake) {
  auto options = valid_options();
  options.members.clear();
  for (std::uint32_t id = 1; id <= 65; ++id)
    options.members.push_back(
        cohort::Member{id, "10.0.0." + std::to_string(id) + ":7100", "10.0.0." + std::to_string(id) + ":7200"});
  EXPECT_EQ(problems_of(options), "members: 65 given, at most 64 are supported");
  options.members.pop_back();
  EXPECT_EQ(cohort::validate(options), std::nullopt);
}

TEST(Validate, TimeoutsMustBeOrdered) {
  auto options = valid_options();
  options.heartbeat_interval = 500ms;
  EXPECT_EQ(problems_of(options), "timeouts.heartbeat_ms: 500 ms must be below timeouts.election_min_ms (500 ms)");
  options = valid_options();
  options.election_timeout_min = 1000ms;
  EXPECT_EQ(problems_of(options),
            "timeouts.election_min_ms: 1000 ms must be below timeouts.election_max_ms (1000 ms, exclusive)");
  options = valid_options();
  options.heartbeat_interval = 0ms;
  options.client_keepalive_interval = 0ms;
  const auto problems = problems_of(options);
  EXPECT_THAT(problems, HasSubstr("timeouts.heartbeat_ms: 0 ms is not positive"));
  EXPECT_THAT(problems, HasSubstr("timeouts.client_keepalive_ms: 0 ms is not positive"));
}

TEST(Validate, DataDirMustNotBeEmpty) {
  auto options = valid_options();
  options.data_dir.clear();
  EXPECT_THAT(problems_of(options), HasSubstr("data_dir: is empty"));
}

TEST(Validate, SizesMustBeInRange) {
  auto options = valid_options();
  options.segment_size = 4095;
  options.max_message_size = 0;
  auto problems = problems_of(options);
  EXPECT_THAT(problems, HasSubstr("segment_size: 4095 bytes is below the minimum of 4096 bytes"));
  EXPECT_THAT(problems, HasSubstr("max_message_size: 0 bytes is outside 1..16777216 bytes"));
  options = valid_options();
  options.max_message_size = (16U << 20U) + 1;
  EXPECT_THAT(problems_of(options), HasSubstr("max_message_size: 16777217 bytes is outside"));
  options.max_message_size = 16U << 20U;
  options.segment_size = 4096;
  EXPECT_EQ(cohort::validate(options), std::nullopt);
}

TEST(Validate, SessionTimeoutOutlivesFourKeepalivesAnd100Ms) {
  auto options = valid_options();
  options.client_keepalive_interval = 250ms;
  options.session_timeout = 999ms;
  EXPECT_EQ(problems_of(options),
            "sessions.timeout_ms: 999 ms must be at least 4 times timeouts.client_keepalive_ms (250 ms): a silent "
            "client is disconnected only after 4 keep-alive intervals, and its session must outlive that");
  options.session_timeout = 1000ms;
  EXPECT_EQ(cohort::validate(options), std::nullopt);

  options.client_keepalive_interval = 10ms;
  options.session_timeout = 99ms;  // 4 keep-alives are covered, 100 ms is not
  EXPECT_EQ(problems_of(options), "sessions.timeout_ms: 99 ms is below the minimum of 100 ms");
  options.session_timeout = 100ms;
  EXPECT_EQ(cohort::validate(options), std::nullopt);

  options.session_timeout = 24h + 1ms;
  EXPECT_THAT(problems_of(options), HasSubstr("sessions.timeout_ms: 86400001 ms is above the maximum"));
}

TEST(Validate, SessionLimitsMustBePositiveExceptTombstones) {
  auto options = valid_options();
  options.max_sessions = 0;
  options.egress_window_messages = 0;
  options.egress_window_bytes = 0;
  const auto problems = problems_of(options);
  EXPECT_THAT(problems, HasSubstr("sessions.max_sessions: 0 is not valid"));
  EXPECT_THAT(problems, HasSubstr("sessions.egress_window_messages: 0 is not valid"));
  EXPECT_THAT(problems, HasSubstr("sessions.egress_window_bytes: 0 bytes is not valid"));

  options = valid_options();
  options.max_sessions = 1;
  options.egress_window_messages = 1;
  options.egress_window_bytes = 1;
  options.max_tombstones = 0;  // no tombstones: resuming a closed session answers "unknown"
  options.tombstone_max_age = 0s;
  EXPECT_EQ(cohort::validate(options), std::nullopt);

  options.tombstone_max_age = -1s;
  EXPECT_THAT(problems_of(options), HasSubstr("sessions.tombstone_max_age_s: -1 s is outside 0.."));
}

TEST(Validate, LogLevelMustBeOneOfTheLevels) {
  cohort::NodeOptions options = valid_options();
  options.log_level = cohort::LogLevel::off;  // silent is a choice
  EXPECT_EQ(cohort::validate(options), std::nullopt);
  options.log_level = static_cast<cohort::LogLevel>(9);
  EXPECT_THAT(problems_of(options), HasSubstr("log_level: 9 is not one of debug, info, warn, error, off"));
}

TEST(Validate, EveryLineNamesItsSetting) {
  cohort::NodeOptions options;  // everything wrong that can be
  options.heartbeat_interval = 0ms;
  options.election_timeout_min = 0ms;
  options.client_keepalive_interval = 0ms;
  options.segment_size = 0;
  options.max_message_size = 0;
  options.session_timeout = 0ms;
  options.max_sessions = 0;
  options.tombstone_max_age = -1s;
  options.egress_window_messages = 0;
  options.egress_window_bytes = 0;
  const auto problems = problems_of(options);
  std::vector<std::string> lines;
  std::string line;
  for (const char c : problems + "\n") {
    if (c == '\n') {
      lines.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  EXPECT_EQ(lines.size(), 14U) << problems;
  const std::vector<std::string> settings{"node_id",   "cluster_id",   "members",          "data_dir",
                                          "timeouts.", "segment_size", "max_message_size", "sessions."};
  for (const auto& text : lines) {
    const bool named = std::any_of(settings.begin(), settings.end(),
                                   [&](const std::string& setting) { return text.starts_with(setting); });
    EXPECT_TRUE(named) << text;
  }
}

// ---- the authenticator cohortd installs ----

TEST(CredentialListAuthenticator, AcceptsListedCredentialsAndRefusesOthers) {
  cohort::CredentialListAuthenticator authenticator({"alpha", "beta"});
  EXPECT_EQ(authenticator.refuse(1, 2, bytes("alpha")), std::nullopt);
  EXPECT_EQ(authenticator.refuse(3, 4, bytes("beta")), std::nullopt);
  EXPECT_THAT(authenticator.refuse(1, 2, bytes("gamma")), Optional(std::string("credential not allowed")));
  // Byte for byte: no prefix, extension or case folding.
  EXPECT_FALSE(accepts(authenticator, "alph"));
  EXPECT_FALSE(accepts(authenticator, "alphab"));
  EXPECT_FALSE(accepts(authenticator, "Alpha"));
}

TEST(CredentialListAuthenticator, EmptyCredentialIsRefusedUnlessListed) {
  cohort::CredentialListAuthenticator without({"alpha"});
  EXPECT_THAT(without.refuse(1, 2, {}), Optional(std::string("credential not allowed")));
  cohort::CredentialListAuthenticator with({"alpha", ""});
  EXPECT_EQ(with.refuse(1, 2, {}), std::nullopt);
  cohort::CredentialListAuthenticator none({});
  EXPECT_FALSE(accepts(none, ""));
  EXPECT_FALSE(accepts(none, "alpha"));
}

TEST(CredentialListAuthenticator, ClientIdDoesNotMatterAndDuplicatesCountOnce) {
  cohort::CredentialListAuthenticator authenticator({"alpha", "alpha", std::string("b\0c", 3)});
  EXPECT_EQ(authenticator.size(), 2U);
  EXPECT_EQ(authenticator.refuse(0, 0, bytes("alpha")), std::nullopt);
  EXPECT_EQ(authenticator.refuse(~0ULL, ~0ULL, bytes("alpha")), std::nullopt);
  // Opaque bytes: a NUL inside a credential is part of it.
  EXPECT_TRUE(accepts(authenticator, std::string_view("b\0c", 3)));
  EXPECT_FALSE(accepts(authenticator, "b"));
}

}  // namespace
