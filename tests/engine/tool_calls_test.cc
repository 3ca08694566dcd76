// Tool-call parsing (engine/tool_calls.h) on replies written in the formats the Qwen, DeepSeek
// and Llama 3 chat templates document (the exact markers of their published templates), and on
// hostile output: unterminated, nested, huge, deep.
#include "engine/tool_calls.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace airlock::engine {
namespace {

nlohmann::json Args(const ToolCall& c) { return nlohmann::json::parse(c.arguments); }

TEST(ToolCalls, DetectsTheSyntaxFromTemplateMarkers) {
  // Pieces of the published templates (Qwen2.5's system text and call rendering, DeepSeek-V3's
  // assistant tool-call rendering, Llama 3.1's ipython rendering).
  EXPECT_EQ(DetectToolCallSyntax(
                "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function "
                "name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
                "{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call>"),
            ToolCallSyntax::kQwen);
  EXPECT_EQ(DetectToolCallSyntax("{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + "
                                 "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name']}}"),
            ToolCallSyntax::kDeepSeek);
  EXPECT_EQ(DetectToolCallSyntax("{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
                                 "{{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}"),
            ToolCallSyntax::kLlama3);
  EXPECT_EQ(DetectToolCallSyntax("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content "
                                 "}}<|im_end|>\n{% endfor %}"),
            ToolCallSyntax::kNone);
  EXPECT_STREQ(ToolCallSyntaxName(ToolCallSyntax::kDeepSeek), "deepseek");
}

TEST(ToolCalls, QwenBlocks) {
  const auto r = ParseToolCalls(
      "I'll check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", "
      "\"arguments\": {\"tz\": \"Europe/Paris\"}}\n</tool_call>",
      ToolCallSyntax::kQwen);
  EXPECT_EQ(r.content, "I'll check both.");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(Args(r.tool_calls[0]), nlohmann::json::parse(R"({"city":"Paris","unit":"celsius"})"));
  EXPECT_EQ(r.tool_calls[1].name, "get_time");
  EXPECT_EQ(r.tool_calls[1].arguments, R"({"tz":"Europe/Paris"})");
  // Qwen3 thinks first; arguments given as a JSON string are accepted too.
  const auto q3 = ParseToolCalls(
      "<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
      "\"arguments\": \"{\\\"city\\\": \\\"Oslo\\\"}\"}\n</tool_call>",
      ToolCallSyntax::kQwen);
  ASSERT_EQ(q3.tool_calls.size(), 1u);
  EXPECT_EQ(q3.tool_calls[0].arguments, R"({"city":"Oslo"})");
  EXPECT_EQ(q3.content, "<think>\nThe user wants the weather.\n</think>");
  const auto plain = ParseToolCalls("Paris is sunny.", ToolCallSyntax::kQwen);
  EXPECT_EQ(plain.content, "Paris is sunny.");
  EXPECT_TRUE(plain.tool_calls.empty());
}

TEST(ToolCalls, DeepSeekV3AndR1Blocks) {
  const std::string reply =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
      "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
      "get_time\n```json\n{\"tz\": \"CET\", \"fmt\": [\"h\", \"m\"]}\n```<｜tool▁call▁end｜>"
      "<｜tool▁calls▁end｜>";
  const auto r = ParseToolCalls(reply, ToolCallSyntax::kDeepSeek);
  EXPECT_EQ(r.content, "");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(r.tool_calls[1].name, "get_time");
  EXPECT_EQ(Args(r.tool_calls[1]), nlohmann::json::parse(R"({"tz":"CET","fmt":["h","m"]})"));
  // R1 reasons first, and the reasoning stays content.
  const auto r1 =
      ParseToolCalls("<think>\nNeed weather.\n</think>\n\n" + reply, ToolCallSyntax::kDeepSeek);
  EXPECT_EQ(r1.tool_calls.size(), 2u);
  EXPECT_EQ(r1.content, "<think>\nNeed weather.\n</think>");
  // V3.1: NAME<sep>ARGS.
  const auto v31 = ParseToolCalls(
      "Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": "
      "\"Rome\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
      ToolCallSyntax::kDeepSeek);
  ASSERT_EQ(v31.tool_calls.size(), 1u);
  EXPECT_EQ(v31.tool_calls[0].name, "get_weather");
  EXPECT_EQ(v31.tool_calls[0].arguments, R"({"city":"Rome"})");
  EXPECT_EQ(v31.content, "Let me look.");
}

TEST(ToolCalls, Llama3JsonAndPythonTag) {
  const auto json =
      ParseToolCalls("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
                     ToolCallSyntax::kLlama3);
  ASSERT_EQ(json.tool_calls.size(), 1u);
  EXPECT_EQ(json.tool_calls[0].name, "get_weather");
  EXPECT_EQ(json.tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(json.content, "");
  const auto tagged = ParseToolCalls(
      "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", "
      "\"parameters\": {}}<|eom_id|>",
      ToolCallSyntax::kLlama3);
  ASSERT_EQ(tagged.tool_calls.size(), 2u);
  EXPECT_EQ(tagged.tool_calls[0].name, "a");
  EXPECT_EQ(tagged.tool_calls[1].arguments, "{}");
  const auto builtin = ParseToolCalls(
      "<|python_tag|>brave_search.call(query=\"weather in Paris\", count=3, safe=True)<|eom_id|>",
      ToolCallSyntax::kLlama3);
  ASSERT_EQ(builtin.tool_calls.size(), 1u);
  EXPECT_EQ(builtin.tool_calls[0].name, "brave_search");
  EXPECT_EQ(Args(builtin.tool_calls[0]),
            nlohmann::json::parse(R"({"query":"weather in Paris","count":3,"safe":true})"));
  // A JSON answer that is not a call (no parameters) and plain text stay content.
  const auto answer = ParseToolCalls("{\"name\": \"Bob\", \"age\": 3}", ToolCallSyntax::kLlama3);
  EXPECT_TRUE(answer.tool_calls.empty());
  EXPECT_EQ(answer.content, "{\"name\": \"Bob\", \"age\": 3}");
  EXPECT_TRUE(ParseToolCalls("It is sunny.", ToolCallSyntax::kLlama3).tool_calls.empty());
}

TEST(ToolCalls, UnterminatedBlocksStayText) {
  const std::string qwen = "ok <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}";
  const auto q = ParseToolCalls(qwen, ToolCallSyntax::kQwen);
  EXPECT_TRUE(q.tool_calls.empty());
  EXPECT_EQ(q.content, qwen);
  const std::string ds =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}";
  const auto d = ParseToolCalls(ds, ToolCallSyntax::kDeepSeek);
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_NE(d.content.find("tool▁call▁begin"), std::string::npos);
  const auto l =
      ParseToolCalls("{\"name\": \"f\", \"parameters\": {\"a\": ", ToolCallSyntax::kLlama3);
  EXPECT_TRUE(l.tool_calls.empty());
  const auto b =
      ParseToolCalls("<|python_tag|>brave_search.call(query=\"x", ToolCallSyntax::kLlama3);
  EXPECT_TRUE(b.tool_calls.empty());
}

TEST(ToolCalls, NestedAndMalformedBlocksStayText) {
  const auto nested = ParseToolCalls(
      "<tool_call><tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call></tool_call>",
      ToolCallSyntax::kQwen);
  EXPECT_TRUE(nested.tool_calls.empty());
  EXPECT_NE(nested.content.find("<tool_call>"), std::string::npos);
  for (const char* body : {"{\"arguments\": {}}", "{\"name\": 3}",
                           "{\"name\": \"f\", "
                           "\"arguments\": [1]}",
                           "not json", "{\"name\": \"\"}"}) {
    const auto r =
        ParseToolCalls(std::string("<tool_call>") + body + "</tool_call>", ToolCallSyntax::kQwen);
    EXPECT_TRUE(r.tool_calls.empty()) << body;
  }
}

TEST(ToolCalls, HugeAndDeepOutputIsBounded) {
  std::string deep = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": ";
  deep += std::string(200'000, '[') + std::string(200'000, ']') + "}}</tool_call>";
  const auto d = ParseToolCalls(deep, ToolCallSyntax::kQwen);
  EXPECT_TRUE(d.tool_calls.empty());
  std::string many;
  for (int i = 0; i < 300; ++i)
    many += "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
  const auto m = ParseToolCalls(many, ToolCallSyntax::kQwen);
  EXPECT_EQ(m.tool_calls.size(), 128u);
  EXPECT_FALSE(m.content.empty());  // the rest is kept as text
  const std::string opens(1 << 20, '<');
  EXPECT_TRUE(ParseToolCalls(opens, ToolCallSyntax::kDeepSeek).tool_calls.empty());
  EXPECT_TRUE(
      ParseToolCalls(std::string(1 << 20, '{'), ToolCallSyntax::kLlama3).tool_calls.empty());
  EXPECT_TRUE(ParseToolCalls("<|python_tag|>" + std::string(1 << 20, 'a') + ".call()",
                             ToolCallSyntax::kLlama3)
                  .tool_calls.empty());
  // Invalid UTF-8 in a name or argument does not throw.
  const auto bad = ParseToolCalls("<tool_call>{\"name\": \"f\xff\", \"arguments\": {}}</tool_call>",
                                  ToolCallSyntax::kQwen);
  EXPECT_TRUE(bad.tool_calls.empty());
}

}  // namespace
}  // namespace airlock::engine
