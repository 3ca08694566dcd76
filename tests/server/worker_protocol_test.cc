// The gateway <-> model worker wire (server/internal/worker_protocol.h): frames split across reads
// decode the same; a header announcing more than the limit is refused from its 4 bytes, before
// any body is buffered; requests and results cross unchanged (every field); a worker's message
// with a mistyped or out-of-range field is refused.
#include "server/internal/worker_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace airlock::server::internal {
namespace {

using json = nlohmann::json;

TEST(WorkerProtocolTest, FramesSplitAcrossReadsDecodeTheSame) {
  std::string stream = EncodeJsonFrame({{"op", "hello"}, {"protocol", kWorkerProtocolVersion}}) +
                       EncodeTextFrame(7, std::string("caf\xc3", 4)) +
                       EncodeTextFrame(7, std::string("\xa9", 1));
  FrameDecoder decoder(kMaxWorkerFrameBytes);
  std::vector<Frame> frames;
  for (char c : stream) {
    decoder.Feed(&c, 1);
    auto next = decoder.Next();
    ASSERT_TRUE(next.has_value()) << next.error().message();
    if (next->has_value()) frames.push_back(std::move(**next));
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].kind, 'J');
  EXPECT_EQ(frames[0].json["op"], "hello");
  EXPECT_EQ(frames[1].id, 7u);
  EXPECT_EQ(frames[1].text + frames[2].text, "caf\xc3\xa9");  // raw bytes, split mid-character
  EXPECT_EQ(decoder.buffered(), 0u);
}

// Attack: a worker announcing a 4 GiB frame must not make the gateway allocate or wait for it.
TEST(WorkerProtocolTest, OversizedFrameIsRefusedFromItsHeader) {
  FrameDecoder decoder(kMaxWorkerFrameBytes);
  decoder.Feed("\xff\xff\xff\xff", 4);
  auto next = decoder.Next();
  ASSERT_FALSE(next.has_value());
  EXPECT_EQ(next.error().code(), StatusCode::kLimitExceeded);
  FrameDecoder empty(kMaxWorkerFrameBytes);
  empty.Feed(std::string(4, '\0').data(), 4);
  EXPECT_FALSE(empty.Next().has_value());
}

TEST(WorkerProtocolTest, GenerateRequestCrossesWithEveryField) {
  GenerateRequest r;
  r.chat = true;
  r.messages = {{"system", "be brief"}, {"user", "hi \xe2\x9c\x93"}};
  r.prompt = "unused";
  r.max_tokens = 77;
  r.temperature = 0.25;
  r.top_p = 0.5;
  r.stop = {"\n\n", "END"};
  r.seed = 0xfedcba9876543210ULL;
  r.presence_penalty = -1.5;
  r.frequency_penalty = 0.75;
  r.json_schema = R"({"type":"object"})";
  r.json_object = true;
  r.logprobs = true;
  r.top_logprobs = 3;
  r.tools_json = R"([{"type":"function","function":{"name":"f"}}])";
  r.messages.push_back({"assistant", "", R"([{"id":"c1"}])", ""});
  r.messages.push_back({"tool", "42", "", "c1"});
  auto back = GenerateRequestFromWire(json::parse(EncodeJsonFrame(ToWire(r)).substr(5)));
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(back->chat, r.chat);
  ASSERT_EQ(back->messages.size(), 4u);
  EXPECT_EQ(back->messages[2].tool_calls_json, r.messages[2].tool_calls_json);
  EXPECT_EQ(back->messages[3].tool_call_id, "c1");
  EXPECT_EQ(back->presence_penalty, r.presence_penalty);
  EXPECT_EQ(back->frequency_penalty, r.frequency_penalty);
  EXPECT_EQ(back->json_schema, r.json_schema);
  EXPECT_EQ(back->json_object, r.json_object);
  EXPECT_EQ(back->logprobs, r.logprobs);
  EXPECT_EQ(back->top_logprobs, r.top_logprobs);
  EXPECT_EQ(back->tools_json, r.tools_json);
  EXPECT_EQ(back->messages[1].role, "user");
  EXPECT_EQ(back->messages[1].content, r.messages[1].content);
  EXPECT_EQ(back->prompt, r.prompt);
  EXPECT_EQ(back->max_tokens, r.max_tokens);
  EXPECT_EQ(back->temperature, r.temperature);
  EXPECT_EQ(back->top_p, r.top_p);
  EXPECT_EQ(back->stop, r.stop);
  EXPECT_EQ(back->seed, r.seed);
}

TEST(WorkerProtocolTest, GenerateResultCrossesWithItsLogprobs) {
  GenerateResult r;
  r.prompt_tokens = 5;
  r.completion_tokens = 1;
  r.finish_reason = "length";
  TokenLogprob t;
  t.token = "hi";
  t.bytes = {'h', 'i'};
  t.logprob = -0.25;
  t.top.push_back({"hi", {'h', 'i'}, -0.25});
  t.top.push_back({"ho", {'h', 'o'}, -2.0});
  r.logprobs.push_back(t);
  auto back = GenerateResultFromWire(ToWire(r));
  ASSERT_TRUE(back.has_value()) << back.error().message();
  ASSERT_EQ(back->logprobs.size(), 1u);
  EXPECT_EQ(back->logprobs[0].token, "hi");
  EXPECT_EQ(back->logprobs[0].bytes, t.bytes);
  EXPECT_EQ(back->logprobs[0].logprob, -0.25);
  ASSERT_EQ(back->logprobs[0].top.size(), 2u);
  EXPECT_EQ(back->logprobs[0].top[1].token, "ho");
}

// Attack: a worker's logprobs the gateway would copy into a response: positive or non-finite
// log-probabilities, bytes that are not bytes, more than 20 alternatives.
TEST(WorkerProtocolTest, HostileLogprobsFromAWorkerAreRefused) {
  auto result_with = [](json entry) {
    return json{{"prompt_tokens", 1},
                {"completion_tokens", 1},
                {"finish_reason", "stop"},
                {"logprobs", json::array({entry})}};
  };
  EXPECT_FALSE(GenerateResultFromWire(result_with({{"token", "a"}, {"logprob", 3.0}})));
  EXPECT_FALSE(GenerateResultFromWire(result_with({{"token", "a"}, {"logprob", "x"}})));
  EXPECT_FALSE(
      GenerateResultFromWire(result_with({{"token", "a"}, {"bytes", {300}}, {"logprob", -1}})));
  json many = json::array();
  for (int i = 0; i < 21; ++i) many.push_back({{"token", "a"}, {"logprob", -1}});
  EXPECT_FALSE(
      GenerateResultFromWire(result_with({{"token", "a"}, {"logprob", -1}, {"top", many}})));
  EXPECT_FALSE(GenerateResultFromWire(json{{"prompt_tokens", 1},
                                           {"completion_tokens", 1},
                                           {"finish_reason", "stop"},
                                           {"logprobs", "x"}}));
  EXPECT_TRUE(GenerateResultFromWire(result_with({{"token", "a"}, {"logprob", -1}})));
}

// The worker names its model's tool-call syntax in its hello (the gateway never reads the
// template); an unknown name is a protocol violation.
TEST(WorkerProtocolTest, HelloCarriesTheToolCallSyntax) {
  auto hello = [](const json& j) {
    Frame f;
    f.kind = 'J';
    f.json = j;
    return ParseWorkerMessage(std::move(f));
  };
  auto qwen =
      hello({{"op", "hello"}, {"protocol", kWorkerProtocolVersion}, {"tool_syntax", "qwen"}});
  ASSERT_TRUE(qwen.has_value()) << qwen.error().message();
  EXPECT_EQ(qwen->tool_syntax, engine::ToolCallSyntax::kQwen);
  auto plain = hello({{"op", "hello"}, {"protocol", kWorkerProtocolVersion}});
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->tool_syntax, engine::ToolCallSyntax::kNone);
  EXPECT_FALSE(
      hello({{"op", "hello"}, {"protocol", kWorkerProtocolVersion}, {"tool_syntax", "jinja"}}));
  EXPECT_FALSE(hello({{"op", "hello"}, {"protocol", kWorkerProtocolVersion}, {"tool_syntax", 1}}));
}

// The hello may report the KV cache (for /metrics); its fields are checked like the rest: a
// negative or absurd size, a non-number, or an unknown type is a protocol violation.
TEST(WorkerProtocolTest, HelloCarriesTheKvCacheWithinBounds) {
  auto hello = [](json extra) {
    json j = {{"op", "hello"}, {"protocol", kWorkerProtocolVersion}};
    for (auto& [k, v] : extra.items()) j[k] = v;
    Frame f;
    f.kind = 'J';
    f.json = j;
    return ParseWorkerMessage(std::move(f));
  };
  auto ok = hello({{"kv_cache_bytes", 327680}, {"kv_type", "f16"}});
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  EXPECT_EQ(ok->kv_cache.bytes, 327680u);
  EXPECT_EQ(ok->kv_cache.type, "f16");
  auto absent = hello(json::object());
  ASSERT_TRUE(absent.has_value());
  EXPECT_EQ(absent->kv_cache.bytes, 0u);
  EXPECT_FALSE(hello({{"kv_cache_bytes", -1}}));
  EXPECT_FALSE(hello({{"kv_cache_bytes", std::uint64_t{1} << 60}}));
  EXPECT_FALSE(hello({{"kv_cache_bytes", "many"}}));
  EXPECT_FALSE(hello({{"kv_type", "f16\"} 1\nairlock_fake 2"}}));  // would forge a metric line
}

// Attack: a worker's result with values the gateway would copy into responses and budgets.
TEST(WorkerProtocolTest, WorkerMessagesWithBadFieldsAreRefused) {
  auto parse = [](const json& j) {
    Frame f;
    f.kind = 'J';
    f.json = j;
    return ParseWorkerMessage(f);
  };
  GenerateResult good;
  good.prompt_tokens = 5;
  good.completion_tokens = 9;
  good.finish_reason = "length";
  auto ok = parse({{"op", "done"}, {"id", 3}, {"result", ToWire(good)}});
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  EXPECT_EQ(ok->result.completion_tokens, 9);
  EXPECT_EQ(ok->result.finish_reason, "length");
  for (const json& bad :
       {json{{"op", "done"}, {"id", 3}, {"result", {{"prompt_tokens", -1}}}},
        json{{"op", "done"}, {"id", 3}, {"result", {{"completion_tokens", "9"}}}},
        json{{"op", "done"}, {"id", 3}, {"result", {{"finish_reason", "<script>"}}}},
        json{{"op", "done"},
             {"id", 3},
             {"result", {{"completion_tokens", 18446744073709551615ULL}}}},
        json{{"op", "done"}, {"id", -3}, {"result", ToWire(good)}},
        json{{"op", "error"}, {"id", 3}, {"code", "permission_denied"}, {"message", "x"}},
        json{{"op", "count"}, {"id", 3}}, json{{"op", "hello"}, {"protocol", 2}},
        json{{"op", "reboot"}, {"id", 1}}, json{{"id", 1}}}) {
    EXPECT_FALSE(parse(bad).has_value()) << bad.dump();
  }
  auto error = parse({{"op", "error"},
                      {"id", 3},
                      {"code", "invalid_argument"},
                      {"message", std::string(10000, 'x')}});
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, StatusCode::kInvalidArgument);
  EXPECT_EQ(error->text.size(), kMaxWorkerErrorMessage);
}

}  // namespace
}  // namespace airlock::server::internal
