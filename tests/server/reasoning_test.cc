// Reasoning as a data class (issue #13, item 7), end to end: real `airlock serve` processes in
// front of a logging upstream (an HTTP server that keeps every request body as it arrived and
// answers with the reasoning a request asks for), streamed and not. Rules with
// data_classes = ["reasoning"] block, redact or pass it in requests (reasoning_content and
// <think> blocks of earlier assistant turns) and answers; upstreams receive it only like any
// other class; the audit stores its text only with `[reasoning] action = "log"`.
// All traffic stays on loopback; every wait is bounded.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <tuple>

#include "gateway_support.h"
#include "shell_util.h"

namespace {

using json = nlohmann::json;
using airlock::testing::RecordingUpstream;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;
using airlock::testing::ServeProcessOptions;
using airlock::testing::TempDir;

// The answers the upstream gives, by the name a request sends in `x_answer` (the text itself is
// not in the request, so that the stored prompt never holds it): content and reasoning_content.
std::mutex answers_mu;
std::map<std::string, std::pair<std::string, std::string>> answers;

std::string AnswerName(const std::string& reply, const std::string& rc) {
  std::lock_guard<std::mutex> lock(answers_mu);
  std::string name = "answer-" + std::to_string(answers.size());
  answers[name] = {reply, rc};
  return name;
}

// The upstream's answers (RecordingUpstream keeps every request body): as `x_answer` names
// (streamed in 3-byte pieces, so every tag is cut across chunks).
void AnswerAsNamed(const httplib::Request& req, httplib::Response& res) {
  json body = json::parse(req.body);
  std::string reply = "plain answer", rc;
  {
    std::lock_guard<std::mutex> lock(answers_mu);
    auto it = answers.find(body.value("x_answer", std::string()));
    if (it != answers.end()) std::tie(reply, rc) = it->second;
  }
  const std::string model = body.value("model", std::string());
  json usage = {{"prompt_tokens", 5}, {"completion_tokens", 5}, {"total_tokens", 10}};
  if (!body.value("stream", false)) {
    json message = {{"role", "assistant"}, {"content", reply}};
    // "field=reasoning:" and "field=reasoning-object:" put the reasoning in the `reasoning`
    // field some providers use, as a string or as an object with a summary.
    // "json:{...}" adds those fields to the message, "choice-json:{...}" to the choice.
    json choice_extra = json::object();
    if (rc.rfind("json:", 0) == 0)
      message.update(json::parse(rc.substr(5)));
    else if (rc.rfind("choice-json:", 0) == 0)
      choice_extra = json::parse(rc.substr(12));
    else if (rc.rfind("field=reasoning:", 0) == 0)
      message["reasoning"] = rc.substr(16);
    else if (rc.rfind("field=reasoning-object:", 0) == 0)
      message["reasoning"] = {{"summary", rc.substr(23)}};
    else if (!rc.empty())
      message["reasoning_content"] = rc;
    json out = {{"id", "up-1"},
                {"object", "chat.completion"},
                {"created", 1},
                {"model", model},
                {"usage", usage}};
    json choice = {{"index", 0}, {"message", message}, {"finish_reason", "stop"}};
    choice.update(choice_extra);
    out["choices"] = json::array({choice});
    res.set_content(out.dump(), "application/json");
    return;
  }
  std::vector<std::string> events;
  auto chunk = [&](const json& delta, const json& finish) {
    json c = {
        {"id", "up-1"}, {"object", "chat.completion.chunk"}, {"created", 1}, {"model", model}};
    c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}});
    events.push_back("data: " + c.dump() + "\n\n");
  };
  if (rc.rfind("json:", 0) == 0) {
    // Each field in a delta of its own: strings in 3-byte pieces, other values whole.
    const json fields = json::parse(rc.substr(5));
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      json delta = json::object();
      if (!it->is_string()) {
        delta[it.key()] = *it;
        chunk(delta, nullptr);
        continue;
      }
      const std::string text = it->get<std::string>();
      for (std::size_t i = 0; i < text.size(); i += 3) {
        delta[it.key()] = text.substr(i, 3);
        chunk(delta, nullptr);
      }
    }
  } else if (rc.rfind("choice-json:", 0) == 0) {
    json c = {
        {"id", "up-1"}, {"object", "chat.completion.chunk"}, {"created", 1}, {"model", model}};
    json choice = {{"index", 0}, {"delta", json::object()}, {"finish_reason", nullptr}};
    choice.update(json::parse(rc.substr(12)));
    c["choices"] = json::array({choice});
    events.push_back("data: " + c.dump() + "\n\n");
  } else {
    for (std::size_t i = 0; i < rc.size(); i += 3)
      chunk({{"reasoning_content", rc.substr(i, 3)}}, nullptr);
  }
  for (std::size_t i = 0; i < reply.size(); i += 3)
    chunk({{"content", reply.substr(i, 3)}}, nullptr);
  chunk(json::object(), "stop");
  json u = {{"id", "up-1"},
            {"object", "chat.completion.chunk"},
            {"choices", json::array()},
            {"usage", usage}};
  events.push_back("data: " + u.dump() + "\n\n");
  events.push_back("data: [DONE]\n\n");
  res.set_chunked_content_provider("text/event-stream",
                                   [events](std::size_t, httplib::DataSink& sink) {
                                     for (const auto& e : events)
                                       if (!sink.write(e.data(), e.size())) return false;
                                     sink.done();
                                     return true;
                                   });
}

// `airlock ARGS...` (each argument quoted for the shell): exit status and stdout.
std::pair<int, std::string> RunAirlock(const std::vector<std::string>& args) {
  std::string cmd = AIRLOCK_EXE;
  for (const auto& a : args) cmd += " " + airlock::testing::Quote(a);
  return airlock::testing::RunShellStdout(cmd + " 2>/dev/null");
}

// One `airlock serve` child process with its own policy, audit log and (empty) key store: with
// no key, loopback requests are anonymous.
class Gateway {
 public:
  Gateway(const TempDir& dir, const std::string& name, int upstream_port,
          const std::string& rules) {
    audit_db_ = (dir.path() / (name + "-audit.db")).string();
    std::string config = (dir.path() / (name + ".toml")).string();
    std::string up = "http://127.0.0.1:" + std::to_string(upstream_port) + "/v1";
    std::ofstream(config) << "[[upstreams]]\nname='us'\nbase_url='" << up
                          << "'\njurisdiction='US'\nmodels=['m-us']\n"
                             "allowed_data_classes=['ip_address']\n"
                             "[[upstreams]]\nname='de'\nbase_url='"
                          << up
                          << "'\njurisdiction='DE'\nmodels=['m-de']\n"
                             "allowed_data_classes=['reasoning']\n"
                             "[[upstreams]]\nname='fr'\nbase_url='"
                          << up
                          << "'\njurisdiction='FR'\nmodels=['m-fr']\n"
                             "allowed_data_classes=['reasoning']\n"
                          << rules << "\n[audit]\npath='" << audit_db_
                          << "'\nstore_text=true\n[server]\nkeys_db='"
                          << (dir.path() / (name + "-keys.db")).string()
                          << "'\nrequest_timeout_s=20\n";
    // SIGTERM when the test ends: serve drains and flushes its audit log.
    process_ = std::make_unique<ServeProcess>(ServeArgs(config),
                                              ServeProcessOptions{.stop_signal = SIGTERM});
    port_ = process_->port();
  }
  int port() const { return port_; }

  httplib::Result Chat(const json& body) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(20, 0);
    c.set_connection_timeout(5, 0);
    return c.Post("/v1/chat/completions", {{"Authorization", "Bearer sk-no-key-required"}},
                  body.dump(), "application/json");
  }

  // The audit record of a request (by its X-Request-Id), as `audit show --json` prints it.
  json Record(const std::string& request_id, const std::string& extra_flag = "",
              const std::string& extra_value = "") const {
    std::vector<std::string> args = {"audit",  "show",    "--log", audit_db_,
                                     "--json", "--limit", "1000"};
    if (!extra_flag.empty()) {
      args.push_back(extra_flag);
      args.push_back(extra_value);
    }
    std::string out = RunAirlock(args).second;
    std::size_t pos = 0;
    while (pos < out.size()) {
      std::size_t end = out.find('\n', pos);
      if (end == std::string::npos) end = out.size();
      json rec = json::parse(out.substr(pos, end - pos), nullptr, false);
      pos = end + 1;
      if (rec.is_object() && rec.value("request_id", "") == request_id) return rec;
    }
    return json();
  }

 private:
  std::unique_ptr<ServeProcess> process_;
  int port_ = 0;
  std::string audit_db_;
};

// A conversation whose earlier assistant turn carries reasoning: reasoning_content and a <think>
// block in its content.
json MultiTurn(const std::string& model, bool stream) {
  json body = {
      {"model", model},
      {"stream", stream},
      {"messages", json::array({{{"role", "user"}, {"content", "first question"}},
                                {{"role", "assistant"},
                                 {"content", "<think>old inner plan</think>old visible answer"},
                                 {"reasoning_content", "old field plan"}},
                                {{"role", "user"}, {"content", "second question"}}})}};
  return body;
}

json Ask(const std::string& model, bool stream, const std::string& reply,
         const std::string& rc = "") {
  json body = {{"model", model},
               {"stream", stream},
               {"messages", json::array({{{"role", "user"}, {"content", "question"}}})},
               {"x_answer", AnswerName(reply, rc)}};
  return body;
}

struct Answer {
  int status = 0;
  std::string content;
  std::string reasoning_content;
  std::string error_code;  // of a 4xx/5xx body or an error event
  std::string request_id;
};

// The client's view of a response, streamed or not.
Answer Read(const httplib::Result& r) {
  Answer a;
  if (!r) return a;
  a.status = r->status;
  a.request_id = r->get_header_value("X-Request-Id");
  if (r->get_header_value("Content-Type").find("text/event-stream") == std::string::npos) {
    json j = json::parse(r->body, nullptr, false);
    if (j.contains("error")) a.error_code = j["error"].value("code", "");
    if (j.contains("choices") && !j["choices"].empty()) {
      const json& m = j["choices"][0]["message"];
      a.content = m.value("content", "");
      a.reasoning_content = m.value("reasoning_content", "");
    }
    return a;
  }
  std::size_t pos = 0;
  while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
    std::size_t end = r->body.find("\n\n", pos);
    if (end == std::string::npos) break;
    json j = json::parse(r->body.substr(pos + 6, end - pos - 6), nullptr, false);
    pos = end;
    if (!j.is_object()) continue;
    if (j.contains("error")) a.error_code = j["error"].value("code", "");
    for (const auto& c : j.value("choices", json::array())) {
      const json d = c.value("delta", json::object());
      a.content += d.value("content", "");
      a.reasoning_content += d.value("reasoning_content", "");
    }
  }
  return a;
}

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
std::vector<std::string> Strings(const json& a) {
  std::vector<std::string> out;
  if (a.is_array())
    for (const auto& e : a)
      if (e.is_string()) out.push_back(e);
  return out;
}

class ReasoningTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("reasoning");
    upstream_ = new RecordingUpstream(AnswerAsNamed);
    const int up = upstream_->port();
    // No rule for reasoning: it is passed to the client, and goes in clear only to an upstream
    // that accepts it (deny by default). Its text is never stored.
    plain_ = new Gateway(*dir_, "plain", up, "[reasoning]\naction='pass'\n");
    // Requests carrying reasoning only to DE (or local models).
    route_ = new Gateway(*dir_, "route", up,
                         "[[rules]]\ndata_classes=['reasoning']\naction='restrict'\n"
                         "direction='request'\nallow_jurisdictions=['DE','local']\n");
    // Reasoning removed both ways, even though [reasoning] says pass.
    redact_ = new Gateway(*dir_, "redact", up,
                          "[[rules]]\ndata_classes=['reasoning']\naction='redact'\n"
                          "[reasoning]\naction='pass'\n");
    // An answer with reasoning is refused; requests with reasoning pass (direction response).
    block_ = new Gateway(*dir_, "block", up,
                         "[[rules]]\ndata_classes=['reasoning']\naction='block'\n"
                         "direction='response'\n");
    // Logged: taken out of the answer and stored in the audit record.
    log_ = new Gateway(*dir_, "log", up, "[reasoning]\naction='log'\n");
    for (Gateway* g : {plain_, route_, redact_, block_, log_})
      ASSERT_GT(g->port(), 0) << "airlock serve did not start";
  }
  static void TearDownTestSuite() {
    for (Gateway* g : {plain_, route_, redact_, block_, log_}) delete g;
    delete upstream_;
    delete dir_;
  }

  static inline TempDir* dir_ = nullptr;
  static inline RecordingUpstream* upstream_ = nullptr;
  static inline Gateway *plain_ = nullptr, *route_ = nullptr, *redact_ = nullptr, *block_ = nullptr,
                        *log_ = nullptr;
};

// ---- routing: requests carrying reasoning ----

TEST_F(ReasoningTest, RequestReasoningIsRefusedForAnUpstreamThatDoesNotAcceptIt) {
  for (bool stream : {false, true}) {
    std::size_t before = upstream_->bodies().size();
    Answer a = Read(plain_->Chat(MultiTurn("m-us", stream)));
    EXPECT_EQ(a.status, 403) << stream;
    EXPECT_EQ(a.error_code, "policy_violation");
    EXPECT_EQ(upstream_->bodies().size(), before) << "nothing may leave the gateway";
    json rec = plain_->Record(a.request_id);
    EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
    // Only a <think> block in an earlier assistant turn is reasoning too.
    json body = MultiTurn("m-us", stream);
    body["messages"][1].erase("reasoning_content");
    EXPECT_EQ(Read(plain_->Chat(body)).status, 403) << stream;
    // An upper-case tag with a blank before '>' as well.
    body["messages"][1]["content"] = "<THINK >old inner plan</THINK>old visible answer";
    EXPECT_EQ(Read(plain_->Chat(body)).status, 403) << stream;
    EXPECT_EQ(upstream_->bodies().size(), before);
  }
}

TEST_F(ReasoningTest, RequestReasoningReachesAnUpstreamThatAcceptsIt) {
  Answer a = Read(plain_->Chat(MultiTurn("m-de", false)));
  ASSERT_EQ(a.status, 200);
  const std::string sent = upstream_->bodies().back();
  EXPECT_NE(sent.find("old field plan"), std::string::npos) << sent;
  EXPECT_NE(sent.find("old inner plan"), std::string::npos) << sent;
}

TEST_F(ReasoningTest, EmptyThinkBlockOrUserTextIsNotReasoning) {
  // Templates render an empty block when thinking is off; a user may type the tag.
  json body = MultiTurn("m-us", false);
  body["messages"][1].erase("reasoning_content");
  body["messages"][1]["content"] = "<think>\n\n</think>\n\nold visible answer";
  body["messages"][2]["content"] = "what does <think>x</think> mean?";
  EXPECT_EQ(Read(plain_->Chat(body)).status, 200);
  body["messages"][1]["reasoning_content"] = nullptr;
  EXPECT_EQ(Read(plain_->Chat(body)).status, 200);
}

TEST_F(ReasoningTest, RestrictRuleKeepsRequestReasoningInItsJurisdictions) {
  for (bool stream : {false, true}) {
    std::size_t before = upstream_->bodies().size();
    EXPECT_EQ(Read(route_->Chat(MultiTurn("m-fr", stream))).status, 403) << stream;
    EXPECT_EQ(Read(route_->Chat(MultiTurn("m-us", stream))).status, 403) << stream;
    EXPECT_EQ(upstream_->bodies().size(), before);
    Answer a = Read(route_->Chat(MultiTurn("m-de", stream)));
    EXPECT_EQ(a.status, 200) << stream;
    EXPECT_EQ(upstream_->bodies().size(), before + 1);
    // Without reasoning the same request goes anywhere.
    json body = MultiTurn("m-fr", stream);
    body["messages"][1] = {{"role", "assistant"}, {"content", "old visible answer"}};
    EXPECT_EQ(Read(route_->Chat(body)).status, 200) << stream;
  }
}

// ---- redact: removed both ways ----

TEST_F(ReasoningTest, RedactRuleRemovesReasoningFromTheRequest) {
  Answer a = Read(redact_->Chat(MultiTurn("m-us", false)));
  ASSERT_EQ(a.status, 200) << a.error_code;
  const std::string sent = upstream_->bodies().back();
  EXPECT_EQ(sent.find("old inner plan"), std::string::npos) << sent;
  EXPECT_EQ(sent.find("old field plan"), std::string::npos) << sent;
  EXPECT_EQ(sent.find("reasoning_content"), std::string::npos) << sent;
  EXPECT_NE(sent.find("old visible answer"), std::string::npos) << sent;
  json rec = redact_->Record(a.request_id);
  EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
  EXPECT_TRUE(Has(Strings(rec["actions"]), "reasoning:redact")) << rec.dump();
}

TEST_F(ReasoningTest, RedactRuleRemovesReasoningFromTheAnswerNonStreamed) {
  Answer a =
      Read(redact_->Chat(Ask("m-us", false, "<think>new plan</think>the answer", "rc plan")));
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.content, "the answer");
  EXPECT_EQ(a.reasoning_content, "");
  json rec = redact_->Record(a.request_id);
  EXPECT_TRUE(Has(Strings(rec["actions"]), "response:reasoning:redact")) << rec.dump();
  EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
}

TEST_F(ReasoningTest, RedactRuleRemovesReasoningFromTheAnswerStreamed) {
  Answer a = Read(redact_->Chat(Ask("m-us", true, "<think>new plan</think>the answer", "rc plan")));
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.content, "the answer");
  EXPECT_EQ(a.reasoning_content, "");
  json rec = redact_->Record(a.request_id);
  EXPECT_TRUE(Has(Strings(rec["actions"]), "response:reasoning:redact")) << rec.dump();
}

// ---- block ----

TEST_F(ReasoningTest, BlockRuleRefusesAnAnswerWithReasoningNonStreamed) {
  Answer a = Read(block_->Chat(Ask("m-us", false, "<think>new plan</think>the answer")));
  EXPECT_EQ(a.status, 403);
  EXPECT_EQ(a.error_code, "policy_violation");
  EXPECT_EQ(a.content, "");
  a = Read(block_->Chat(Ask("m-us", false, "the answer", "rc plan")));
  EXPECT_EQ(a.status, 403);
  a = Read(block_->Chat(Ask("m-us", false, "the answer")));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content, "the answer");
  // direction = "response": a request carrying reasoning passes (the upstream accepts it).
  EXPECT_EQ(Read(block_->Chat(MultiTurn("m-de", false))).status, 200);
}

// Attack (red team): a non-streamed answer's `message.reasoning` (a string, or an object with a
// summary) passed a block rule and `[reasoning] action = "strip"` untouched.
TEST_F(ReasoningTest, ReasoningFieldOfANonStreamedAnswerIsReasoning) {
  for (const char* rc : {"field=reasoning:PLANXYZ", "field=reasoning-object:PLANXYZ"}) {
    auto blocked = block_->Chat(Ask("m-us", false, "the answer", rc));
    ASSERT_TRUE(blocked) << rc;
    EXPECT_EQ(blocked->status, 403) << rc << ": " << blocked->body;
    EXPECT_EQ(blocked->body.find("PLANXYZ"), std::string::npos) << rc << ": " << blocked->body;
    auto redacted = redact_->Chat(Ask("m-us", false, "the answer", rc));
    ASSERT_TRUE(redacted) << rc;
    EXPECT_EQ(redacted->status, 200) << rc << ": " << redacted->body;
    EXPECT_EQ(redacted->body.find("PLANXYZ"), std::string::npos) << rc << ": " << redacted->body;
    EXPECT_NE(redacted->body.find("the answer"), std::string::npos) << rc << ": " << redacted->body;
  }
}

TEST_F(ReasoningTest, BlockRuleEndsAStreamedAnswerWithReasoning) {
  for (const char* rc : {"", "rc plan"}) {
    Answer a = Read(block_->Chat(
        Ask("m-us", true, std::string(*rc ? "" : "<think>new plan</think>") + "the answer", rc)));
    EXPECT_EQ(a.error_code, "policy_violation") << rc;
    EXPECT_EQ(a.content.find("new plan"), std::string::npos);
    EXPECT_EQ(a.content.find("the answer"), std::string::npos) << a.content;
    EXPECT_EQ(a.reasoning_content, "");
  }
}

// ---- storage ----

TEST_F(ReasoningTest, ReasoningTextIsNotStoredUnlessLogged) {
  for (bool stream : {false, true}) {
    Answer a = Read(plain_->Chat(Ask("m-us", stream, "<think>secret plan</think>the answer")));
    ASSERT_EQ(a.status, 200);
    EXPECT_EQ(a.content, "<think>secret plan</think>the answer");  // pass
    json rec = plain_->Record(a.request_id);
    ASSERT_TRUE(rec.is_object());
    EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
    EXPECT_EQ(rec.dump().find("secret plan"), std::string::npos) << rec.dump();
    EXPECT_NE(rec.value("response_text", "").find("the answer"), std::string::npos);
    // `audit show --class reasoning` finds it.
    EXPECT_TRUE(plain_->Record(a.request_id, "--class", "reasoning").is_object());
  }
  // Reasoning the client sends back is left out of the stored prompt too.
  Answer a = Read(plain_->Chat(MultiTurn("m-de", false)));
  ASSERT_EQ(a.status, 200);
  json rec = plain_->Record(a.request_id);
  EXPECT_EQ(rec.dump().find("old field plan"), std::string::npos) << rec.dump();
  EXPECT_EQ(rec.dump().find("old inner plan"), std::string::npos) << rec.dump();
  EXPECT_NE(rec.value("prompt_text", "").find("old visible answer"), std::string::npos)
      << rec.dump();
  EXPECT_TRUE(plain_->Record(a.request_id, "--class", "reasoning").is_object());
  // A record without reasoning is not listed by the class.
  a = Read(plain_->Chat(Ask("m-us", false, "no reasoning here")));
  ASSERT_EQ(a.status, 200);
  EXPECT_TRUE(plain_->Record(a.request_id).is_object());
  EXPECT_TRUE(plain_->Record(a.request_id, "--class", "reasoning").is_null());
}

TEST_F(ReasoningTest, ReasoningTextIsStoredWhenLogged) {
  Answer a = Read(log_->Chat(Ask("m-us", false, "<think>logged plan</think>the answer", "rc")));
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.content, "the answer");
  EXPECT_EQ(a.reasoning_content, "");
  json rec = log_->Record(a.request_id, "--class", "reasoning");
  EXPECT_NE(rec.value("reasoning_text", "").find("logged plan"), std::string::npos) << rec.dump();
}

// ---- tag spellings an upstream may use: stripped streamed and not ----

void ExpectStripped(Gateway& g, bool stream, const std::string& reply) {
  Answer a = Read(g.Chat(Ask("m-us", stream, reply)));
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.content, "the answer") << reply;
  json rec = g.Record(a.request_id);
  EXPECT_NE(rec.value("reasoning_text", "").find("tag plan"), std::string::npos) << rec.dump();
  EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
}

TEST_F(ReasoningTest, UpperCaseThinkTagIsStrippedNonStreamed) {
  ExpectStripped(*log_, false, "<THINK>tag plan</THINK>the answer");
}
TEST_F(ReasoningTest, UpperCaseThinkTagIsStrippedStreamed) {
  ExpectStripped(*log_, true, "<THINK>tag plan</THINK>the answer");
}
TEST_F(ReasoningTest, ThinkTagWithSpaceIsStrippedNonStreamed) {
  ExpectStripped(*log_, false, "<think >tag plan</think >the answer");
}
TEST_F(ReasoningTest, ThinkTagWithSpaceIsStrippedStreamed) {
  ExpectStripped(*log_, true, "<think >tag plan</think\t>the answer");
}

// ---- R5 (red team): reasoning markers the answer holds other than one <think> ... </think> ----

// A DeepSeek R1 style answer: the chat template wrote the opening marker, so the answer holds
// only the closing one. Everything before it is reasoning: stripped (log), removed (redact),
// refused (block), never in the audit's response_text (pass).
TEST_F(ReasoningTest, ClosingMarkerOnlyAnswerIsReasoningNonStreamed) {
  ExpectStripped(*log_, false, "tag plan</think>the answer");
}
TEST_F(ReasoningTest, ClosingMarkerOnlyAnswerIsReasoningStreamed) {
  ExpectStripped(*log_, true, "tag plan</think>the answer");
}
TEST_F(ReasoningTest, ClosingMarkerOnlyAnswerIsRemovedByARedactRule) {
  for (bool stream : {false, true}) {
    Answer a = Read(redact_->Chat(Ask("m-us", stream, "new plan</think>the answer")));
    ASSERT_EQ(a.status, 200) << stream;
    EXPECT_EQ(a.content, "the answer") << stream;
    json rec = redact_->Record(a.request_id);
    EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
  }
}
TEST_F(ReasoningTest, ClosingMarkerOnlyAnswerIsRefusedByABlockRule) {
  Answer a = Read(block_->Chat(Ask("m-us", false, "new plan</think>the answer")));
  EXPECT_EQ(a.status, 403);
  EXPECT_EQ(a.content.find("new plan"), std::string::npos) << a.content;
  a = Read(block_->Chat(Ask("m-us", true, "new plan</think>the answer")));
  EXPECT_EQ(a.error_code, "policy_violation");
  EXPECT_EQ(a.content.find("new plan"), std::string::npos) << a.content;
  EXPECT_EQ(a.content.find("the answer"), std::string::npos) << a.content;
}
TEST_F(ReasoningTest, ClosingMarkerOnlyReasoningIsNotStoredInTheAuditResponseText) {
  for (bool stream : {false, true}) {
    Answer a = Read(plain_->Chat(Ask("m-us", stream, "secret plan</think>the answer")));
    ASSERT_EQ(a.status, 200) << stream;
    EXPECT_EQ(a.content, "secret plan</think>the answer") << "pass: the client sees it all";
    json rec = plain_->Record(a.request_id);
    EXPECT_EQ(rec.value("response_text", "").find("secret plan"), std::string::npos) << rec.dump();
    EXPECT_NE(rec.value("response_text", "").find("the answer"), std::string::npos) << rec.dump();
    EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
  }
}

// Other spellings of the markers and nested blocks: all reasoning, streamed (3-byte chunks, so
// every marker is cut) and not.
TEST_F(ReasoningTest, ThinkTagVariantsAndNestedBlocksAreStripped) {
  for (bool stream : {false, true}) {
    for (const char* reply :
         {"<think\n>tag plan</think>the answer", "<think x=1>tag plan</think>the answer",
          "<thinking>tag plan</thinking>the answer", "<THINKING >tag plan</Thinking>the answer",
          "<think>tag plan<think>inner</think> more</think>the answer",
          "<thinking>tag plan <think>x</think></thinking>the answer"}) {
      SCOPED_TRACE(std::string(reply) + (stream ? " streamed" : ""));
      ExpectStripped(*log_, stream, reply);
    }
  }
  // Nested: the text after the inner block's end is reasoning too.
  Answer a = Read(
      log_->Chat(Ask("m-us", true, "<think>tag plan<think>inner</think> more</think>the answer")));
  json rec = log_->Record(a.request_id);
  EXPECT_NE(rec.value("reasoning_text", "").find("more"), std::string::npos) << rec.dump();
}

// A client sending back an R1 style turn: the text before a lone closing marker in an earlier
// assistant turn is reasoning (refused for an upstream that does not accept reasoning).
TEST_F(ReasoningTest, RequestTurnWithOnlyAClosingMarkerCarriesReasoning) {
  for (const char* content :
       {"old inner plan</think>old visible answer", "<thinking>old inner plan</thinking>ok",
        "<think x=1>old inner plan</think>ok"}) {
    json body = MultiTurn("m-us", false);
    body["messages"][1].erase("reasoning_content");
    body["messages"][1]["content"] = content;
    EXPECT_EQ(Read(plain_->Chat(body)).status, 403) << content;
  }
}

// ---- F4 (red team): reasoning under other names and in other families' markers ----

// The fields providers put an answer's reasoning in, and names nobody listed yet (any field name
// holding "reason", "think" or "thought"), of the message/delta and of the choice.
const char* const kReasoningFieldAnswers[] = {
    R"(json:{"reasoning_details":[{"type":"reasoning.text","text":"SECRET PLAN"}]})",
    R"(json:{"reasoning_details":[{"type":"reasoning.summary","summary":"SECRET PLAN"}]})",
    R"(json:{"thinking":"SECRET PLAN"})",
    R"(json:{"reasoning_text":"SECRET PLAN"})",
    R"(json:{"reasoning_content":{"text":"SECRET PLAN"}})",
    R"(json:{"x_vendor_Thoughts":"SECRET PLAN"})",
    R"(json:{"thinking_blocks":[{"type":"thinking","thinking":"SECRET PLAN"}]})",
    R"(choice-json:{"reasoning":"SECRET PLAN"})",
};

// Attack: message.reasoning_details (OpenRouter), message.thinking and delta.reasoning_details
// reached the client with reasoning withheld (`log`: removed from the answer, stored).
TEST_F(ReasoningTest, ReasoningUnderOtherFieldNamesIsWithheld) {
  for (bool stream : {false, true}) {
    for (const char* rc : kReasoningFieldAnswers) {
      SCOPED_TRACE(std::string(rc) + (stream ? " streamed" : ""));
      auto r = log_->Chat(Ask("m-us", stream, "the answer", rc));
      ASSERT_TRUE(r);
      Answer a = Read(r);
      EXPECT_EQ(a.status, 200) << r->body;
      EXPECT_EQ(a.content, "the answer");
      EXPECT_EQ(r->body.find("SECRET"), std::string::npos) << r->body;
      json rec = log_->Record(a.request_id);
      EXPECT_TRUE(Has(Strings(rec["data_classes"]), "reasoning")) << rec.dump();
      EXPECT_NE(rec.value("reasoning_text", "").find("SECRET PLAN"), std::string::npos)
          << rec.dump();
    }
  }
}

TEST_F(ReasoningTest, ReasoningUnderOtherFieldNamesIsRefusedByABlockRule) {
  for (bool stream : {false, true}) {
    for (const char* rc : kReasoningFieldAnswers) {
      SCOPED_TRACE(std::string(rc) + (stream ? " streamed" : ""));
      auto r = block_->Chat(Ask("m-us", stream, "the answer", rc));
      ASSERT_TRUE(r);
      Answer a = Read(r);
      if (stream)
        EXPECT_EQ(a.error_code, "policy_violation");
      else
        EXPECT_EQ(a.status, 403);
      EXPECT_EQ(r->body.find("SECRET"), std::string::npos) << r->body;
    }
    // finish_reason and an empty reasoning_details (sent with every answer) are not reasoning.
    auto r = block_->Chat(Ask("m-us", stream, "the answer", R"(json:{"reasoning_details":[]})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(Read(r).status, 200) << r->body;
    EXPECT_EQ(Read(r).content, "the answer") << r->body;
    EXPECT_EQ(Read(r).error_code, "") << r->body;
  }
}

// With pass, the other names reach the client (scanned like any field).
TEST_F(ReasoningTest, ReasoningUnderOtherFieldNamesPassesWithPass) {
  for (bool stream : {false, true}) {
    auto r = plain_->Chat(Ask("m-us", stream, "the answer", R"(json:{"thinking":"VISIBLE PLAN"})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(Read(r).status, 200);
    EXPECT_NE(r->body.find("VISIBLE P"), std::string::npos) << r->body;
  }
}

// Attack: Magistral's [THINK], Seed's <seed:think>, gpt-oss's harmony analysis channel,
// <|begin_of_thought|> and <reasoning> in an upstream's content reached the client.
TEST_F(ReasoningTest, OtherFamiliesReasoningMarkersAreStripped) {
  for (bool stream : {false, true}) {
    for (const char* reply :
         {"[THINK]tag plan[/THINK]the answer", "<seed:think>tag plan</seed:think>the answer",
          "<|begin_of_thought|>tag plan<|end_of_thought|>the answer",
          "<reasoning>tag plan</reasoning>the answer", "tag plan[/THINK]the answer"}) {
      SCOPED_TRACE(std::string(reply) + (stream ? " streamed" : ""));
      ExpectStripped(*log_, stream, reply);
    }
    Answer a = Read(log_->Chat(Ask("m-us", stream,
                                   "<|channel|>analysis<|message|>tag plan<|end|><|start|>"
                                   "assistant<|channel|>final<|message|>the answer")));
    EXPECT_EQ(a.status, 200);
    EXPECT_EQ(a.content.find("tag plan"), std::string::npos) << a.content;
    EXPECT_NE(a.content.find("the answer"), std::string::npos) << a.content;
  }
}

// Attack: earlier assistant turns carrying reasoning under other names were forwarded to an
// upstream that does not accept reasoning (reasoning_content was refused).
TEST_F(ReasoningTest, RequestReasoningUnderOtherNamesIsRefusedForAnUpstreamThatDoesNotAcceptIt) {
  const std::vector<std::pair<json, std::string>> turns = {
      {{{"reasoning_details", json::array({{{"type", "reasoning.text"}, {"text", "PLAN"}}})}},
       "ok"},
      {{{"thinking", "PLAN"}}, "ok"},
      {{{"reasoningText", "PLAN"}}, "ok"},
      {{{"x_thought_log", {{"a", "PLAN"}}}}, "ok"},
      {json::object(), "[THINK]PLAN[/THINK]ok"},
      {json::object(), "<seed:think>PLAN</seed:think>ok"},
      {json::object(), "<|channel|>analysis<|message|>PLAN<|end|>ok"},
      {json::object(), "<reasoning>PLAN</reasoning>ok"},
  };
  for (bool stream : {false, true}) {
    std::size_t before = upstream_->bodies().size();
    for (const auto& [extra, content] : turns) {
      json body = MultiTurn("m-us", stream);
      json turn = {{"role", "assistant"}, {"content", content}};
      turn.update(extra);
      body["messages"][1] = turn;
      SCOPED_TRACE(turn.dump());
      EXPECT_EQ(Read(plain_->Chat(body)).status, 403);
    }
    // Content parts of a reasoning type, or with a reasoning field.
    json body = MultiTurn("m-us", stream);
    body["messages"][1] = {
        {"role", "assistant"},
        {"content", json::array({{{"type", "thinking"}, {"thinking", "PLAN"}, {"signature", "s"}},
                                 {{"type", "text"}, {"text", "ok"}}})}};
    EXPECT_EQ(Read(plain_->Chat(body)).status, 403);
    body["messages"][1]["content"][0] = {{"type", "text"}, {"text", ""}, {"thinking", "PLAN"}};
    EXPECT_EQ(Read(plain_->Chat(body)).status, 403);
    EXPECT_EQ(upstream_->bodies().size(), before) << "nothing may leave the gateway";
  }
}

TEST_F(ReasoningTest, RedactRuleRemovesReasoningUnderOtherNamesFromTheRequest) {
  json body = MultiTurn("m-us", false);
  body["messages"][1] = {
      {"role", "assistant"},
      {"content", json::array({{{"type", "thinking"}, {"thinking", "old part plan"}},
                               {{"type", "text"}, {"text", "[THINK]old inner plan[/THINK]ok"}}})},
      {"reasoning_details",
       json::array({{{"type", "reasoning.text"}, {"text", "old field plan"}}})},
      {"thinking", "old thinking plan"}};
  Answer a = Read(redact_->Chat(body));
  ASSERT_EQ(a.status, 200) << a.error_code;
  const std::string sent = upstream_->bodies().back();
  for (const char* secret : {"old part plan", "old inner plan", "old field plan", "old thinking"})
    EXPECT_EQ(sent.find(secret), std::string::npos) << secret << ": " << sent;
  EXPECT_NE(sent.find("\"ok\""), std::string::npos) << sent;
}

}  // namespace
