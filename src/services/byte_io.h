#pragma once
// Little-endian append and bounds-checked read helpers for the built-in services' wire formats and snapshots.
// The reader never reads past its span: a short read returns false and leaves the output untouched, so a decoder
// turns any input, however malformed, into an error value rather than a crash.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/bytes.h"

namespace cohort::services {

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::byte>& out) noexcept : out_(out) {}

  template <typename T>
  void put(T value) {
    const std::size_t at = out_.size();
    out_.resize(at + sizeof(T));
    store_le<T>(out_.data() + at, value);
  }
  void zeros(std::size_t count) { out_.resize(out_.size() + count); }  // value-initialized: zero bytes
  void bytes(ByteSpan data) { out_.insert(out_.end(), data.begin(), data.end()); }

 private:
  std::vector<std::byte>& out_;
};

class ByteReader {
 public:
  explicit ByteReader(ByteSpan in) noexcept : in_(in) {}

  template <typename T>
  [[nodiscard]] bool get(T& value) noexcept {
    if (remaining() < sizeof(T)) return false;
    value = load_le<T>(in_.data() + position_);
    position_ += sizeof(T);
    return true;
  }
  /// Reads `count` bytes that must all be zero (reserved fields: zero now, so that a later layout may use them).
  [[nodiscard]] bool zeros(std::size_t count) noexcept {
    if (remaining() < count) return false;
    for (std::size_t i = 0; i < count; ++i)
      if (in_[position_ + i] != std::byte{0}) return false;
    position_ += count;
    return true;
  }
  [[nodiscard]] bool string(std::size_t count, std::string& out) {
    if (remaining() < count) return false;
    out.assign(as_chars(in_.subspan(position_, count)));
    position_ += count;
    return true;
  }

  std::size_t remaining() const noexcept { return in_.size() - position_; }
  std::size_t position() const noexcept { return position_; }

 private:
  ByteSpan in_;
  std::size_t position_ = 0;  // invariant: position_ <= in_.size()
};

}  // namespace cohort::services
