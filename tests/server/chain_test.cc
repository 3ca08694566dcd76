// End to end with real components only: a local GGUF model served by one `airlock serve` (the
// "upstream", with its own audit log keeping full text), and a second `airlock serve` in front of
// it with a policy and a local model of its own. Checks routing to both, that redaction happens
// before data leaves the gateway (the upstream's own log shows what it received), queueing of
// concurrent requests on one slot, and that both audit logs verify.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve_process.h"
#include "test_util.h"

namespace {

using airlock::testing::RunAirlock;
using airlock::testing::ServeProcess;
using airlock::testing::ServeProcessOptions;

using nlohmann::json;

json Complete(int port, const std::string& model, const std::string& prompt, int max_tokens) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120);
  json body = {{"model", model},
               {"messages", {{{"role", "user"}, {"content", prompt}}}},
               {"max_tokens", max_tokens},
               {"temperature", 0}};
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  if (!r) return json{{"transport_error", httplib::to_string(r.error())}};
  json doc = json::parse(r->body, nullptr, false);
  doc["http_status"] = r->status;
  return doc;
}

TEST(ChainTest, GatewayInFrontOfAnotherAirlockServeWithLocalModels) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  const std::string model = (models / "stories260K.gguf").string();
  airlock::testing::TempDir dir("chain");
  auto path = [&](const char* name) { return (dir.path() / name).string(); };

  // Upstream: a plain airlock serve of the model, logging full text.
  std::ofstream(path("upstream.toml"))
      << "[audit]\npath='" << path("upstream-audit.db") << "'\nstore_text=true\n"
      << "[server]\nkeys_db='" << path("upstream-keys.db") << "'\n";
  ServeProcess upstream({"serve", model, "--alias", "remote-stories", "--config",
                         path("upstream.toml"), "--port", "0"},
                        ServeProcessOptions{.stop_signal = SIGTERM});
  ASSERT_GT(upstream.port(), 0) << "upstream airlock serve did not start";

  // Gateway: routes 'remote-stories' to the upstream (jurisdiction US, no personal data) and
  // serves the same file locally as 'local-stories'. E-mail addresses are redacted.
  ASSERT_EQ(RunAirlock("audit keygen " + path("audit-key.pem")).first, 0);
  std::ofstream(path("gateway.toml"))
      << "[[upstreams]]\nname='us-box'\nbase_url='http://127.0.0.1:" << upstream.port()
      << "/v1'\njurisdiction='US'\nmodels=['remote-stories']\n"
      << "[[local_models]]\nname='local-stories'\npath='" << model << "'\n"
      << "[[rules]]\ndata_classes=['email']\naction='redact'\n"
      << "[audit]\npath='" << path("gateway-audit.db") << "'\nsigning_key='"
      << path("audit-key.pem") << "'\ncheckpoint_every=2\n"
      << "[server]\nkeys_db='" << path("gateway-keys.db") << "'\n";
  ServeProcess gateway({"serve", "--config", path("gateway.toml"), "--port", "0"},
                       ServeProcessOptions{.stop_signal = SIGTERM});
  ASSERT_GT(gateway.port(), 0) << "gateway airlock serve did not start";

  // Routing: both names answer; the local model and the model behind the upstream are the same
  // file, so greedy decoding gives the same text on both paths.
  json local = Complete(gateway.port(), "local-stories", "Once upon a time", 16);
  json remote = Complete(gateway.port(), "remote-stories", "Once upon a time", 16);
  ASSERT_EQ(local.value("http_status", 0), 200) << local.dump();
  ASSERT_EQ(remote.value("http_status", 0), 200) << remote.dump();
  std::string local_text = local["choices"][0]["message"]["content"];
  EXPECT_FALSE(local_text.empty());
  EXPECT_EQ(remote["choices"][0]["message"]["content"], local_text);
  EXPECT_EQ(local["usage"]["completion_tokens"], 16);

  // Redaction happens before the request leaves the gateway: the upstream never saw the address.
  json redacted = Complete(gateway.port(), "remote-stories", "Mail jane.doe@example.com now", 4);
  ASSERT_EQ(redacted.value("http_status", 0), 200) << redacted.dump();
  auto seen = RunAirlock("audit show --json --log " + path("upstream-audit.db"));
  ASSERT_EQ(seen.first, 0) << seen.second;
  EXPECT_EQ(seen.second.find("jane.doe@example.com"), std::string::npos) << seen.second;
  EXPECT_NE(seen.second.find("Mail"), std::string::npos) << "upstream log lacks the request text";

  // One slot: concurrent requests queue and all complete.
  std::vector<std::thread> threads;
  std::vector<int> status(3, 0);
  for (int i = 0; i < 3; ++i)
    threads.emplace_back([&, i] {
      status[i] = Complete(gateway.port(), "local-stories", "The cat", 8).value("http_status", 0);
    });
  for (auto& t : threads) t.join();
  for (int s : status) EXPECT_EQ(s, 200);

  // Without a pinned key, verification refuses to vouch for the log (fail closed).
  auto verify = RunAirlock("audit verify --log " + path("gateway-audit.db"));
  EXPECT_EQ(verify.first, 3) << verify.second;
  EXPECT_NE(verify.second.find("no pinned public key"), std::string::npos) << verify.second;
  // Stopped, each server has signed a checkpoint of its whole log: every record is verified.
  EXPECT_EQ(airlock::testing::ExitCode(gateway.Stop(SIGTERM)), 0);
  EXPECT_EQ(airlock::testing::ExitCode(upstream.Stop(SIGTERM)), 0);
  verify = RunAirlock("audit verify --log " + path("gateway-audit.db") + " --public-key " +
                      path("audit-key.pem") + ".pub");
  EXPECT_EQ(verify.first, 0) << verify.second;
  // The upstream's policy names no key: its first start created one beside its log.
  ASSERT_TRUE(std::filesystem::exists(path("upstream-audit.db") + ".key.pub"));
  verify = RunAirlock("audit verify --log " + path("upstream-audit.db") + " --public-key " +
                      path("upstream-audit.db") + ".key.pub");
  EXPECT_EQ(verify.first, 0) << verify.second;
  auto shown = RunAirlock("audit show --log " + path("gateway-audit.db") + " --class email");
  EXPECT_NE(shown.second.find("remote-stories"), std::string::npos) << shown.second;
}

}  // namespace
