// Red team RT4 F2 and F8 (answer side), closed as a class: every part of an upstream's answer
// that reaches the client is scanned by the response rules or removed, whatever its key or shape.
//  * the answer carrier of another shape (`message` in a stream chunk, `delta` in a complete
//    answer, `text` in a chat answer) bypassed content processing, reasoning and the scan;
//  * data split between the values of one array or object outside content, numbers included;
//  * a card in a float's fraction digits;
//  * log probabilities inside the message or delta (they spell the answer token by token).
// A real `airlock serve` (AIRLOCK_EXE) in front of an upstream TEST DOUBLE (RecordingUpstream in
// gateway_support.h) that answers what the request's "x_case" names; all on loopback.
#include <fstream>

#include "gateway_support.h"

namespace {

using airlock::testing::RecordingUpstream;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;
using airlock::testing::ServeProcessOptions;
using json = nlohmann::json;

constexpr const char* kEmail = "alice@example.com";
constexpr const char* kSsn = "536-22-4581";
constexpr const char* kToken = "ghp_R4nd0mT0k3nV4lu3xYz1234567890abCDEFg";
constexpr const char* kReasoning = "SECRET PLAN";

std::string Event(const json& chunk) { return "data: " + chunk.dump() + "\n\n"; }

json Chunk(json choice) {
  return {{"id", "c"}, {"object", "chat.completion.chunk"}, {"choices", json::array({choice})}};
}

json Complete(json choice) {
  return {{"id", "x"},
          {"object", "chat.completion"},
          {"choices", json::array({choice})},
          {"usage", {{"prompt_tokens", 1}, {"completion_tokens", 1}, {"total_tokens", 2}}}};
}

// A message or delta that carries every kind of data the policy acts on.
json Loaded(const std::string& data) {
  return {
      {"role", "assistant"},
      {"content", "mail " + data},
      {"reasoning_content", kReasoning},
      {"tool_calls",
       json::array({{{"index", 0},
                     {"id", "t"},
                     {"type", "function"},
                     {"function", {{"name", "f"}, {"arguments", "{\"to\":\"" + data + "\"}"}}}}})}};
}

void Answer(const httplib::Request& req, httplib::Response& res) {
  json body = json::parse(req.body, nullptr, false);
  const std::string which = body.is_object() ? body.value("x_case", std::string()) : "";
  const std::string tail =
      Event(Chunk({{"index", 0}, {"delta", json::object()}, {"finish_reason", "stop"}})) +
      "data: [DONE]\n\n";
  if (which == "message_in_chunk") {  // streamed: the answer in `message` instead of `delta`
    std::string all;
    for (const std::string& data : {std::string(kEmail), std::string(kSsn), std::string(kToken)})
      all += Event(Chunk({{"index", 0}, {"message", Loaded(data)}}));
    res.set_content(all + tail, "text/event-stream");
  } else if (which == "text_in_chunk") {
    res.set_content(Event(Chunk({{"index", 0}, {"text", std::string("mail ") + kEmail}})) + tail,
                    "text/event-stream");
  } else if (which.rfind("delta_in_answer:", 0) == 0) {  // complete: data in `delta` (or `text`)
    const std::string name = which.substr(16);  // the request must not carry the data itself
    const std::string data = name == "ssn" ? kSsn : name == "token" ? kToken : kEmail;
    res.set_content(Complete({{"index", 0},
                              {"message", {{"role", "assistant"}, {"content", "hi"}}},
                              {"delta", Loaded(data)},
                              {"text", "mail " + data},
                              {"finish_reason", "stop"}})
                        .dump(),
                    "application/json");
  } else if (which == "split_strings" || which == "split_numbers" || which == "split_object") {
    json extra = which == "split_strings"   ? json::array({"mail alice@", "example.com ok"})
                 : which == "split_numbers" ? json::array({4111, 1111, 1111, 1111})
                                            : json{{"a", "mail alice@"}, {"b", "example.com"}};
    json answer = Complete({{"index", 0},
                            {"message", {{"role", "assistant"}, {"content", "hi"}}},
                            {"finish_reason", "stop"}});
    answer["x_vendor"] = {{"parts", extra}};
    res.set_content(answer.dump(), "application/json");
  } else if (which == "two_choices") {  // an address cut between two choices
    json answer = Complete({{"index", 0},
                            {"message", {{"role", "assistant"}, {"content", "mail alice@exa"}}},
                            {"finish_reason", "stop"}});
    answer["choices"].push_back({{"index", 1},
                                 {"message", {{"role", "assistant"}, {"content", "mple.com ok"}}},
                                 {"finish_reason", "stop"}});
    res.set_content(answer.dump(), "application/json");
  } else if (which == "spaced") {  // a token spaced out one character at a time
    std::string spaced;
    for (char c : std::string(kToken)) spaced += std::string(spaced.empty() ? "" : " ") + c;
    res.set_content(Complete({{"index", 0},
                              {"message", {{"role", "assistant"}, {"content", "use " + spaced}}},
                              {"finish_reason", "stop"}})
                        .dump(),
                    "application/json");
  } else if (which == "fraction") {
    json answer = Complete({{"index", 0},
                            {"message", {{"role", "assistant"}, {"content", "hi"}}},
                            {"finish_reason", "stop"}});
    answer["x_score"] = 0.4111111111111111;
    res.set_content(answer.dump(), "application/json");
  } else if (which == "message_logprobs") {
    json tokens = json::array();
    for (const char* t : {"mail ", "alice", "@", "example", ".com"})
      tokens.push_back({{"token", t}, {"logprob", -0.1}});
    res.set_content(Complete({{"index", 0},
                              {"message",
                               {{"role", "assistant"},
                                {"content", std::string("mail ") + kEmail},
                                {"logprobs", {{"content", tokens}}}}},
                              {"finish_reason", "stop"}})
                        .dump(),
                    "application/json");
  } else {
    res.set_content(Complete({{"index", 0},
                              {"message", {{"role", "assistant"}, {"content", "ok"}}},
                              {"finish_reason", "stop"}})
                        .dump(),
                    "application/json");
  }
}

class AnswerEnvelopeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new airlock::testing::TempDir("envelope");
    upstream_ = new RecordingUpstream(Answer);
    std::string config = (dir_->path() / "policy.toml").string();
    std::ofstream(config) << "[[upstreams]]\nname='us'\nbase_url='http://127.0.0.1:"
                          << upstream_->port()
                          << "/v1'\njurisdiction='US'\nmodels=['echo']\n"
                             "[[rules]]\ndata_classes=['secret','payment_card']\naction='redact'\n"
                             "[[rules]]\ndata_classes=['us_ssn']\naction='block'\n"
                             "[[rules]]\ndata_classes=['email']\naction='pseudonymize'\n"
                             "[reasoning]\naction='strip'\n"
                             "[audit]\npath='"
                          << (dir_->path() / "audit.db").string() << "'\nstore_text=true\n";
    serve_ = new ServeProcess(ServeArgs(config), ServeProcessOptions{.stop_signal = SIGTERM});
    port_ = serve_->port();
  }
  static void TearDownTestSuite() {
    delete serve_;
    delete upstream_;
    delete dir_;
  }
  void SetUp() override { ASSERT_GT(port_, 0) << "airlock serve did not start"; }

  static httplib::Result Send(const std::string& which, bool stream, json extra = json::object()) {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(20, 0);
    json body = {{"model", "echo"},
                 {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                 {"stream", stream},
                 {"x_case", which}};
    body.update(extra);
    return client.Post("/v1/chat/completions", {{"Authorization", "Bearer any"}}, body.dump(),
                       "application/json");
  }

  static void ExpectNoneOf(const std::string& body, const std::vector<std::string>& secrets,
                           const std::string& what) {
    for (const std::string& s : secrets)
      EXPECT_EQ(body.find(s), std::string::npos) << what << " leaked " << s << ": " << body;
  }

  static inline airlock::testing::TempDir* dir_ = nullptr;
  static inline RecordingUpstream* upstream_ = nullptr;
  static inline ServeProcess* serve_ = nullptr;
  static inline int port_ = 0;
};

// Attack (RT4 F2): a stream chunk's choices[].message (content with an address, an SSN of a
// block class, a token; reasoning_content under strip; tool-call arguments) reached the client
// verbatim: only `delta` was processed, and the envelope scan skipped both keys.
TEST_F(AnswerEnvelopeTest, MessageObjectInAStreamChunkIsScanned) {
  auto r = Send("message_in_chunk", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  ExpectNoneOf(r->body, {kEmail, kSsn, kToken, kReasoning, "\"message\""}, "stream chunk");
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos) << r->body;
  // `text` is a completion's carrier, not a chat chunk's: it goes the same way.
  r = Send("text_in_chunk", true);
  ASSERT_TRUE(r);
  ExpectNoneOf(r->body, {kEmail}, "text in a chat chunk");
}

// Attack (RT4 F2): a complete answer's choices[].delta (and `text`) reached the client verbatim
// next to a harmless message.
TEST_F(AnswerEnvelopeTest, DeltaObjectInANonStreamedAnswerIsScanned) {
  for (const auto& [name, data] : std::vector<std::pair<std::string, std::string>>{
           {"email", kEmail}, {"ssn", kSsn}, {"token", kToken}}) {
    auto r = Send("delta_in_answer:" + name, false);
    ASSERT_TRUE(r) << data;
    EXPECT_EQ(r->status, 200) << data << ": " << r->body;
    ExpectNoneOf(r->body, {data, kReasoning, "\"delta\""}, "complete answer");
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r->body;
    EXPECT_EQ(j["choices"][0]["message"]["content"], "hi") << r->body;
  }
}

// Attack (RT4 F2 class): data split between the strings of an unknown field's array or object,
// or between the numbers of an array ([4111, 1111, 1111, 1111]), was scanned value by value.
TEST_F(AnswerEnvelopeTest, DataSplitAcrossTheValuesOfAnAnswerFieldEndsTheAnswer) {
  for (const char* which : {"split_strings", "split_numbers", "split_object"}) {
    auto r = Send(which, false);
    ASSERT_TRUE(r) << which;
    EXPECT_EQ(r->status, 502) << which << ": " << r->body;
    ExpectNoneOf(r->body, {"alice@", "example.com", "4111"}, which);
  }
}

// Attack (RT4 F8, answer side): a card in a float's fraction digits passed.
TEST_F(AnswerEnvelopeTest, CardInTheFractionOfAnAnswerNumberEndsTheAnswer) {
  auto r = Send("fraction", false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_EQ(r->body.find("4111111111111111"), std::string::npos) << r->body;
}

// Attack (RT4 F2 class): log probabilities inside the message spell the redacted address token
// by token; they are withheld like the choice-level ones.
TEST_F(AnswerEnvelopeTest, LogprobsInsideTheMessageAreWithheld) {
  auto r = Send("message_logprobs", false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r->body;
  EXPECT_TRUE(j["choices"][0]["message"]["logprobs"].is_null()) << r->body;
  EXPECT_EQ(r->body.find("alice"), std::string::npos) << r->body;
}

// Attack (RT4 F9): the audit stored the choices' texts joined with nothing between them, so an
// address cut between two choices ("mail alice@exa" | "mple.com ok") was stored whole.
TEST_F(AnswerEnvelopeTest, ChoicesAreStoredApartInTheAudit) {
  auto r = Send("two_choices", false, {{"n", 2}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const std::string id = r->get_header_value("X-Request-Id");
  ASSERT_FALSE(id.empty());
  json record;
  auto [rc, out] = airlock::testing::RunAirlock(
      "audit show --log '" + (dir_->path() / "audit.db").string() + "' --json --limit 100");
  std::size_t pos = 0;
  while (pos < out.size()) {
    std::size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    json rec = json::parse(out.substr(pos, end - pos), nullptr, false);
    pos = end + 1;
    if (rec.is_object() && rec.value("request_id", "") == id) record = rec;
  }
  ASSERT_TRUE(record.is_object()) << rc << ": " << out;
  const std::string stored = record.value("response_text", "");
  EXPECT_NE(stored.find("mail alice@exa"), std::string::npos) << stored;
  EXPECT_NE(stored.find("mple.com ok"), std::string::npos) << stored;
  EXPECT_EQ(stored.find("alice@example.com"), std::string::npos) << stored;
}

// Sends a request with `extra` fields next to a user message "hi"; returns the status and the
// forwarded body's strings and numbers in order (empty when nothing was forwarded).
std::pair<int, std::string> Forward(int port, RecordingUpstream& upstream, const json& extra) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(20, 0);
  json body = {{"model", "echo"},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  body.update(extra);
  std::size_t before = upstream.count();
  auto r = client.Post("/v1/chat/completions", {{"Authorization", "Bearer any"}}, body.dump(),
                       "application/json");
  if (!r) return {0, ""};
  return {r->status, upstream.count() > before ? upstream.last() : std::string()};
}

// Letters and digits only: what is left of data however it is cut or padded.
std::string Compact(std::string_view s) {
  std::string out;
  for (char c : s)
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) out += c;
  return out;
}

json Tool(const std::string& name, const std::string& description, json parameters = nullptr) {
  json f = {{"name", name}, {"description", description}};
  if (!parameters.is_null()) f["parameters"] = parameters;
  return {{"type", "function"}, {"function", f}};
}

json EnumParameter(json values) {
  return {{"type", "object"}, {"properties", {{"g", {{"type", "string"}, {"enum", values}}}}}};
}

// Attack (RT4 F8): data split between request fields other than messages (two tool
// descriptions, a schema enum, a `stop` array, an unknown field's list, an enum of numbers)
// reached the upstream: a message "hi" before them glued to the first digit ("hi536-22-4581"),
// and numbers of under 7 digits were never scanned.
TEST_F(AnswerEnvelopeTest, DataSplitAcrossNonMessageFieldsNeverReachesTheUpstream) {
  const std::vector<std::pair<std::string, json>> cases = {
      {"ssn in two tool descriptions",
       {{"tools", json::array({Tool("f", "536-22"), Tool("g", "-4581")})}}},
      {"ssn in a stop array", {{"stop", json::array({"536-22", "-4581"})}}},
      {"ssn in an unknown field's list",
       {{"x_vendor", {{"list", json::array({"536-22", "-4581"})}}}}},
      {"card in two tool descriptions",
       {{"tools", json::array({Tool("f", "4111 1111"), Tool("g", "1111 1111")})}}},
      {"card in a schema enum",
       {{"tools", json::array({Tool("f", "x", EnumParameter({"4111", "1111", "1111", "1111"}))})}}},
      {"card in an enum of numbers",
       {{"tools", json::array({Tool("f", "x", EnumParameter({4111, 1111, 1111, 1111}))})}}},
      {"ssn in an enum of digit strings",
       {{"tools", json::array({Tool("f", "x", EnumParameter({"536", "22", "4581"}))})}}},
      {"ssn in an enum of numbers",
       {{"tools", json::array({Tool("f", "x", EnumParameter({536, 22, 4581}))})}}},
      {"card in an unknown field's numbers",
       {{"x_vendor", {{"a", 4111}, {"b", 1111}, {"c", 1111}, {"d", 1111}}}}},
      {"card in a float's fraction", {{"x_vendor", 0.4111111111111111}}},
      {"card in the temperature's fraction", {{"temperature", 0.4111111111111111}}},
  };
  for (const auto& [what, extra] : cases) {
    auto [status, forwarded] = Forward(port_, *upstream_, extra);
    EXPECT_NE(status, 0) << what;  // refused (400, 403), or forwarded without the value
    for (const char* value : {"536224581", "4111111111111111"})
      EXPECT_EQ(Compact(forwarded).find(value), std::string::npos) << what << ": " << forwarded;
  }
}

// Attack (RT4 F8 side effect): an address split across a tool enum ("bob.smith@" +
// "corp-mail.com") was read as "hibob.smith@corp-mail.com" with the user's message "hi", whose
// cut rewrote that message to a placeholder. "hi" + "bob.smith@" cannot be told from "ali" +
// "ce@": the request is refused (fail closed), neither the message rewritten nor the address
// forwarded. A value that starts inside a field ("see a" + "lice@...") is still rewritten.
TEST_F(AnswerEnvelopeTest, JoinedValueDoesNotRewriteTheMessageBeforeIt) {
  for (const json& values :
       {json::array({"bob.smith@", "corp-mail.com"}), json::array({"bob.smith@corp-mail.com"})}) {
    auto [status, forwarded] = Forward(
        port_, *upstream_, {{"tools", json::array({Tool("f", "x", EnumParameter(values))})}});
    if (status == 200) {
      json sent = json::parse(forwarded, nullptr, false);
      ASSERT_TRUE(sent.is_object()) << forwarded;
      EXPECT_EQ(sent["messages"][0]["content"], "hi") << forwarded;
    } else {
      EXPECT_EQ(status, 403) << values.dump();
    }
    EXPECT_EQ(Compact(forwarded).find("bobsmithcorpmailcom"), std::string::npos) << forwarded;
  }
  auto [status, forwarded] =
      Forward(port_, *upstream_,
              {{"tools", json::array({Tool("f", "see bob.sm"), Tool("g", "ith@corp-mail.com")})}});
  EXPECT_EQ(status, 200);
  EXPECT_EQ(Compact(forwarded).find("smithcorpmailcom"), std::string::npos) << forwarded;
}

// Attack (RT4 F10): data spaced out one character at a time passed every detector, in a
// request and in an answer. The whole spaced run is rewritten.
TEST_F(AnswerEnvelopeTest, DataSpacedOutOneCharacterAtATimeIsRewritten) {
  auto [status, forwarded] =
      Forward(port_, *upstream_,
              {{"messages", json::array({{{"role", "user"},
                                          {"content",
                                           "mail a l i c e @ e x a m p l e . c o m "
                                           "card 4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1"}}})}});
  EXPECT_EQ(status, 200);
  EXPECT_EQ(Compact(forwarded).find("aliceexamplecom"), std::string::npos) << forwarded;
  EXPECT_EQ(Compact(forwarded).find("4111111111111111"), std::string::npos) << forwarded;
  EXPECT_NE(forwarded.find("mail "), std::string::npos) << forwarded;
  auto r = Send("spaced", false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Compact(r->body).find("R4nd0mT0k3n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("REDACTED"), std::string::npos) << r->body;
}

// The control: an ordinary answer passes unchanged.
TEST_F(AnswerEnvelopeTest, OrdinaryAnswerPasses) {
  auto r = Send("plain", false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r->body;
  EXPECT_EQ(j["choices"][0]["message"]["content"], "ok") << r->body;
}

}  // namespace
