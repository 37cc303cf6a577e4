// Golden scenarios: scripted clusters whose trace is recorded beside the script (the idea of etcd-io/raft's
// interaction tests). Each file in testdata/raft is a list of blocks:
//
//   # comments, kept as they are
//   <command>
//   ----
//   <the trace the command produced, one line per event>
//   <blank line>
//
// The test replays every command on a fresh cluster and compares the trace with the file. Run with
// COHORT_REWRITE_GOLDEN=1 to record the traces instead (then read the diff: a golden file is only as good as
// its review).
//
// Commands:
//   cluster N [prevote=off] [checkquorum=off]  N nodes (ids 1..N), time 0, storage durable at once
//   tick D                 advance virtual time by D (e.g. 600ms, 2s) in 10ms steps, ticking every node and
//                          delivering after each step; heartbeats and their responses are counted, not shown,
//                          unless they are of another term than the receiver's or change something; so are vote
//                          requests a (pre-)candidate sends again on a cut link, after the first
//   campaign N             tick node N alone until its election timer fires
//   deliver                deliver every message in flight, and the ones they cause, until quiet
//   drop                   lose every message in flight
//   propose N TEXT         propose a command at node N
//   transfer N M           ask leader N to hand leadership to M
//   cut A B | isolate N | heal      cut one link both ways, every link of N, or restore every link
//   storage N manual|auto  whether node N's writes become durable only on `persist` or at once
//   persist N              make node N's writes durable
//   status                 every node: role, term, vote, leader, commit, durable index, log terms
//
// Trace lines: "A->B <message>" for a delivered message ("[dropped]" if the link is cut), "N: ..." for a change
// of node N (role, term, known leader, truncation, commit), "@T" before what happened at time T within a tick.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "consensus/memory_log.h"
#include "consensus/raft.h"
#include "raft_cluster_config.h"

#ifndef COHORT_RAFT_TESTDATA_DIR
#error "COHORT_RAFT_TESTDATA_DIR must name the directory of the golden scenario files"
#endif

namespace cohort::consensus {
namespace {

using namespace std::chrono_literals;

constexpr Duration kStep = 10ms;

long long millis(Duration duration) {
  return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count());
}

std::string describe_entries(const std::vector<Entry>& entries) {
  std::string text = "[";
  for (const Entry& entry : entries) {
    if (text.size() > 1) text += ", ";
    text += fmt::format("{}/{}", entry.index.value(), entry.term.value());
    if (entry.type == EntryType::noop)
      text += " noop";
    else
      text += fmt::format(" {}", as_chars(entry.payload));
  }
  return text + "]";
}

std::string describe(const Message& message) {
  std::string text = fmt::format("{}->{} {} term={}", message.from.value(), message.to.value(), type_name(message),
                                 message.term.value());
  if (const auto* request = std::get_if<VoteRequest>(&message.body)) {
    text += fmt::format(" last={}/{}", request->last_index.value(), request->last_term.value());
    if (request->pre_vote) text += " pre-vote";
    if (request->transfer) text += " transfer";
  } else if (const auto* response = std::get_if<VoteResponse>(&message.body)) {
    text += response->granted ? " granted" : " refused";
    if (response->pre_vote) text += " pre-vote";
  } else if (const auto* append = std::get_if<AppendRequest>(&message.body)) {
    text += fmt::format(" prev={}/{} commit={} entries={}", append->prev_index.value(), append->prev_term.value(),
                        append->commit.value(), describe_entries(append->entries));
  } else if (const auto* answer = std::get_if<AppendResponse>(&message.body)) {
    if (answer->success)
      text += fmt::format(" ok match={}", answer->match_index.value());
    else
      text += fmt::format(" refused prev={} conflict_index={} conflict_term={}", answer->rejected_prev.value(),
                          answer->conflict_index.value(), answer->conflict_term.value());
  } else if (const auto* heartbeat = std::get_if<Heartbeat>(&message.body)) {
    text += fmt::format(" commit={}", heartbeat->commit.value());
  }
  return text;
}

std::string describe(std::optional<NodeId> node) { return node ? std::to_string(node->value()) : "none"; }

bool is_heartbeat_traffic(const Message& message) {
  return std::holds_alternative<Heartbeat>(message.body) || std::holds_alternative<HeartbeatResponse>(message.body);
}

/// A MemoryLogStore that remembers truncations, for the trace.
class TracedStore final : public LogStore {
 public:
  LogBase base() const override { return memory.base(); }
  LogIndex last_index() const override { return memory.last_index(); }
  std::optional<Term> term_at(LogIndex at) const override { return memory.term_at(at); }
  const Entry& entry(LogIndex at) const override { return memory.entry(at); }
  PersistSeq append(std::span<const Entry> entries) override { return memory.append(entries); }
  PersistSeq truncate_after(LogIndex at) override {
    truncations.push_back(fmt::format("log truncated after {} ({} entries dropped)", at.value(),
                                      memory.last_index().value() - at.value()));
    return memory.truncate_after(at);
  }
  PersistSeq compact(LogIndex up_to) override { return memory.compact(up_to); }
  PersistSeq reset(LogIndex at, Term term) override { return memory.reset(at, term); }
  PersistSeq install(const SnapshotPtr& snapshot) override { return memory.install(snapshot); }
  PersistSeq save_hard_state(const HardState& state) override { return memory.save_hard_state(state); }
  HardState hard_state() const override { return memory.hard_state(); }

  MemoryLogStore memory;
  std::vector<std::string> truncations;  // not yet reported
};

/// A cluster on virtual time with a network that only moves when told to.
class Scenario {
 public:
  /// Runs one command and returns its trace.
  std::vector<std::string> run(const std::string& command_line) {
    lines_.clear();
    std::istringstream words(command_line);
    std::string command;
    words >> command;
    std::vector<std::string> args;
    for (std::string word; words >> word;) args.push_back(word);

    if (command == "cluster") {
      start_cluster(args);
    } else if (nodes_.empty()) {
      fail("the first command must be `cluster`");
    } else if (command == "tick" && args.size() == 1) {
      tick(parse_duration(args[0]));
    } else if (command == "campaign" && args.size() == 1) {
      campaign(node(args[0]));
    } else if (command == "deliver" && args.empty()) {
      deliver_until_quiet(false);
    } else if (command == "drop" && args.empty()) {
      flush_all();
      for (const Message& message : network_) emit(describe(message) + " [dropped]");
      network_.clear();
    } else if (command == "propose" && args.size() == 2) {
      Node& at = node(args[0]);
      const auto result = at.raft->propose(EntryType::command, as_bytes(args[1]), now_);
      if (result.has_value())
        emit(fmt::format("{}: proposed {} at index {}", at.id, args[1], result.value().value()));
      else
        emit(fmt::format("{}: proposal refused ({})", at.id,
                         result.error() == ProposeError::not_leader ? "not leader" : "transferring"));
    } else if (command == "transfer" && args.size() == 2) {
      Node& at = node(args[0]);
      const auto status = at.raft->transfer_leadership(NodeId{node(args[1]).id}, now_);
      if (status.ok())
        emit(fmt::format("{}: transferring leadership to {}", at.id, args[1]));
      else
        emit(fmt::format("{}: transfer refused ({})", at.id,
                         status.error() == TransferError::not_leader ? "not leader" : "bad target"));
      report(at);
    } else if (command == "cut" && args.size() == 2) {
      cut(node(args[0]).id, node(args[1]).id);
    } else if (command == "isolate" && args.size() == 1) {
      const std::uint32_t lonely = node(args[0]).id;
      for (const auto& [id, other] : nodes_)
        if (id != lonely) cut(lonely, id);
    } else if (command == "heal" && args.empty()) {
      cuts_.clear();
    } else if (command == "storage" && args.size() == 2 && (args[1] == "manual" || args[1] == "auto")) {
      node(args[0]).manual_storage = args[1] == "manual";
    } else if (command == "persist" && args.size() == 1) {
      persist(node(args[0]));
    } else if (command == "status" && args.empty()) {
      status();
    } else {
      fail("unknown command or wrong arguments: " + command_line);
    }
    if (!nodes_.empty() && command != "status") flush_all();
    if (lines_.empty()) lines_.push_back("ok");
    return lines_;
  }

 private:
  struct Seen {
    Role role = Role::follower;
    Term term;
    std::optional<NodeId> leader;
    LogIndex commit;
  };
  struct Node {
    std::uint32_t id = 0;
    std::unique_ptr<TracedStore> store;
    std::unique_ptr<Raft> raft;
    bool manual_storage = false;
    std::deque<Outgoing> held;  // waiting for their `after` to become durable
    Seen seen;
  };

  void fail(const std::string& problem) {
    ADD_FAILURE() << problem;
    emit("error: " + problem);
  }

  void emit(std::string line) {
    if (!header_.empty()) {
      lines_.push_back(std::move(header_));
      header_.clear();
    }
    lines_.push_back(std::move(line));
  }

  Node& node(const std::string& word) {
    const auto it = nodes_.find(static_cast<std::uint32_t>(std::stoul(word)));
    if (it == nodes_.end()) {
      ADD_FAILURE() << "no node " << word;
      return nodes_.begin()->second;
    }
    return it->second;
  }

  static Duration parse_duration(const std::string& word) {
    std::size_t used = 0;
    const auto amount = static_cast<Duration::rep>(std::stoll(word, &used));
    const std::string unit = word.substr(used);
    if (unit == "ms") return std::chrono::milliseconds(amount);
    if (unit == "s") return std::chrono::seconds(amount);
    ADD_FAILURE() << "bad duration " << word;
    return Duration::zero();
  }

  void start_cluster(const std::vector<std::string>& args) {
    nodes_.clear();
    network_.clear();
    cuts_.clear();
    now_ = Time{0};
    if (args.empty()) return fail("cluster needs a size");
    const auto size = static_cast<std::uint32_t>(std::stoul(args[0]));
    bool pre_vote = true;
    bool check_quorum = true;
    for (std::size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "prevote=off")
        pre_vote = false;
      else if (args[i] == "checkquorum=off")
        check_quorum = false;
      else
        return fail("unknown cluster option " + args[i]);
    }
    for (std::uint32_t member = 1; member <= size; ++member) {
      const NodeId id{member};
      const Config config = cluster_config(id, size, pre_vote, check_quorum);
      Node& added = nodes_[id.value()];
      added.id = id.value();
      added.store = std::make_unique<TracedStore>();
      added.raft = std::make_unique<Raft>(config, *added.store, 7919ULL * id.value(), now_);
      added.seen = seen(added);
    }
    const Config& config = nodes_.begin()->second.raft->config();
    emit(fmt::format("{} nodes; heartbeat {}ms, election timeout {}ms..{}ms; pre-vote {}, check-quorum {}", size,
                     millis(config.heartbeat_interval), millis(config.election_timeout_min),
                     millis(config.election_timeout_max), pre_vote ? "on" : "off", check_quorum ? "on" : "off"));
  }

  static Seen seen(const Node& node) {
    return Seen{node.raft->role(), node.raft->term(), node.raft->leader(), node.raft->commit_index()};
  }

  /// Emits what changed at `node` since it was last looked at.
  void report(Node& node) {
    const Seen now = seen(node);
    Seen& before = node.seen;
    if (now.role != before.role)
      emit(fmt::format("{}: {} -> {} at term {}", node.id, to_string(before.role), to_string(now.role),
                       now.term.value()));
    else if (now.term != before.term)
      emit(fmt::format("{}: term {} -> {}", node.id, before.term.value(), now.term.value()));
    if (now.leader != before.leader && now.leader && now.role != Role::leader)
      emit(fmt::format("{}: leader is {}", node.id, describe(now.leader)));
    for (std::string& truncation : node.store->truncations) emit(fmt::format("{}: {}", node.id, truncation));
    node.store->truncations.clear();
    if (now.commit != before.commit)
      emit(fmt::format("{}: commit {} -> {}", node.id, before.commit.value(), now.commit.value()));
    before = now;
  }

  /// Collects the node's output; makes its writes durable unless its storage is manual; sends what may leave.
  void flush(Node& node) {
    Ready ready;
    node.raft->take_ready(ready);
    for (Outgoing& out : ready.messages) node.held.push_back(std::move(out));
    if (!node.manual_storage) make_durable(node);
    release(node);
    report(node);
  }
  void flush_all() {
    for (auto& [id, node] : nodes_) flush(node);
  }

  void make_durable(Node& node) {
    MemoryLogStore& memory = node.store->memory;
    if (memory.last_seq() > memory.durable_seq()) node.raft->on_persisted(memory.make_durable(memory.last_seq()), now_);
  }

  void release(Node& node) {
    const PersistSeq durable = node.store->memory.durable_seq();
    std::deque<Outgoing> waiting;
    for (Outgoing& out : node.held) {
      if (out.after <= durable)
        network_.push_back(std::move(out.message));
      else
        waiting.push_back(std::move(out));
    }
    node.held.swap(waiting);
  }

  void persist(Node& node) {
    make_durable(node);
    emit(fmt::format("{}: storage durable up to index {}", node.id, node.raft->durable_index().value()));
    Ready ready;
    node.raft->take_ready(ready);
    for (Outgoing& out : ready.messages) node.held.push_back(std::move(out));
    const std::size_t before = network_.size();
    release(node);
    if (network_.size() > before)
      emit(fmt::format("{}: {} held message(s) released", node.id, network_.size() - before));
    report(node);
  }

  void cut(std::uint32_t a, std::uint32_t b) {
    cuts_.insert({a, b});
    cuts_.insert({b, a});
  }

  /// Delivers one message. `quiet`: heartbeat traffic that changes nothing is only counted.
  void deliver(const Message& message, bool quiet) {
    Node& to = nodes_.at(message.to.value());
    // Heartbeat traffic of the receiver's own term that changes nothing is only counted; a stale one is shown.
    const bool hidden = quiet && is_heartbeat_traffic(message) && message.term == to.raft->term();
    if (cuts_.count({message.from.value(), message.to.value()}) != 0) {
      if (quiet && is_heartbeat_traffic(message))
        ++heartbeats_dropped_;
      else if (quiet && std::holds_alternative<VoteRequest>(message.body) &&
               !repeats_shown_.insert(describe(message)).second)
        ++repeats_dropped_;
      else
        emit(describe(message) + " [dropped]");
      return;
    }
    std::vector<std::string> outer;
    outer.swap(lines_);
    std::string header;
    header.swap(header_);
    to.raft->step(message, now_);
    report(to);
    std::vector<std::string> caused;
    caused.swap(lines_);
    lines_.swap(outer);
    header_.swap(header);
    if (hidden && caused.empty()) {
      ++heartbeats_delivered_;
      return;
    }
    emit(describe(message));
    for (std::string& line : caused) emit(std::move(line));
  }

  void deliver_until_quiet(bool quiet) {
    for (int round = 0; round < 10000; ++round) {
      flush_all();
      if (network_.empty()) return;
      std::deque<Message> flying;
      flying.swap(network_);
      for (const Message& message : flying) deliver(message, quiet);
    }
    fail("messages kept flowing for 10000 rounds");
  }

  void tick(Duration duration) {
    heartbeats_delivered_ = 0;
    heartbeats_dropped_ = 0;
    repeats_dropped_ = 0;
    repeats_shown_.clear();
    const Time end = now_ + duration;
    while (now_ < end) {
      now_ += kStep;
      header_ = fmt::format("@{}ms", millis(now_));
      for (auto& [id, node] : nodes_) {
        node.raft->tick(now_);
        report(node);
      }
      deliver_until_quiet(true);
      header_.clear();
    }
    if (heartbeats_delivered_ + heartbeats_dropped_ > 0)
      emit(fmt::format("(heartbeats and responses: {} delivered, {} dropped)", heartbeats_delivered_,
                       heartbeats_dropped_));
    if (repeats_dropped_ > 0) emit(fmt::format("(vote requests sent again: {} dropped)", repeats_dropped_));
  }

  void campaign(Node& node) {
    if (node.raft->role() == Role::leader) return fail(fmt::format("node {} already leads", node.id));
    const Time give_up = now_ + 2 * node.raft->config().election_timeout_max;
    while (now_ < give_up) {
      now_ += kStep;
      header_ = fmt::format("@{}ms", millis(now_));
      node.raft->tick(now_);
      report(node);
      Ready ready;
      node.raft->take_ready(ready);
      bool stood = node.raft->role() == Role::leader;
      for (Outgoing& out : ready.messages) {
        stood = stood || std::holds_alternative<VoteRequest>(out.message.body);
        node.held.push_back(std::move(out));
      }
      if (stood) {
        header_.clear();
        return;
      }
    }
    header_.clear();
    fail(fmt::format("node {} did not stand", node.id));
  }

  void status() {
    for (auto& [id, node] : nodes_) {
      const Raft& raft = *node.raft;
      std::string log;
      for (LogIndex at{1}; at <= node.store->last_index(); at = at.next()) {
        if (!log.empty()) log += ' ';
        log += std::to_string(node.store->entry(at).term.value());
      }
      std::string line =
          fmt::format("{}: {} term={} vote={} leader={} commit={} durable={} log=[{}]", id, to_string(raft.role()),
                      raft.term().value(), describe(raft.voted_for()), describe(raft.leader()),
                      raft.commit_index().value(), raft.durable_index().value(), log);
      if (!node.held.empty()) line += fmt::format(" held={}", node.held.size());
      if (raft.transfer_target()) line += fmt::format(" transfer-to={}", raft.transfer_target()->value());
      emit(std::move(line));
    }
  }

  std::map<std::uint32_t, Node> nodes_;
  std::deque<Message> network_;  // in flight, in the order sent
  std::set<std::pair<std::uint32_t, std::uint32_t>> cuts_;
  Time now_{0};
  std::vector<std::string> lines_;
  std::string header_;  // emitted before the next line, if any
  std::size_t heartbeats_delivered_ = 0;
  std::size_t heartbeats_dropped_ = 0;
  std::size_t repeats_dropped_ = 0;
  std::set<std::string> repeats_shown_;  // vote requests dropped on a cut link during this tick, shown once
};

// --- the golden files -------------------------------------------------------------------------------------------

struct Block {
  std::vector<std::string> comments;
  std::string command;
  std::vector<std::string> expected;
  int line = 0;  // of the command, for messages
};

std::vector<Block> parse(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<Block> blocks;
  Block block;
  std::string text;
  int number = 0;
  enum { between, after_command, in_output } state = between;
  while (std::getline(in, text)) {
    ++number;
    switch (state) {
      case between:
        if (text.empty()) break;
        if (text.front() == '#') {
          block.comments.push_back(text);
          break;
        }
        block.command = text;
        block.line = number;
        state = after_command;
        break;
      case after_command:
        if (text != "----") {
          ADD_FAILURE() << path.string() << ":" << number << ": expected ---- after the command";
          return blocks;
        }
        state = in_output;
        break;
      case in_output:
        if (text.empty()) {
          blocks.push_back(std::move(block));
          block = Block{};
          state = between;
        } else {
          block.expected.push_back(text);
        }
        break;
    }
  }
  if (state == after_command) ADD_FAILURE() << path.string() << ": the last command has no ---- line";
  if (state == in_output) blocks.push_back(std::move(block));
  return blocks;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

std::vector<std::string> scenario_files() {
  std::vector<std::string> names;
  std::error_code error;
  std::filesystem::directory_iterator files(COHORT_RAFT_TESTDATA_DIR, error);
  if (error) return {"missing_testdata_directory"};  // runs, and fails naming the path
  for (const auto& file : files)
    if (file.path().extension() == ".txt") names.push_back(file.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

class RaftScenario : public ::testing::TestWithParam<std::string> {};

TEST_P(RaftScenario, MatchesTheRecordedTrace) {
  const std::filesystem::path path = std::filesystem::path(COHORT_RAFT_TESTDATA_DIR) / (GetParam() + ".txt");
  std::vector<Block> blocks = parse(path);
  ASSERT_FALSE(blocks.empty()) << path.string() << " holds no commands";
  const char* rewrite_flag = std::getenv("COHORT_REWRITE_GOLDEN");
  const bool rewrite = rewrite_flag != nullptr && std::string(rewrite_flag) == "1";

  Scenario scenario;
  std::string recorded;
  for (Block& block : blocks) {
    const std::vector<std::string> actual = scenario.run(block.command);
    if (rewrite) {
      block.expected = actual;
    } else {
      EXPECT_EQ(joined(block.expected), joined(actual))
          << path.string() << ":" << block.line << ": `" << block.command << "` traced differently"
          << " (COHORT_REWRITE_GOLDEN=1 re-records; review the diff)";
    }
    for (const std::string& comment : block.comments) recorded += comment + "\n";
    recorded += block.command + "\n----\n" + joined(block.expected) + "\n";
  }
  if (rewrite) {
    recorded.pop_back();  // no blank line at the end of the file
    std::ofstream(path) << recorded;
  }
}

std::string test_name(const ::testing::TestParamInfo<std::string>& file) {
  std::string name = file.param;
  for (char& c : name)
    if (std::isalnum(static_cast<unsigned char>(c)) == 0) c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Golden, RaftScenario, ::testing::ValuesIn(scenario_files()), test_name);

}  // namespace
}  // namespace cohort::consensus
