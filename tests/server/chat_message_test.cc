// The one plain message type (core::ChatMessage) of the server, the engine and assess, and its
// single conversion to the chat template's messages (engine::ToTemplateMessages).
#include <gtest/gtest.h>

#include <type_traits>

#include "assess/target.h"
#include "engine/chat_prompt.h"
#include "server/model_backend.h"

namespace {

using airlock::core::ChatMessage;

TEST(ChatMessageType, ServerAndAssessShareTheCoreType) {
  static_assert(std::is_same_v<airlock::server::ChatMessage, ChatMessage>);
  static_assert(std::is_same_v<airlock::assess::ChatMessage, ChatMessage>);
  // assess hands a conversation to a local model without converting it.
  std::vector<airlock::assess::ChatMessage> turns = {{"user", "hi", "", ""}};
  airlock::server::GenerateRequest request;
  request.messages = turns;
  EXPECT_EQ(request.messages, turns);
}

TEST(ChatMessageType, ToTemplateMessagesCarriesEveryField) {
  std::vector<ChatMessage> messages = {
      {"user", "weather?", "", ""},
      {"assistant", "",
       R"([{"id":"c1","type":"function","function":{"name":"w","arguments":"{}"}}])", ""},
      {"tool", "sunny", "", "c1"},
  };
  auto converted = airlock::engine::ToTemplateMessages(messages);
  ASSERT_TRUE(converted.ok()) << converted.error().message();
  ASSERT_EQ(converted->size(), 3u);
  EXPECT_EQ((*converted)[0].role, "user");
  EXPECT_EQ((*converted)[0].content.str(), "weather?");
  EXPECT_TRUE((*converted)[0].tool_calls.is_undefined());
  EXPECT_TRUE((*converted)[0].extra.is_undefined());
  ASSERT_TRUE((*converted)[1].tool_calls.is_list());
  ASSERT_EQ((*converted)[1].tool_calls.items().size(), 1u);
  const airlock::tmpl::Value* id = (*converted)[1].tool_calls.items()[0].Find("id");
  ASSERT_NE(id, nullptr);
  EXPECT_EQ(id->str(), "c1");
  const airlock::tmpl::Value* call_id = (*converted)[2].extra.Find("tool_call_id");
  ASSERT_NE(call_id, nullptr);
  EXPECT_EQ(call_id->str(), "c1");
}

TEST(ChatMessageType, MalformedToolCallsAreAnError) {
  std::vector<ChatMessage> messages = {{"assistant", "", "[{not json", ""}};
  EXPECT_FALSE(airlock::engine::ToTemplateMessages(messages).ok());
}

}  // namespace
