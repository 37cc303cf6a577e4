#include "cohort/services/kv_codec.h"

#include <fmt/format.h>

#include "common/assert.h"
#include "services/byte_io.h"

namespace cohort::services {
namespace {

bool carries_value(KvOp op) noexcept {
  return op == KvOp::put || op == KvOp::compare_and_set || op == KvOp::put_with_ttl;
}

bool known(KvOp op) noexcept {
  const auto raw = static_cast<std::uint8_t>(op);
  return raw >= static_cast<std::uint8_t>(KvOp::put) && raw <= static_cast<std::uint8_t>(KvOp::put_with_ttl);
}

/// Bytes of the fixed part of a request of `op`, header included.
std::size_t fixed_size(KvOp op) noexcept {
  switch (op) {
    case KvOp::get:
    case KvOp::remove: return kKvRequestHeaderSize;
    case KvOp::put: return kKvRequestHeaderSize + 8;
    case KvOp::compare_and_set:
    case KvOp::put_with_ttl: return kKvRequestHeaderSize + 16;
  }
  return 0;  // unknown ops are refused before this is asked
}

}  // namespace

const char* to_string(KvOp op) noexcept {
  switch (op) {
    case KvOp::put: return "put";
    case KvOp::get: return "get";
    case KvOp::remove: return "delete";
    case KvOp::compare_and_set: return "cas";
    case KvOp::put_with_ttl: return "put_with_ttl";
  }
  return "?";
}

const char* to_string(KvStatus status) noexcept {
  switch (status) {
    case KvStatus::ok: return "ok";
    case KvStatus::not_found: return "not_found";
    case KvStatus::cas_failed: return "cas_failed";
    case KvStatus::bad_request: return "bad_request";
  }
  return "?";
}

std::optional<std::string> validate(const KvRequest& request) {
  if (!known(request.op)) return fmt::format("unknown op {}", static_cast<unsigned>(request.op));
  if (request.key.size() > kMaxKeyLength)
    return fmt::format("key of {} bytes exceeds the limit of {}", request.key.size(), kMaxKeyLength);
  if (request.value.size() > kMaxValueLength)
    return fmt::format("value of {} bytes exceeds the limit of {}", request.value.size(), kMaxValueLength);
  if (!carries_value(request.op) && !request.value.empty())
    return fmt::format("{} carries no value", to_string(request.op));
  if (request.expected) {
    if (request.op != KvOp::compare_and_set) return fmt::format("{} carries no expected value", to_string(request.op));
    if (request.expected->size() > kMaxValueLength)
      return fmt::format("expected value of {} bytes exceeds the limit of {}", request.expected->size(),
                         kMaxValueLength);
  }
  if (request.op == KvOp::put_with_ttl) {
    if (request.ttl_ms == 0 || request.ttl_ms > kMaxTtlMs)
      return fmt::format("ttl_ms {} is outside [1, {}]", request.ttl_ms, kMaxTtlMs);
  } else if (request.ttl_ms != 0) {
    return fmt::format("{} carries no ttl", to_string(request.op));
  }
  return std::nullopt;
}

Result<std::vector<std::byte>, std::string> encode_kv_request(const KvRequest& request) {
  if (auto problem = validate(request)) return unexpected(std::move(*problem));
  const std::size_t expected_size = request.expected ? request.expected->size() : 0;
  std::vector<std::byte> out;
  out.reserve(fixed_size(request.op) + request.key.size() + request.value.size() + expected_size);
  ByteWriter w(out);
  w.put(static_cast<std::uint8_t>(request.op));
  w.zeros(3);
  w.put(static_cast<std::uint32_t>(request.key.size()));
  w.put(request.request_id);
  if (carries_value(request.op)) {
    w.put(static_cast<std::uint32_t>(request.value.size()));
    w.zeros(4);
  }
  if (request.op == KvOp::compare_and_set) {
    w.put(static_cast<std::uint8_t>(request.expected ? 1 : 0));
    w.zeros(3);
    w.put(static_cast<std::uint32_t>(expected_size));
  }
  if (request.op == KvOp::put_with_ttl) w.put(request.ttl_ms);
  w.bytes(as_bytes(request.key));
  w.bytes(as_bytes(request.value));
  if (request.expected) w.bytes(as_bytes(*request.expected));
  return out;
}

Result<KvRequest, std::string> decode_kv_request(ByteSpan bytes) {
  if (bytes.size() < kKvRequestHeaderSize)
    return unexpected(
        fmt::format("request of {} bytes is shorter than the {}-byte header", bytes.size(), kKvRequestHeaderSize));
  ByteReader r(bytes);
  KvRequest request;
  std::uint8_t op = 0;
  std::uint32_t key_length = 0;
  (void)r.get(op);  // the header's fields are present: checked above
  if (!r.zeros(3)) return unexpected(std::string("reserved header bytes are not zero"));
  (void)r.get(key_length);
  (void)r.get(request.request_id);
  request.op = static_cast<KvOp>(op);
  if (!known(request.op)) return unexpected(fmt::format("unknown op {}", static_cast<unsigned>(op)));
  const std::size_t fixed = fixed_size(request.op);
  if (bytes.size() < fixed)
    return unexpected(fmt::format("{} request of {} bytes is shorter than its {}-byte header", to_string(request.op),
                                  bytes.size(), fixed));

  std::uint32_t value_length = 0;
  std::uint32_t expected_length = 0;
  bool expected_present = false;
  if (carries_value(request.op)) {
    (void)r.get(value_length);
    if (!r.zeros(4)) return unexpected(std::string("reserved value header bytes are not zero"));
  }
  if (request.op == KvOp::compare_and_set) {
    std::uint8_t present = 0;
    (void)r.get(present);
    if (present > 1) return unexpected(fmt::format("expected_present is {} (must be 0 or 1)", present));
    expected_present = present == 1;
    if (!r.zeros(3)) return unexpected(std::string("reserved cas header bytes are not zero"));
    (void)r.get(expected_length);
    if (!expected_present && expected_length != 0)
      return unexpected(fmt::format("expected_length is {} but expected_present is 0", expected_length));
  }
  if (request.op == KvOp::put_with_ttl) {
    (void)r.get(request.ttl_ms);
    if (request.ttl_ms == 0 || request.ttl_ms > kMaxTtlMs)
      return unexpected(fmt::format("ttl_ms {} is outside [1, {}]", request.ttl_ms, kMaxTtlMs));
  }

  if (key_length > kMaxKeyLength)
    return unexpected(fmt::format("key_length {} exceeds the limit of {}", key_length, kMaxKeyLength));
  if (value_length > kMaxValueLength)
    return unexpected(fmt::format("value_length {} exceeds the limit of {}", value_length, kMaxValueLength));
  if (expected_length > kMaxValueLength)
    return unexpected(fmt::format("expected_length {} exceeds the limit of {}", expected_length, kMaxValueLength));
  // The lengths are bounded above, so this sum cannot overflow.
  const std::size_t described = fixed + std::size_t{key_length} + value_length + expected_length;
  if (bytes.size() != described)
    return unexpected(fmt::format("{} request is {} bytes but its header describes {}", to_string(request.op),
                                  bytes.size(), described));
  (void)r.string(key_length, request.key);
  (void)r.string(value_length, request.value);
  if (expected_present) {
    request.expected.emplace();
    (void)r.string(expected_length, *request.expected);
  }
  COHORT_ASSERT(r.remaining() == 0);
  return request;
}

std::uint64_t peek_kv_request_id(ByteSpan bytes) noexcept {
  if (bytes.size() < kKvRequestHeaderSize) return 0;
  return load_le<std::uint64_t>(bytes.data() + 8);
}

void encode_kv_reply(std::uint64_t request_id, KvStatus status, ByteSpan value, std::vector<std::byte>& out) {
  COHORT_ASSERT(value.size() <= kMaxValueLength);
  ByteWriter w(out);
  w.put(request_id);
  w.put(static_cast<std::uint8_t>(status));
  w.zeros(3);
  w.put(static_cast<std::uint32_t>(value.size()));
  w.bytes(value);
}

std::vector<std::byte> encode_kv_reply(const KvReply& reply) {
  std::vector<std::byte> out;
  out.reserve(kKvReplyHeaderSize + reply.value.size());
  encode_kv_reply(reply.request_id, reply.status, as_bytes(reply.value), out);
  return out;
}

Result<KvReply, std::string> decode_kv_reply(ByteSpan bytes) {
  if (bytes.size() < kKvReplyHeaderSize)
    return unexpected(
        fmt::format("reply of {} bytes is shorter than the {}-byte header", bytes.size(), kKvReplyHeaderSize));
  ByteReader r(bytes);
  KvReply reply;
  std::uint8_t status = 0;
  std::uint32_t value_length = 0;
  (void)r.get(reply.request_id);
  (void)r.get(status);
  if (!r.zeros(3)) return unexpected(std::string("reserved reply bytes are not zero"));
  (void)r.get(value_length);
  if (status < static_cast<std::uint8_t>(KvStatus::ok) || status > static_cast<std::uint8_t>(KvStatus::bad_request))
    return unexpected(fmt::format("unknown status {}", status));
  reply.status = static_cast<KvStatus>(status);
  if (value_length > kMaxValueLength)
    return unexpected(fmt::format("value_length {} exceeds the limit of {}", value_length, kMaxValueLength));
  if (r.remaining() != value_length)
    return unexpected(fmt::format("reply is {} bytes but its header describes {}", bytes.size(),
                                  kKvReplyHeaderSize + std::size_t{value_length}));
  (void)r.string(value_length, reply.value);
  return reply;
}

}  // namespace cohort::services
