#pragma once
// The consensus configuration of member `id` in a test cluster of `size` nodes numbered 1..size.

#include <cstdint>
#include <vector>

#include "consensus/raft.h"

namespace cohort::consensus {

inline Config cluster_config(NodeId id, std::size_t size, bool pre_vote = true, bool check_quorum = true) {
  Config config;
  config.id = id;
  for (std::uint32_t member = 1; member <= size; ++member) config.members.push_back(NodeId{member});
  config.pre_vote = pre_vote;
  config.check_quorum = check_quorum;
  return config;
}

}  // namespace cohort::consensus
