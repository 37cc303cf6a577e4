#include "services/echo_service.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <stdexcept>

#include "services/byte_io.h"

namespace cohort::services {
namespace {

// Snapshot: magic u32 | format u32 | messages u64 | bytes u64.
constexpr std::uint32_t kSnapshotMagic = 0x3148'4543;  // "CEH1"
constexpr std::uint32_t kSnapshotFormat = 1;

}  // namespace

void EchoService::on_start(Cluster& /*cluster*/, std::optional<Bytes> snapshot) {
  if (!snapshot) return;
  ByteReader r(*snapshot);
  std::uint32_t magic = 0;
  std::uint32_t format = 0;
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  if (!r.get(magic) || !r.get(format) || !r.get(messages) || !r.get(bytes) || r.remaining() != 0 ||
      magic != kSnapshotMagic || format != kSnapshotFormat)
    throw std::runtime_error(fmt::format(
        "echo service: malformed snapshot ({} bytes; a valid one is 24 bytes with magic {:#010x}, format {})",
        snapshot->size(), kSnapshotMagic, kSnapshotFormat));
  messages_ = messages;
  bytes_ = bytes;
}

void EchoService::on_message(Cluster& cluster, SessionId session, ClusterTime /*timestamp*/, Bytes message) {
  ++messages_;
  bytes_ += message.size();
  (void)cluster.send(session, message);
}

void EchoService::on_take_snapshot(Cluster& /*cluster*/, std::vector<std::byte>& out) { write_snapshot(out); }

void EchoService::write_snapshot(std::vector<std::byte>& out) const {
  ByteWriter w(out);
  w.put(kSnapshotMagic);
  w.put(kSnapshotFormat);
  w.put(messages_);
  w.put(bytes_);
}

std::uint64_t EchoService::state_hash() const {
  std::vector<std::byte> bytes;
  write_snapshot(bytes);
  return XXH3_64bits(bytes.data(), bytes.size());
}

}  // namespace cohort::services
