// A local model's reasoning is split off at the markers its own chat template or vocabulary
// defines (engine::DetectReasoningMarkers), carried from a model worker in its hello, and applied
// by the gateway to that model's output only; an upstream's answers keep the lenient <think>
// matching (any letter case, blanks or attributes before '>', <thinking>; see reasoning_test.cc).
#include "engine/reasoning.h"
#include "gateway_support.h"
#include "policy/policy.h"
#include "policy/transform.h"
#include "server/gateway.h"
#include "server/internal/worker_protocol.h"
#include "server/model_backend.h"

namespace {

using json = nlohmann::json;
using airlock::policy::ThinkMarkers;
using airlock::policy::ThinkSplitter;
using airlock::testing::TempDir;

// Feeds `text` cut at `cut` and returns {visible, reasoning}.
std::pair<std::string, std::string> SplitAt(const ThinkMarkers& markers, const std::string& text,
                                            std::size_t cut) {
  ThinkSplitter s(markers);
  auto a = s.Feed(text.substr(0, cut));
  auto b = s.Feed(text.substr(cut));
  auto c = s.Flush();
  return {a.visible + b.visible + c.visible, a.reasoning + b.reasoning + c.reasoning};
}

TEST(ReasoningMarkers, ModelMarkersSplitExactlyAtEveryCut) {
  const ThinkMarkers markers{"<|begin_of_thought|>", "<|end_of_thought|>"};
  const std::string text =
      "a<|begin_of_thought|>plan <think>x</think><|end_of_thought|>answer <THINK>y</THINK>";
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    auto [visible, reasoning] = SplitAt(markers, text, cut);
    EXPECT_EQ(visible, "aanswer <THINK>y</THINK>") << cut;
    EXPECT_EQ(reasoning, "plan <think>x</think>") << cut;
  }
}

// R5: a local model whose template opened the reasoning in the generation prompt answers with
// the closing marker only: what precedes it is reasoning, at every cut.
TEST(ReasoningMarkers, ModelClosingMarkerWithNoOpeningEndsReasoningAtEveryCut) {
  const ThinkMarkers markers{"<|begin_of_thought|>", "<|end_of_thought|>"};
  const std::string text = "plan <x><|end_of_thought|>answer";
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    auto [visible, reasoning] = SplitAt(markers, text, cut);
    EXPECT_EQ(visible, "answer") << cut;
    EXPECT_EQ(reasoning, "plan <x>") << cut;
  }
}

TEST(ReasoningMarkers, ExactThinkMarkersDoNotTakeOtherSpellings) {
  const ThinkMarkers markers{"<think>", "</think>"};
  const std::string text = "<think>p</think>a <THINK>b</THINK> <think >c</think >";
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    auto [visible, reasoning] = SplitAt(markers, text, cut);
    EXPECT_EQ(visible, "a <THINK>b</THINK> <think >c</think >") << cut;
    EXPECT_EQ(reasoning, "p") << cut;
  }
  // Without markers (an upstream) every spelling is reasoning.
  auto [visible, reasoning] = SplitAt({}, text, 3);
  EXPECT_EQ(visible, "a  ");
  EXPECT_EQ(reasoning, "pbc");
}

TEST(ReasoningMarkers, DetectedFromTheChatTemplate) {
  // Qwen3's template writes the markers around reasoning_content of earlier turns.
  const std::string qwen3 =
      "{%- for message in messages %}{%- if message.role == 'assistant' %}"
      "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + "
      "'\\n</think>\\n\\n' + content }}{%- endif %}{%- endfor %}";
  EXPECT_EQ(airlock::engine::DetectReasoningMarkers(qwen3, nullptr),
            (airlock::engine::ReasoningMarkers{"<think>", "</think>"}));
  // R5: "<thinking>" templates.
  EXPECT_EQ(airlock::engine::DetectReasoningMarkers(
                "{{ '<thinking>' + m.reasoning_content + '</thinking>' }}", nullptr),
            (airlock::engine::ReasoningMarkers{"<thinking>", "</thinking>"}));
  // F4: the other families' markers.
  EXPECT_EQ(airlock::engine::DetectReasoningMarkers(
                "{{ '[THINK]' + m.reasoning_content + '[/THINK]' }}", nullptr),
            (airlock::engine::ReasoningMarkers{"[THINK]", "[/THINK]"}));
  EXPECT_EQ(airlock::engine::DetectReasoningMarkers(
                "{{ '<seed:think>' + m.reasoning_content + '</seed:think>' }}", nullptr),
            (airlock::engine::ReasoningMarkers{"<seed:think>", "</seed:think>"}));
  // Only one of the two is not a pair; a template without either has none.
  EXPECT_TRUE(airlock::engine::DetectReasoningMarkers("{{ '<think>' }}", nullptr).empty());
  EXPECT_TRUE(airlock::engine::DetectReasoningMarkers(
                  "{% for m in messages %}{{ m.content }}{% endfor %}", nullptr)
                  .empty());
}

airlock::Result<airlock::server::internal::WorkerMessage> Hello(const json& j) {
  airlock::server::internal::Frame f;
  f.kind = 'J';
  f.json = j;
  return airlock::server::internal::ParseWorkerMessage(std::move(f));
}

// The worker names its model's markers in its hello; a hostile worker cannot send one without
// the other or an unbounded one.
TEST(ReasoningMarkers, WorkerHelloCarriesBoundedMarkers) {
  json hello = {{"op", "hello"},
                {"protocol", airlock::server::internal::kWorkerProtocolVersion},
                {"tool_syntax", "none"},
                {"think_open", "<think>"},
                {"think_close", "</think>"}};
  auto m = Hello(hello);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->think_markers, (airlock::engine::ReasoningMarkers{"<think>", "</think>"}));
  json plain = hello;
  plain.erase("think_open");
  plain.erase("think_close");
  m = Hello(plain);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->think_markers.empty());
  json half = hello;
  half.erase("think_close");
  EXPECT_FALSE(Hello(half).ok());
  json huge = hello;
  huge["think_open"] = std::string(65, '<');
  EXPECT_FALSE(Hello(huge).ok());
  json typed = hello;
  typed["think_close"] = 5;
  EXPECT_FALSE(Hello(typed).ok());
}

// A stand-in for a local model (the engine's output path is tested in engine_backend_test):
// emits its reasoning between its own markers, cut across pieces, then an answer holding other
// tag spellings, which are not this model's markers.
class MarkerBackend : public airlock::server::ModelBackend {
 public:
  explicit MarkerBackend(airlock::engine::ReasoningMarkers markers,
                         std::vector<std::string> pieces = {"<|begin_of_th", "ought|>model plan",
                                                            "<|end_of_thou",
                                                            "ght|>answer <THINK>kept</THINK>"})
      : markers_(markers), pieces_(std::move(pieces)) {}
  std::string Name() const override { return "thinker"; }
  std::int64_t CountTokens(std::string_view text) const override {
    return static_cast<std::int64_t>(text.size() / 4 + 1);
  }
  airlock::engine::ReasoningMarkers ReasoningTags() const override { return markers_; }
  airlock::Result<airlock::server::GenerateResult> Generate(
      const airlock::server::GenerateRequest&, const std::function<bool(std::string_view)>& on_text,
      const std::atomic<bool>& cancel) override {
    airlock::server::GenerateResult r;
    for (const auto& p : pieces_) {
      if (cancel || !on_text(p)) break;
      r.completion_tokens++;
    }
    r.prompt_tokens = 3;
    return r;
  }

 private:
  airlock::engine::ReasoningMarkers markers_;
  std::vector<std::string> pieces_;
};

std::string Content(const httplib::Result& r, bool stream) {
  if (!stream) return json::parse(r->body)["choices"][0]["message"].value("content", "");
  std::string text;
  std::size_t pos = 0;
  while ((pos = r->body.find("data: {", pos)) != std::string::npos) {
    std::size_t end = r->body.find("\n\n", pos);
    json chunk = json::parse(r->body.substr(pos + 6, end - pos - 6));
    pos = end;
    for (const auto& ch : chunk["choices"])
      if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
  }
  return text;
}

// `pieces`: what the model emits (empty: the default, an opening and a closing marker).
void ExpectLocalSplit(bool stream, std::vector<std::string> pieces = {}) {
  TempDir dir("reasoning-markers");
  std::string toml =
      "[[local_models]]\nname='thinker'\npath='thinker.gguf'\n[reasoning]\n"
      "action='strip'\n[audit]\npath='" +
      (dir.path() / "a.db").string() + "'\n[server]\nkeys_db='" + (dir.path() / "k.db").string() +
      "'\n";
  auto policy = airlock::policy::ParsePolicy(toml);
  ASSERT_TRUE(policy.ok()) << policy.error().message();
  airlock::server::GatewayOptions options;
  options.port = 0;
  options.policy = *policy;
  const airlock::engine::ReasoningMarkers markers{"<|begin_of_thought|>", "<|end_of_thought|>"};
  options.local_backends["thinker"] = pieces.empty()
                                          ? std::make_shared<MarkerBackend>(markers)
                                          : std::make_shared<MarkerBackend>(markers, pieces);
  auto gw = airlock::server::Gateway::Create(options);
  ASSERT_TRUE(gw.ok()) << gw.error().message();
  ASSERT_TRUE((*gw)->Start().ok());
  httplib::Client c("127.0.0.1", (*gw)->port());
  c.set_read_timeout(20, 0);
  json body = {{"model", "thinker"},
               {"stream", stream},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Content(r, stream), "answer <THINK>kept</THINK>");
  (*gw)->Stop();
}

TEST(ReasoningMarkers, LocalModelReasoningIsSplitAtItsOwnMarkersNonStreamed) {
  ExpectLocalSplit(false);
}
TEST(ReasoningMarkers, LocalModelReasoningIsSplitAtItsOwnMarkersStreamed) {
  ExpectLocalSplit(true);
}

// R5: a local model whose template opened the reasoning answers with the closing marker only:
// the text before it never reaches the client (strip), streamed or not.
TEST(ReasoningMarkers, LocalModelAnswerWithOnlyAClosingMarkerIsSplitNonStreamed) {
  ExpectLocalSplit(false, {"model pl", "an<|end_of_thou", "ght|>answer <THINK>kept</THINK>"});
}
TEST(ReasoningMarkers, LocalModelAnswerWithOnlyAClosingMarkerIsSplitStreamed) {
  ExpectLocalSplit(true, {"model pl", "an<|end_of_thou", "ght|>answer <THINK>kept</THINK>"});
}

}  // namespace
