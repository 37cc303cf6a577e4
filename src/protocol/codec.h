#pragma once
// Bounds-checked cursors over a message body. The reader never reads past its span: a read beyond the end
// records body_too_short (with the offset and the field) and returns zero, and every later read fails too, so
// a decoder checks once, at the end. The writer writes into a span sized by encoded_size() beforehand.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/assert.h"
#include "common/bytes.h"
#include "protocol/frame.h"

namespace cohort::protocol {

class BodyReader {
 public:
  explicit BodyReader(ByteSpan body) noexcept : body_(body) {}

  template <typename T>
  T read(const char* field) noexcept {
    if (failed() || body_.size() - position_ < sizeof(T)) {
      fail_short(field, sizeof(T));
      return T{};
    }
    const T value = load_le<T>(body_.data() + position_);
    field_start_ = position_;
    position_ += sizeof(T);
    return value;
  }

  /// The next `count` bytes, as a view into the body (no copy).
  ByteSpan read_bytes(std::size_t count, const char* field) noexcept {
    if (failed() || body_.size() - position_ < count) {
      fail_short(field, count);
      return {};
    }
    const ByteSpan bytes = body_.subspan(position_, count);
    field_start_ = position_;
    position_ += count;
    return bytes;
  }

  /// Records that the field just read is outside its domain (the error names that field's offset); the first
  /// error wins.
  void fail_invalid(const char* field, std::uint64_t value, std::uint64_t limit = 0) noexcept {
    if (!failed())
      error_ = DecodeError{DecodeErrc::invalid_field, static_cast<std::uint32_t>(kFrameHeaderSize + field_start_),
                           value, limit, field};
  }

  /// Call after the last field: fails if bytes are left over that the layout does not describe.
  void expect_end() noexcept {
    if (!failed() && position_ != body_.size())
      error_ = DecodeError{DecodeErrc::body_too_long, offset(), body_.size(), position_, "body"};
  }

  bool failed() const noexcept { return error_.has_value(); }
  const DecodeError& error() const noexcept {
    COHORT_ASSERT(failed());
    return *error_;
  }
  std::size_t remaining() const noexcept { return body_.size() - position_; }

 private:
  std::uint32_t offset() const noexcept { return static_cast<std::uint32_t>(kFrameHeaderSize + position_); }
  void fail_short(const char* field, std::size_t wanted) noexcept {
    if (!failed()) error_ = DecodeError{DecodeErrc::body_too_short, offset(), body_.size() - position_, wanted, field};
  }

  ByteSpan body_;
  std::size_t position_ = 0;
  std::size_t field_start_ = 0;  // where the last field read began, for fail_invalid()
  std::optional<DecodeError> error_;
};

class BodyWriter {
 public:
  explicit BodyWriter(MutableByteSpan body) noexcept : body_(body) {}

  template <typename T>
  void write(T value) noexcept {
    COHORT_ASSERT(body_.size() - position_ >= sizeof(T));
    store_le<T>(body_.data() + position_, value);
    position_ += sizeof(T);
  }

  void write_bytes(ByteSpan bytes) noexcept {
    COHORT_ASSERT(body_.size() - position_ >= bytes.size());
    if (!bytes.empty()) std::memcpy(body_.data() + position_, bytes.data(), bytes.size());
    position_ += bytes.size();
  }

  std::size_t written() const noexcept { return position_; }

 private:
  MutableByteSpan body_;
  std::size_t position_ = 0;
};

}  // namespace cohort::protocol
