#pragma once
// The built-in key-value service's wire format (KvService, cohort/services/kv_service.h): a client encodes its
// requests and decodes the replies with these (examples/kv/kv_cli.cpp). CMake target Cohort::services.
// Little-endian; a fixed-size header, then the byte strings it announces, nothing after them.
//
// Request (ingress payload):
//   0  op u8 (KvOp) | reserved 3 (zero) | key_length u32 | request_id u64          16 bytes, every op
//   16 put, compare_and_set, put_with_ttl: value_length u32 | reserved u32 (zero)      + 8
//   24 compare_and_set: expected_present u8 (0 or 1) | reserved 3 | expected_length u32 + 8
//   24 put_with_ttl: ttl_ms u64 (1..kMaxTtlMs)                                        + 8
//   then: key bytes | value bytes (put, cas, ttl) | expected bytes (cas)
//   (get and delete end after the key; expected_length is 0 when expected_present is 0.)
//
// Reply (egress payload):
//   0  request_id u64 (the request's, 0 if the request was too short to carry one) | status u8 (KvStatus) |
//      reserved 3 (zero) | value_length u32                                           16 bytes
//   16 value bytes: get ok -> the value; cas_failed -> the current value; bad_request -> the reason (text);
//      otherwise empty.
//
// Semantics (the service): put and put_with_ttl reply ok; get replies ok + value or not_found; delete replies ok
// or not_found; compare_and_set with an expected value replies ok (stored), cas_failed (+ the current value) or
// not_found (the key is absent); with expected_present = 0 it stores only if the key is absent, else cas_failed.
// A key whose TTL deadline has passed reads as absent even before its expiry timer has fired.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cohort/result.h"

namespace cohort::services {

enum class KvOp : std::uint8_t { put = 1, get = 2, remove = 3, compare_and_set = 4, put_with_ttl = 5 };
enum class KvStatus : std::uint8_t { ok = 1, not_found = 2, cas_failed = 3, bad_request = 4 };
const char* to_string(KvOp op) noexcept;  // "put", "get", "delete", "cas", "put_with_ttl"; "?" if unknown
const char* to_string(KvStatus status) noexcept;

inline constexpr std::size_t kMaxKeyLength = std::size_t{64} << 10U;
inline constexpr std::size_t kMaxValueLength = std::size_t{1} << 20U;
/// Ten years: keeps cluster time + ttl (nanoseconds) far from overflowing a signed 64-bit count.
inline constexpr std::uint64_t kMaxTtlMs = 10ULL * 366 * 24 * 3600 * 1000;
inline constexpr std::size_t kKvRequestHeaderSize = 16;
inline constexpr std::size_t kKvReplyHeaderSize = 16;

struct KvRequest {
  KvOp op = KvOp::get;
  std::uint64_t request_id = 0;
  std::string key;
  std::string value;                    // put, compare_and_set, put_with_ttl; empty otherwise
  std::optional<std::string> expected;  // compare_and_set: the value it must hold, nullopt = must be absent
  std::uint64_t ttl_ms = 0;             // put_with_ttl only; 0 otherwise
  friend bool operator==(const KvRequest&, const KvRequest&) = default;
};

struct KvReply {
  std::uint64_t request_id = 0;
  KvStatus status = KvStatus::ok;
  std::string value;
  friend bool operator==(const KvReply&, const KvReply&) = default;
};

/// Why `request` cannot be encoded (a limit exceeded, a field the op does not carry is set), or nullopt.
std::optional<std::string> validate(const KvRequest& request);
/// The request's bytes, or validate()'s reason.
Result<std::vector<std::byte>, std::string> encode_kv_request(const KvRequest& request);
/// Decodes and validates one request; any malformed input gives a reason, never a crash.
Result<KvRequest, std::string> decode_kv_request(std::span<const std::byte> bytes);
/// The request id of a request that may be malformed: 0 if it is too short to carry one.
std::uint64_t peek_kv_request_id(std::span<const std::byte> bytes) noexcept;

/// Appends one reply to `out`. Precondition: value.size() <= kMaxValueLength.
void encode_kv_reply(std::uint64_t request_id, KvStatus status, std::span<const std::byte> value,
                     std::vector<std::byte>& out);
std::vector<std::byte> encode_kv_reply(const KvReply& reply);
Result<KvReply, std::string> decode_kv_reply(std::span<const std::byte> bytes);

}  // namespace cohort::services
