// The status matchers of tests/status_matchers.h: they accept and reject what they claim to, and a
// failure explains itself with the status.
#include "status_matchers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace airlock {
namespace {

using ::airlock::testing::IsOk;
using ::airlock::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

Result<int> Parsed(bool ok) {
  if (ok) return 42;
  return Corrupt("gguf: tensor count 9 exceeds the file at byte 24");
}

TEST(StatusMatchers, IsOkAcceptsOkStatusesAndValues) {
  EXPECT_THAT(Status::Ok(), IsOk());
  EXPECT_THAT(Parsed(true), IsOk());
  EXPECT_THAT(Parsed(false), Not(IsOk()));
  EXPECT_THAT(Unsupported("x"), Not(IsOk()));
}

TEST(StatusMatchers, StatusIsChecksCodeAndMessage) {
  EXPECT_THAT(Parsed(false), StatusIs(StatusCode::kCorrupt));
  EXPECT_THAT(Parsed(false), StatusIs(StatusCode::kCorrupt, HasSubstr("tensor count")));
  EXPECT_THAT(Parsed(false), Not(StatusIs(StatusCode::kLimitExceeded)));
  EXPECT_THAT(Parsed(false), Not(StatusIs(StatusCode::kCorrupt, HasSubstr("alignment"))));
  EXPECT_THAT(Parsed(true), Not(StatusIs(StatusCode::kCorrupt)));
  EXPECT_THAT(Status::Ok(), StatusIs(StatusCode::kOk));
}

TEST(StatusMatchers, FailuresNameTheStatus) {
  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(IsOk(), Parsed(false), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("tensor count 9"));
  ::testing::StringMatchResultListener code_listener;
  EXPECT_FALSE(
      ::testing::ExplainMatchResult(StatusIs(StatusCode::kIo), Parsed(false), &code_listener));
  EXPECT_THAT(code_listener.str(), HasSubstr(std::string(StatusCodeName(StatusCode::kCorrupt))));
}

TEST(StatusMatchers, AssertOkAndAssignUnwrapsTheValue) {
  ASSERT_OK_AND_ASSIGN(int value, Parsed(true));
  EXPECT_EQ(value, 42);
}

}  // namespace
}  // namespace airlock
