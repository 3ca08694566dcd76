// Errors as values: airlock::Status (a code and a message) and airlock::Result<T> (a value or a
// Status). Every function that can fail on bad input or I/O returns one of these across a module
// boundary; no exception crosses one. Result<T> mirrors std::expected's API (has_value, value,
// error, *, ->) so that a move to C++23 is mechanical.
//
// Messages follow "<module>: <what> at <where>: <detail>" and never contain secrets or prompt text.
// Thread-safety: values; safe to copy between threads.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace airlock {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // the caller passed something malformed (a flag, a path, a config value)
  kNotFound,          // a named thing does not exist
  kCorrupt,           // input bytes violate their format
  kUnsupported,       // well-formed input using a feature we do not implement
  kLimitExceeded,     // a resource cap (size, depth, count, time) was hit
  kIo,                // the operating system refused a read/write/map
  kUnavailable,       // a peer or service could not be reached
  kCancelled,         // the user or a signal stopped the operation
  kDeadlineExceeded,  // a time budget ran out
  kPermissionDenied,  // policy or credentials refuse the operation
  kInternal,          // a bug in Airlock
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corrupt: gguf: ..." style one-liner for logs and CLI output.
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Corrupt(std::string m) { return {StatusCode::kCorrupt, std::move(m)}; }
inline Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status LimitExceeded(std::string m) { return {StatusCode::kLimitExceeded, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIo, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value of type T, or a non-OK Status. Constructing one from an OK status is a bug and yields
// kInternal.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design, like expected
  Result(Status status) : data_(std::move(status)) {  // NOLINT
    if (std::get<Status>(data_).ok()) data_ = Internal("Result constructed from an OK status");
  }

  bool has_value() const { return data_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  bool ok() const { return has_value(); }

  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  const Status& error() const { return std::get<Status>(data_); }
  Status status() const { return has_value() ? Status::Ok() : error(); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace airlock

#define AIRLOCK_CONCAT_INNER(a, b) a##b
#define AIRLOCK_CONCAT(a, b) AIRLOCK_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` (a Status) is not OK.
#define AIRLOCK_TRY(expr)                          \
  do {                                             \
    ::airlock::Status airlock_status_ = (expr);    \
    if (!airlock_status_.ok()) return airlock_status_; \
  } while (0)

// `lhs = *expr;` when `expr` (a Result) holds a value; returns its error otherwise.
#define AIRLOCK_ASSIGN_OR_RETURN(lhs, expr) \
  AIRLOCK_ASSIGN_OR_RETURN_IMPL(AIRLOCK_CONCAT(airlock_result_, __LINE__), lhs, expr)
#define AIRLOCK_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.has_value()) return tmp.error();           \
  lhs = std::move(tmp).value()
