#include "services/counter_service.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <stdexcept>

#include "common/assert.h"
#include "services/byte_io.h"

namespace cohort::services {
namespace {

// Snapshot: magic u32 | format u32 | value i64 | applied u64 | rejected u64.
constexpr std::uint32_t kSnapshotMagic = 0x3154'4E43;  // "CNT1"
constexpr std::uint32_t kSnapshotFormat = 1;

}  // namespace

std::vector<std::byte> encode_counter_request(const CounterRequest& request) {
  COHORT_ASSERT(request.op == CounterOp::add || request.delta == 0);
  std::vector<std::byte> out;
  out.reserve(kCounterAddSize);
  ByteWriter w(out);
  w.put(static_cast<std::uint8_t>(request.op));
  w.zeros(7);
  w.put(request.request_id);
  if (request.op == CounterOp::add) w.put(request.delta);
  return out;
}

Result<CounterRequest, std::string> decode_counter_request(ByteSpan bytes) {
  ByteReader r(bytes);
  CounterRequest request;
  std::uint8_t op = 0;
  if (!r.get(op)) return unexpected(std::string("empty counter request"));
  if (op == static_cast<std::uint8_t>(CounterOp::add)) {
    if (bytes.size() != kCounterAddSize)
      return unexpected(fmt::format("add request is {} bytes, not {}", bytes.size(), kCounterAddSize));
  } else if (op == static_cast<std::uint8_t>(CounterOp::get)) {
    if (bytes.size() != kCounterGetSize)
      return unexpected(fmt::format("get request is {} bytes, not {}", bytes.size(), kCounterGetSize));
  } else {
    return unexpected(fmt::format("unknown counter op {}", op));
  }
  request.op = static_cast<CounterOp>(op);
  if (!r.zeros(7)) return unexpected(std::string("reserved bytes are not zero"));
  (void)r.get(request.request_id);  // the sizes were checked above
  if (request.op == CounterOp::add) (void)r.get(request.delta);
  return request;
}

std::vector<std::byte> encode_counter_reply(const CounterReply& reply) {
  std::vector<std::byte> out;
  ByteWriter w(out);
  w.put(reply.request_id);
  w.put(reply.value);
  return out;
}

Result<CounterReply, std::string> decode_counter_reply(ByteSpan bytes) {
  if (bytes.size() != kCounterReplySize)
    return unexpected(fmt::format("counter reply is {} bytes, not {}", bytes.size(), kCounterReplySize));
  ByteReader r(bytes);
  CounterReply reply;
  (void)r.get(reply.request_id);
  (void)r.get(reply.value);
  return reply;
}

void CounterService::on_start(Cluster& /*cluster*/, std::optional<Bytes> snapshot) {
  if (!snapshot) return;
  ByteReader r(*snapshot);
  std::uint32_t magic = 0;
  std::uint32_t format = 0;
  std::int64_t value = 0;
  std::uint64_t applied = 0;
  std::uint64_t rejected = 0;
  if (!r.get(magic) || !r.get(format) || !r.get(value) || !r.get(applied) || !r.get(rejected) || r.remaining() != 0 ||
      magic != kSnapshotMagic || format != kSnapshotFormat)
    throw std::runtime_error(fmt::format(
        "counter service: malformed snapshot ({} bytes; a valid one is 32 bytes with magic {:#010x}, format {})",
        snapshot->size(), kSnapshotMagic, kSnapshotFormat));
  value_ = value;
  applied_ = applied;
  rejected_ = rejected;
}

void CounterService::on_message(Cluster& cluster, SessionId session, ClusterTime /*timestamp*/, Bytes message) {
  const auto request = decode_counter_request(message);
  if (!request) {
    ++rejected_;
    (void)cluster.close_session(session);
    return;
  }
  ++applied_;
  if (request->op == CounterOp::add)  // wraps: signed overflow would be undefined
    value_ = static_cast<std::int64_t>(static_cast<std::uint64_t>(value_) + static_cast<std::uint64_t>(request->delta));
  const auto reply = encode_counter_reply({request->request_id, value_});
  (void)cluster.send(session, reply);
}

void CounterService::on_take_snapshot(Cluster& /*cluster*/, std::vector<std::byte>& out) { write_snapshot(out); }

void CounterService::write_snapshot(std::vector<std::byte>& out) const {
  ByteWriter w(out);
  w.put(kSnapshotMagic);
  w.put(kSnapshotFormat);
  w.put(value_);
  w.put(applied_);
  w.put(rejected_);
}

std::uint64_t CounterService::state_hash() const {
  std::vector<std::byte> bytes;
  write_snapshot(bytes);
  return XXH3_64bits(bytes.data(), bytes.size());
}

}  // namespace cohort::services
