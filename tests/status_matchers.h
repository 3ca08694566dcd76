// GoogleMock matchers for airlock::Status and airlock::Result<T>, in the spirit of abseil's
// status matchers: a failed expectation prints the status (code and message) instead of a bare
// "has_value() is false".
//
//   EXPECT_THAT(core::ReadFile(path), IsOk());      // also: an optional that holds a value
//   EXPECT_THAT(gguf::Parse(bytes), StatusIs(StatusCode::kCorrupt, HasSubstr("tensor")));
//   EXPECT_THAT(status, StatusIs(StatusCode::kLimitExceeded));
//   ASSERT_OK_AND_ASSIGN(auto model, gguf::Parse(bytes));
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "core/status.h"

namespace airlock {

// gtest prints Status and Result through these (found by argument-dependent lookup).
inline void PrintTo(const Status& s, std::ostream* os) { *os << (s.ok() ? "OK" : s.ToString()); }
inline void PrintTo(StatusCode c, std::ostream* os) { *os << StatusCodeName(c); }
template <typename T>
void PrintTo(const Result<T>& r, std::ostream* os) {
  if (r.has_value())
    *os << "a value";
  else
    PrintTo(r.error(), os);
}

namespace testing {

// The Status of a Status, of a Result<T>, or of a std::optional<T> (OK when it holds a value:
// lookups that return optional read the same way in tests).
inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}
template <typename T>
Status StatusOf(const std::optional<T>& o) {
  return o.has_value() ? Status::Ok() : NotFound("std::nullopt");
}

MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  const Status status = ::airlock::testing::StatusOf(arg);
  if (!status.ok()) *result_listener << "which is " << status.ToString();
  return status.ok();
}

// The status (of a Status or a Result) has `code` and a message that `message_matcher` accepts.
MATCHER_P2(StatusIs, code, message_matcher,
           std::string(negation ? "isn't" : "is") + " a status with code " +
               std::string(StatusCodeName(code)) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher, negation)) {
  const Status status = ::airlock::testing::StatusOf(arg);
  if (status.code() != code) {
    *result_listener << "whose code is " << StatusCodeName(status.code()) << " ("
                     << status.message() << ")";
    return false;
  }
  return ::testing::ExplainMatchResult(::testing::Matcher<const std::string&>(message_matcher),
                                       status.message(), result_listener);
}

// The status has `code`, whatever its message.
inline auto StatusIs(StatusCode code) { return StatusIs(code, ::testing::_); }

}  // namespace testing
}  // namespace airlock

// `lhs = *expr;` when `expr` (a Result) holds a value; else a fatal failure that prints the status.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  AIRLOCK_ASSERT_OK_AND_ASSIGN_IMPL(AIRLOCK_CONCAT(airlock_test_result_, __LINE__), lhs, expr)
#define AIRLOCK_ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                      \
  ASSERT_THAT(tmp, ::airlock::testing::IsOk());           \
  lhs = std::move(tmp).value()
