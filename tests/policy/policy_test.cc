// Policy parsing and decisions; pseudonymization and reasoning splitting, including every possible
// chunk boundary of a streamed response.
#include "policy/policy.h"

#include <gtest/gtest.h>

#include <tuple>

#include "policy/transform.h"

namespace airlock::policy {
namespace {

const char* kPolicy = R"(
[[upstreams]]
name = "us"
base_url = "http://127.0.0.1:1/v1"
jurisdiction = "us"
models = ["m-us"]
allowed_data_classes = ["ip_address"]

[[upstreams]]
name = "de"
base_url = "http://127.0.0.1:2/v1"
jurisdiction = "DE"
models = ["m-de"]
allowed_data_classes = ["personal"]

[[local_models]]
name = "local"
path = "x.gguf"

[[rules]]
data_classes = ["secret"]
action = "redact"
[[rules]]
data_classes = ["cn_resident_id"]
action = "block"
[[rules]]
data_classes = ["email"]
action = "pseudonymize"
[[rules]]
data_classes = ["payment_card", "iban"]
action = "restrict"
allow_jurisdictions = ["local", "de"]

[reasoning]
action = "log"
)";

TEST(Policy, ParsesExampleFile) {
  auto p = LoadPolicy(std::string(AIRLOCK_SOURCE_DIR) + "/docs/policy.example.toml");
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->upstreams.size(), 3u);
  EXPECT_EQ(p->local_models.size(), 1u);
  EXPECT_EQ(p->reasoning, ReasoningAction::kStrip);
  EXPECT_EQ(p->audit.checkpoint_every, 100);
  EXPECT_EQ(p->audit.origin, "gw1.example.com/airlock-audit");
  EXPECT_EQ(p->audit.public_key, "audit-key.pem.pub");
  ASSERT_EQ(p->audit.anchor_files.size(), 1u);
  EXPECT_FALSE(p->audit.syslog);
  EXPECT_TRUE(p->audit.witnesses.empty());
  ASSERT_NE(p->FindUpstreamForModel("deepseek-chat"), nullptr);
  EXPECT_EQ(p->FindUpstreamForModel("deepseek-chat")->jurisdiction, "CN");
}

TEST(Policy, ParsesAndNormalises) {
  auto p = ParsePolicy(kPolicy);
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->upstreams[0].jurisdiction, "US");
  EXPECT_EQ(p->rules[3].allow_jurisdictions, (std::vector<std::string>{"local", "DE"}));
  EXPECT_EQ(p->upstreams[1].allowed_data_classes.size(), 7u);  // "personal" expanded
  EXPECT_EQ(p->reasoning, ReasoningAction::kLog);
}

TEST(Policy, RejectsMistakes) {
  struct Case {
    const char* toml;
    const char* expect;
  };
  const Case cases[] = {
      {"[[rules]]\ndata_classes=['mail']\naction='block'\n", "unknown data class 'mail'"},
      {"[[rules]]\ndata_classes=['email']\naction='nuke'\n", "unknown action"},
      {"[[rules]]\ndata_classes=['email']\naction='restrict'\n", "needs allow_jurisdictions"},
      {"[audit]\npaht='x'\n", "unknown key 'paht'"},
      {"[[upstreams]]\nname='a'\nbase_url='ftp://x'\njurisdiction='US'\nmodels=['m']\n",
       "base_url"},
      {"[[upstreams]]\nname='a'\nbase_url='http://x'\njurisdiction='US'\n", "at least one model"},
      {"[[upstreams]]\nname='a'\nbase_url='http://x'\njurisdiction='US'\nmodels=['m']\n"
       "[[upstreams]]\nname='b'\nbase_url='http://y'\njurisdiction='US'\nmodels=['m']\n",
       "more than one place"},
      {"[server]\nmax_body_bytes = -5\n", "out of range"},
      {"this is = = not toml", "TOML syntax error"},
  };
  for (const Case& c : cases) {
    auto p = ParsePolicy(c.toml);
    ASSERT_FALSE(p.ok()) << c.toml;
    EXPECT_NE(p.error().message().find(c.expect), std::string::npos) << p.error().message();
  }
}

TEST(Policy, RequireSignaturePerLocalModelAndServerWide) {
  auto p = ParsePolicy(
      "[[local_models]]\nname='a'\npath='a.gguf'\nrequire_signature='a.pub'\n"
      "[[local_models]]\nname='b'\npath='b.gguf'\n"
      "[server]\nrequire_signature='release.pub'\n");
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->local_models[0].require_signature, "a.pub");
  EXPECT_EQ(p->local_models[1].require_signature, "");
  EXPECT_EQ(p->server.require_signature, "release.pub");
  auto bad = ParsePolicy("[[local_models]]\nname='a'\npath='a.gguf'\nrequire_signature=true\n");
  EXPECT_FALSE(bad.ok());
}

TEST(Policy, Decisions) {
  auto p = ParsePolicy(kPolicy);
  ASSERT_TRUE(p.ok());
  Target us{false, p->FindUpstreamForModel("m-us")};
  Target de{false, p->FindUpstreamForModel("m-de")};
  Target local{true, nullptr};

  Verdict v = Decide(*p, {DataClass::kEmail, DataClass::kSecret}, us);
  EXPECT_FALSE(v.blocked);
  EXPECT_EQ(v.actions[DataClass::kEmail], Action::kPseudonymize);
  EXPECT_EQ(v.actions[DataClass::kSecret], Action::kRedact);

  EXPECT_TRUE(Decide(*p, {DataClass::kCnResidentId}, local).blocked);  // block applies everywhere

  // restrict: cards only locally or to DE.
  EXPECT_TRUE(Decide(*p, {DataClass::kPaymentCard}, us).blocked);
  EXPECT_FALSE(Decide(*p, {DataClass::kPaymentCard}, de).blocked);
  EXPECT_FALSE(Decide(*p, {DataClass::kPaymentCard}, local).blocked);

  // No rule: allowed only where the upstream accepts the class in clear (deny by default).
  EXPECT_TRUE(Decide(*p, {DataClass::kPhone}, us).blocked);
  EXPECT_FALSE(Decide(*p, {DataClass::kPhone}, de).blocked);
  EXPECT_FALSE(Decide(*p, {DataClass::kIpAddress}, us).blocked);
  EXPECT_FALSE(Decide(*p, {DataClass::kPhone}, local).blocked);
  EXPECT_FALSE(Decide(*p, {}, us).blocked);
}

TEST(Pseudonymizer, RedactsAndRoundTrips) {
  std::string text = "mail a@x.com and b@y.org, again a@x.com; key ghp_x";
  std::vector<Match> m = {{DataClass::kEmail, "email", 5, 12},
                          {DataClass::kEmail, "email", 17, 24},
                          {DataClass::kEmail, "email", 32, 39},
                          {DataClass::kSecret, "s", 45, 50}};
  Pseudonymizer p;
  std::string out = p.Apply(
      text, m, {{DataClass::kEmail, Action::kPseudonymize}, {DataClass::kSecret, Action::kRedact}});
  EXPECT_EQ(out, "mail [EMAIL_1] and [EMAIL_2], again [EMAIL_1]; key [REDACTED_SECRET]");
  EXPECT_EQ(p.size(), 2u);
  EXPECT_EQ(p.Restore("to [EMAIL_2] from [EMAIL_1] [EMAIL_3] [[EMAIL_1]"),
            "to b@y.org from a@x.com [EMAIL_3] [a@x.com");
}

// Every way of cutting a response into two or three chunks must restore identically.
TEST(StreamRestorer, PlaceholdersSplitAcrossChunks) {
  Pseudonymizer p;
  std::string src = "x@a.io y@b.io";
  p.Apply(src, {{DataClass::kEmail, "e", 0, 6}, {DataClass::kEmail, "e", 7, 13}},
          {{DataClass::kEmail, Action::kPseudonymize}});
  const std::string response = "Hi [EMAIL_1], [EMAIL_2] wrote [EMAIL_1]] [EMAIL_ [X] end[EMAIL_2]";
  const std::string expected = p.Restore(response);
  EXPECT_EQ(expected, "Hi x@a.io, y@b.io wrote x@a.io] [EMAIL_ [X] endy@b.io");
  for (std::size_t i = 0; i <= response.size(); ++i) {
    for (std::size_t j = i; j <= response.size(); j += 3) {
      StreamRestorer r(p);
      std::string out = r.Feed(response.substr(0, i));
      out += r.Feed(response.substr(i, j - i));
      out += r.Feed(response.substr(j));
      out += r.Flush();
      ASSERT_EQ(out, expected) << "cuts at " << i << "," << j;
    }
  }
  // One character at a time.
  StreamRestorer r(p);
  std::string out;
  for (char c : response) out += r.Feed(std::string(1, c));
  out += r.Flush();
  EXPECT_EQ(out, expected);
}

TEST(ThinkSplitter, SeparatesReasoningAtEveryCut) {
  const std::string text = "<think>plan: a<b</think>Answer <thin>ok</think> tail";
  for (std::size_t i = 0; i <= text.size(); ++i) {
    ThinkSplitter s;
    auto a = s.Feed(text.substr(0, i));
    auto b = s.Feed(text.substr(i));
    auto c = s.Flush();
    EXPECT_EQ(a.visible + b.visible + c.visible, "Answer <thin>ok</think> tail") << i;
    EXPECT_EQ(a.reasoning + b.reasoning + c.reasoning, "plan: a<b") << i;
  }
}

// Attack: "<THINK>" and "<think >" were not recognized, so reasoning meant to be stripped or only
// logged reached the client. Tags match in any letter case and with blanks before '>', at every
// cut of a stream.
TEST(ThinkSplitter, TagsMatchInAnyCaseAndWithBlanksAtEveryCut) {
  const std::string text = "<THINK >secret plan</Think\t>Answer <thinking>x</think > tail";
  for (std::size_t i = 0; i <= text.size(); ++i) {
    for (std::size_t j = i; j <= text.size(); j += 3) {
      ThinkSplitter s;
      auto a = s.Feed(text.substr(0, i));
      auto b = s.Feed(text.substr(i, j - i));
      auto c = s.Feed(text.substr(j));
      auto d = s.Flush();
      EXPECT_EQ(a.visible + b.visible + c.visible + d.visible, "Answer  tail") << i << "," << j;
      EXPECT_EQ(a.reasoning + b.reasoning + c.reasoning + d.reasoning, "secret planx") << i;
    }
  }
}

// Splits `text` cut at i and j; {visible, reasoning, whether reasoning_released was reported}.
std::tuple<std::string, std::string, bool> SplitThree(const std::string& text, std::size_t i,
                                                      std::size_t j, ThinkMarkers markers = {}) {
  ThinkSplitter s(std::move(markers));
  auto a = s.Feed(text.substr(0, i));
  auto b = s.Feed(text.substr(i, j - i));
  auto c = s.Feed(text.substr(j));
  auto d = s.Flush();
  return {a.visible + b.visible + c.visible + d.visible,
          a.reasoning + b.reasoning + c.reasoning + d.reasoning,
          a.reasoning_released || b.reasoning_released || c.reasoning_released};
}

// R5: an answer whose first marker closes reasoning (the template opened it, DeepSeek R1 style):
// what came before is reasoning, at every cut, with generic tags and with a model's own markers.
TEST(ThinkSplitter, ClosingMarkerWithNoOpeningMakesWhatCameBeforeReasoningAtEveryCut) {
  const std::string text = "plan a<b</think>\n\nAnswer</think> tail";
  for (std::size_t i = 0; i <= text.size(); ++i) {
    auto [visible, reasoning, released] = SplitThree(text, i, text.size());
    EXPECT_EQ(visible, "\n\nAnswer</think> tail") << i;
    EXPECT_EQ(reasoning, "plan a<b") << i;
    EXPECT_FALSE(released);
    auto [v2, r2, rel2] = SplitThree(text, i, text.size(), ThinkMarkers{"<think>", "</think>"});
    EXPECT_EQ(v2, "\n\nAnswer</think> tail") << i;
    EXPECT_EQ(r2, "plan a<b") << i;
  }
  // Held until a marker decides: nothing of the first piece is released before it.
  ThinkSplitter s;
  auto first = s.Feed("plan without markers yet");
  EXPECT_EQ(first.visible, "");
  EXPECT_EQ(first.reasoning, "");
  EXPECT_EQ(s.Flush().visible, "plan without markers yet");  // none came: it was answer
}

// R5: "<think\n>", "<think x=1>", "<thinking>" and nested blocks, at every pair of cuts.
TEST(ThinkSplitter, TagVariantsAndNestedBlocksAtEveryCut) {
  const std::string text =
      "A<think\n>p1</think>B<think x=\"1\">p2<thinking>p3</thinking>p4</think>C<thinker>D<think/>E";
  for (std::size_t i = 0; i <= text.size(); ++i) {
    for (std::size_t j = i; j <= text.size(); j += 2) {
      auto [visible, reasoning, released] = SplitThree(text, i, j);
      EXPECT_EQ(visible, "ABC<thinker>D<think/>E") << i << "," << j;
      EXPECT_EQ(reasoning, "p1p2p3p4") << i << "," << j;
    }
  }
  // An unclosed block is reasoning to the end; a tag longer than 64 bytes is not a tag.
  EXPECT_EQ(std::get<1>(SplitThree("a<think>rest", 3, 12)), "rest");
  const std::string long_tag = "<think " + std::string(80, 'x') + ">text";
  EXPECT_EQ(std::get<0>(SplitThree(long_tag, 5, long_tag.size())), long_tag);
}

// Attack (red team, F4): reasoning in the markers of other model families reached the client
// with reasoning withheld: Mistral Magistral's [THINK], ByteDance Seed's <seed:think>, gpt-oss's
// harmony analysis channel, <|begin_of_thought|>, <reasoning>. Each is reasoning, at every cut.
TEST(ThinkSplitter, OtherModelFamiliesMarkersAreReasoningAtEveryCut) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[THINK]SECRET PLAN[/THINK]answer", "answer"},
      {"[think]SECRET PLAN[/Think]answer", "answer"},
      {"<seed:think>SECRET PLAN</seed:think>answer", "answer"},
      {"<SEED:THINK budget=1>SECRET PLAN</seed:think >answer", "answer"},
      {"<|channel|>analysis<|message|>SECRET PLAN<|end|><|start|>assistant<|channel|>final"
       "<|message|>answer",
       "<|start|>assistant<|channel|>final<|message|>answer"},
      {"<|begin_of_thought|>SECRET PLAN<|end_of_thought|>answer", "answer"},
      {"<reasoning>SECRET PLAN</reasoning>answer", "answer"},
      // The template opened the block: everything before the first closing marker.
      {"SECRET PLAN[/THINK]answer", "answer"},
      {"SECRET PLAN</seed:think>answer", "answer"},
      // A block closes only with its own family's marker.
      {"[THINK]SECRET </think>PLAN[/THINK]answer", "answer"},
  };
  for (const auto& [text, visible_expected] : cases) {
    for (std::size_t i = 0; i <= text.size(); ++i) {
      auto [visible, reasoning, released] = SplitThree(text, i, std::min(text.size(), i + 3));
      EXPECT_EQ(visible, visible_expected) << text << " cut " << i;
      EXPECT_NE(reasoning.find("SECRET"), std::string::npos) << text << " cut " << i;
      EXPECT_NE(reasoning.find("PLAN"), std::string::npos) << text << " cut " << i;
    }
  }
  // Harmony's "<|end|>" ends any message: alone it is answer text, not the end of reasoning.
  EXPECT_EQ(std::get<0>(SplitThree("answer<|end|>", 2, 9)), "answer<|end|>");
  // Ordinary brackets and tags are text.
  EXPECT_EQ(std::get<0>(SplitThree("a [1] <b>[THIN]</b> <reason>", 3, 8)),
            "a [1] <b>[THIN]</b> <reason>");
}

// R5: text before any marker is held only up to kMaxUndecided bytes; a closing marker after that
// is reported (the caller already passed reasoning on as answer and must fail closed).
TEST(ThinkSplitter, ClosingMarkerAfterTheHeldTextWasReleasedIsReported) {
  ThinkSplitter s;
  std::string big(ThinkSplitter::kMaxUndecided + 1, 'r');
  auto a = s.Feed(big);
  EXPECT_EQ(a.visible, big);
  auto b = s.Feed("more</think>answer");
  EXPECT_TRUE(b.reasoning_released);
  EXPECT_EQ(b.visible, "moreanswer");  // released like the text before it
  // One Feed holding the whole answer (a non-streamed answer) decides at once, whatever its size.
  ThinkSplitter whole;
  auto w = whole.Feed(big + "</think>answer");
  EXPECT_EQ(w.reasoning, big);
  EXPECT_EQ(w.visible, "answer");
  EXPECT_FALSE(w.reasoning_released);
}

// Attack: base_url values with userinfo, a fragment, a query or '..' segments were copied raw into
// the upstream request path ("#frag", "/../../admin"); they are load errors now.
TEST(PolicyParse, UpstreamBaseUrlProblemsAreLoadErrors) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"http://user:pw@127.0.0.1:9/v1", "user information"},
      {"http://127.0.0.1:9/v1#frag", "fragment"},
      {"http://127.0.0.1:9/v1?x=1", "query"},
      {"http://127.0.0.1:9/../../admin", "'..'"},
      {"http://127.0.0.1:9/v1/./x", "'.'"},
      {"http://127.0.0.1:9/v1/%2e%2e/admin", "percent"},
      {"http://127.0.0.1:99999/v1", "port"},
      {"http://127.0.0.1:0/v1", "port"},
      {"http://127.0.0.1:9x/v1", "port"},
      {"http://127.0.0.1:/v1", "empty port"},
      {"http:///v1", "no host"},
      {"http://exa mple.com/v1", "space"},
      {"http://[::1/v1", "IPv6"},
      {"ftp://127.0.0.1/v1", "http://"},
  };
  for (const auto& [url, problem] : bad) {
    std::string toml =
        "[[upstreams]]\nname='u'\nbase_url='" + url + "'\njurisdiction='US'\nmodels=['m']\n";
    auto p = ParsePolicy(toml);
    ASSERT_FALSE(p.ok()) << url;
    EXPECT_NE(p.error().message().find("base_url"), std::string::npos) << p.error().message();
    EXPECT_NE(p.error().message().find(problem), std::string::npos)
        << url << ": " << p.error().message();
  }
  auto ok = ParseBaseUrl("https://api.example.com/v1/");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->scheme, "https");
  EXPECT_EQ(ok->host, "api.example.com");
  EXPECT_EQ(ok->port, 443);
  EXPECT_EQ(ok->path, "/v1");
  auto v6 = ParseBaseUrl("http://[::1]:8080");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8080);
  EXPECT_EQ(v6->path, "");
}

TEST(PolicyParse, RuleDirectionLimitsWhereARuleApplies) {
  auto p = ParsePolicy(
      "[[rules]]\ndata_classes=['email']\naction='block'\ndirection='response'\n"
      "[[rules]]\ndata_classes=['email']\naction='redact'\n"
      "[[rules]]\ndata_classes=['phone']\naction='block'\ndirection='request'\n");
  ASSERT_TRUE(p.ok()) << p.error().message();
  Target local;
  local.local = true;
  Verdict req = Decide(*p, {DataClass::kEmail}, local);
  EXPECT_FALSE(req.blocked);  // the response-only block is skipped; the next rule redacts
  EXPECT_EQ(req.actions[DataClass::kEmail], Action::kRedact);
  EXPECT_TRUE(DecideResponse(*p, {DataClass::kEmail}).blocked);
  EXPECT_TRUE(Decide(*p, {DataClass::kPhone}, local).blocked);
  Verdict resp = DecideResponse(*p, {DataClass::kPhone});
  EXPECT_FALSE(resp.blocked);
  EXPECT_EQ(resp.actions[DataClass::kPhone], Action::kAllow);
  EXPECT_FALSE(
      ParsePolicy("[[rules]]\ndata_classes=['email']\naction='block'\ndirection='out'\n").ok());
}
}  // namespace
}  // namespace airlock::policy

namespace airlock::policy {
namespace {

std::string HttpsUpstream(const std::string& extra, const std::string& url = "https://h.test/v1") {
  return "[[upstreams]]\nname='u'\nbase_url='" + url + "'\njurisdiction='CN'\nmodels=['m']\n" +
         extra;
}

// A typo in a pin would otherwise pin nothing (or refuse every connection at runtime): every
// malformed identity key is a load error naming the key, and pins over plain HTTP, which could
// never be checked, are refused instead of silently ignored.
TEST(PolicyParse, UpstreamIdentityMistakesAreLoadErrors) {
  const std::string good = "E9CZ9INDbd+2eRQozYqqbQ2yXLVKB9+xcprMF+44U1g=";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {HttpsUpstream("spki_sha256=['E9CZ9INDbd+2eRQozYqqbQ2yXLVKB9+xcprMF+44U1']\n"), "44"},
      {HttpsUpstream("spki_sha256=['E9CZ9INDbd+2eRQozYqqbQ2yXLVKB9+xcprMF+44U1g']\n"), "44"},
      {HttpsUpstream("spki_sha256=['E9CZ9INDbd+2eRQozYq*bQ2yXLVKB9+xcprMF+44U1g=']\n"), "base64"},
      {HttpsUpstream("spki_sha256=['E9CZ9INDbd+2eRQozYqqbQ2yXLVKB9+xcprMF+44U1h=']\n"),
       "canonical"},
      {HttpsUpstream("spki_sha256=[]\n"), "empty pin list"},
      {HttpsUpstream("spki_sha256='" + good + "'\n"), "expected an array"},
      {HttpsUpstream("spki_sha256=['" + good + "']\n", "http://h.test/v1"), "https://"},
      {HttpsUpstream("subject='CN=h.test'\n", "http://h.test/v1"), "https://"},
      {HttpsUpstream("client_cert='c.pem'\n"), "client_cert and client_key"},
      {HttpsUpstream("client_key='k.pem'\n"), "client_cert and client_key"},
      {HttpsUpstream("organization=''\n"), "must not be empty"},
      {HttpsUpstream("spki_pins=['" + good + "']\n"), "unknown key 'spki_pins'"},
  };
  for (const auto& [toml, problem] : bad) {
    auto p = ParsePolicy(toml);
    ASSERT_FALSE(p.ok()) << toml;
    EXPECT_NE(p.error().message().find(problem), std::string::npos)
        << toml << ": " << p.error().message();
  }
  auto p = ParsePolicy(HttpsUpstream(
      "spki_sha256=['" + good +
      "', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=']\n"
      "subject='CN=h.test,O=Provider,C=CN'\norganization='Provider'\nca_file='ca.pem'\n"
      "client_cert='c.pem'\nclient_key='k.pem'\n"));
  ASSERT_TRUE(p.ok()) << p.error().message();
  const Upstream& u = p->upstreams[0];
  EXPECT_EQ(u.spki_sha256.size(), 2u);
  EXPECT_EQ(u.spki_sha256[0], good);
  EXPECT_EQ(u.subject, "CN=h.test,O=Provider,C=CN");
  EXPECT_EQ(u.organization, "Provider");
  EXPECT_EQ(u.client_cert, "c.pem");
  EXPECT_EQ(u.client_key, "k.pem");
}

}  // namespace
}  // namespace airlock::policy
