#pragma once
// Result<T, E>: a value or an error, for expected failures. A stand-in for std::expected, which neither
// g++ 12 in C++20 mode nor clang 14 (needed for libFuzzer) provides. Public because the KV codec's functions
// (cohort/services/kv_codec.h) return it; inside Cohort every layer uses it.

#include <type_traits>
#include <utility>
#include <variant>

namespace cohort::detail {
/// Stops the process with the failed expression and where it failed (defined in every Cohort library).
[[noreturn]] void assertion_failed(const char* expression, const char* file, int line, const char* function) noexcept;
}  // namespace cohort::detail

namespace cohort {

template <typename E>
struct Unexpected {
  E error;
};
template <typename E>
Unexpected(E) -> Unexpected<E>;

template <typename E>
[[nodiscard]] Unexpected<std::decay_t<E>> unexpected(E&& error) {
  return {std::forward<E>(error)};
}

template <typename T, typename E>
class [[nodiscard]] Result {
 public:
  // Implicit on purpose: `return value;` and `return unexpected(error);` read naturally at call sites.
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(google-explicit-constructor)
  template <typename U>
  Result(Unexpected<U> e) : state_(std::in_place_index<1>, std::move(e.error)) {}  // NOLINT

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  // Reading the side that is not there is a programmer error: it stops the process, in every build type.
  T& value() & {
    require(has_value(), "has_value()");
    return std::get<0>(state_);
  }
  const T& value() const& {
    require(has_value(), "has_value()");
    return std::get<0>(state_);
  }
  T&& value() && {
    require(has_value(), "has_value()");
    return std::get<0>(std::move(state_));
  }
  const E& error() const& {
    require(!has_value(), "!has_value()");
    return std::get<1>(state_);
  }
  E&& error() && {
    require(!has_value(), "!has_value()");
    return std::get<1>(std::move(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  static void require(bool condition, const char* expression) {
    if (!condition) [[unlikely]]
      detail::assertion_failed(expression, __FILE__, __LINE__, "cohort::Result");
  }

  std::variant<T, E> state_;
};

/// A Result with no value: success, or an error.
template <typename E>
class [[nodiscard]] Status {
 public:
  Status() = default;
  template <typename U>
  Status(Unexpected<U> e) : error_(std::move(e.error)), failed_(true) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  const E& error() const {
    if (!failed_) [[unlikely]]
      detail::assertion_failed("!ok()", __FILE__, __LINE__, "cohort::Status::error");
    return error_;
  }

 private:
  E error_{};
  bool failed_ = false;
};

}  // namespace cohort
