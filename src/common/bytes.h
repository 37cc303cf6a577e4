#pragma once
// Little-endian loads and stores through memcpy: defined behaviour at any alignment, and compiled to a single
// move on x86-64. All wire and disk formats in Cohort are little-endian.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

namespace cohort {

static_assert(std::endian::native == std::endian::little, "Cohort's formats assume a little-endian host");

using ByteSpan = std::span<const std::byte>;
using MutableByteSpan = std::span<std::byte>;

template <typename T>
requires std::is_trivially_copyable_v<T>
inline T load_le(const std::byte* from) noexcept {
  T value;
  std::memcpy(&value, from, sizeof(T));
  return value;
}

template <typename T>
requires std::is_trivially_copyable_v<T>
inline void store_le(std::byte* to, T value) noexcept { std::memcpy(to, &value, sizeof(T)); }

inline ByteSpan as_bytes(std::string_view text) noexcept {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};  // NOLINT: byte view of chars
}

inline std::string_view as_chars(ByteSpan bytes) noexcept {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};  // NOLINT: char view of bytes
}

}  // namespace cohort
