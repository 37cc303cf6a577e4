// CredentialListAuthenticator: a fixed list of credentials, as cohortd's sessions.credentials_file gives it.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cohort/node.h"

namespace cohort {

namespace {

// Whether `candidate` equals `allowed`, looking at every byte whatever the first difference: how long a refusal
// takes then tells a client guessing over the network nothing about how much of its guess was right.
bool equal_in_constant_time(const std::string& allowed, std::span<const std::byte> candidate) {
  if (allowed.size() != candidate.size()) return false;
  std::byte difference{0};
  for (std::size_t i = 0; i < allowed.size(); ++i) difference |= static_cast<std::byte>(allowed[i]) ^ candidate[i];
  return difference == std::byte{0};
}

}  // namespace

CredentialListAuthenticator::CredentialListAuthenticator(std::vector<std::string> credentials)
    : credentials_(std::move(credentials)) {
  std::sort(credentials_.begin(), credentials_.end());
  credentials_.erase(std::unique(credentials_.begin(), credentials_.end()), credentials_.end());
}

std::optional<std::string> CredentialListAuthenticator::refuse(std::uint64_t /*client_id_high*/,
                                                               std::uint64_t /*client_id_low*/,
                                                               std::span<const std::byte> credential) {
  // Every entry is compared, not just until the first match, for the same reason as each comparison.
  bool allowed = false;
  for (const auto& entry : credentials_) allowed = equal_in_constant_time(entry, credential) || allowed;
  if (allowed) return std::nullopt;
  return "credential not allowed";
}

}  // namespace cohort
