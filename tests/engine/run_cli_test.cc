// `airlock run` end to end on a real trained model (stories260K, a TinyStories Llama with a
// SentencePiece vocabulary): greedy decoding is deterministic, so the continuation is checked.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/generation.h"
#include "core/file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace {

// stdout of `command`; its exit status (-1 when it did not exit) in `status`.
std::string RunAndCapture(const std::string& command, int* status) {
  auto [code, out] = airlock::testing::RunShellStdout(command);
  *status = code;
  return out;
}

TEST(RunCommand, GreedyStoryFromStories260K) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  const auto model = fixtures / "stories260K.gguf";
  int status = -1;
  const std::string out =
      RunAndCapture(std::string(AIRLOCK_EXE) + " run '" + model.string() +
                        "' -p 'Once upon a time' -n 30 --temp 0 --threads 2 2>/dev/null",
                    &status);
  EXPECT_EQ(status, 0);
  // What this model writes after "Once upon a time" under greedy decoding.
  EXPECT_NE(out.find("there was a little girl named Lily"), std::string::npos) << out;
}

TEST(ChatCommand, TwoTurnsAndReset) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  const auto model = fixtures / "stories260K.gguf";
  int status = -1;
  // No chat template in this model: each turn is the conversation's plain text.
  const std::string out = RunAndCapture(
      "printf 'Once upon a time\\n/reset\\nOnce upon a time\\n' | " + std::string(AIRLOCK_EXE) +
          " chat '" + model.string() + "' -n 12 --temp 0 --threads 2 2>/dev/null",
      &status);
  EXPECT_EQ(status, 0);
  // After /reset the same input gives the same greedy reply again.
  const auto first = out.find("there was a little girl");
  ASSERT_NE(first, std::string::npos) << out;
  EXPECT_NE(out.find("there was a little girl", first + 1), std::string::npos) << out;
}

// An endless line on standard input (no newline ever) is refused at the line cap, not read until
// memory runs out.
TEST(ChatCommand, EndlessLineIsRefused) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  const auto model = fixtures / "stories260K.gguf";
  int status = -1;
  const std::string out =
      RunAndCapture("yes | tr -d '\\n' | " + std::string(AIRLOCK_EXE) + " chat '" + model.string() +
                        "' -n 4 --temp 0 --threads 2 2>&1",
                    &status);
  EXPECT_EQ(status, 3) << out;
  EXPECT_NE(out.find("a line of more than 1048576 bytes"), std::string::npos) << out;
}

// stories260K with a chat template added: every KV and tensor copied verbatim.
std::string WithChatTemplate(const std::filesystem::path& src, const std::string& tmpl) {
  namespace gguf = airlock::formats::gguf;
  auto mapped = airlock::core::MappedFile::Open(src.string());
  EXPECT_TRUE(mapped.has_value());
  auto file = gguf::File::Parse(mapped->bytes());
  EXPECT_TRUE(file.has_value());
  const auto bytes = mapped->bytes();
  gguf::Writer w(file->alignment());
  const auto& kvs = file->metadata();
  for (std::size_t i = 0; i < kvs.size(); ++i) {
    const std::uint64_t begin = kvs[i].value.offset();
    const std::uint64_t end =
        i + 1 < kvs.size() ? kvs[i + 1].offset : file->tensors().front().info_offset;
    if (kvs[i].key == "general.alignment") continue;
    w.AddRawKv(kvs[i].key, static_cast<std::uint32_t>(kvs[i].value.type()),
               std::string(reinterpret_cast<const char*>(bytes.data()) + begin, end - begin));
  }
  w.AddString("tokenizer.chat_template", tmpl);
  for (const auto& t : file->tensors()) {
    w.AddTensor(t.name, t.ggml_type(),
                std::vector<std::uint64_t>(t.ne.begin(), t.ne.begin() + t.n_dims),
                file->TensorData(t));
  }
  return w.Build();
}

TEST(RunCommand, UsesTheModelsChatTemplate) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  airlock::testing::TempDir dir;
  const auto path = dir.path() / "chat.gguf";
  // A template that frames the user text; the story model continues after "Once upon a time".
  const std::string tmpl =
      "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
      "{% if add_generation_prompt %} upon a time{% endif %}";
  ASSERT_TRUE(airlock::core::WriteFileAtomic(path.string(),
                                             WithChatTemplate(fixtures / "stories260K.gguf", tmpl))
                  .ok());
  int status = -1;
  const std::string out = RunAndCapture(std::string(AIRLOCK_EXE) + " run '" + path.string() +
                                            "' -p 'Once' -n 12 --temp 0 --threads 2 2>&1",
                                        &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("there was a little girl"), std::string::npos) << out;
  EXPECT_EQ(out.find("upon a time"), std::string::npos) << out;  // it was part of the prompt
  // Without the template the prompt is just "Once", and the model writes "upon a time" itself.
  const std::string raw =
      RunAndCapture(std::string(AIRLOCK_EXE) + " run '" + path.string() +
                        "' -p 'Once' -n 12 --temp 0 --threads 2 --no-template 2>&1",
                    &status);
  EXPECT_EQ(status, 0) << raw;
  EXPECT_NE(raw.find("upon a time"), std::string::npos) << raw;
}

// A -c above the model's training context (stories260K: 2048) is refused before a cache is
// allocated, with the limit in the message.
TEST(RunCommand, ContextAboveTrainingContextIsRefused) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  int status = -1;
  const std::string out =
      RunAndCapture(std::string(AIRLOCK_EXE) + " run '" + (fixtures / "stories260K.gguf").string() +
                        "' -p 'Once' -n 4 -c 4096 --threads 2 2>&1",
                    &status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("above the model's training context of 2048 tokens; use --ctx 2048 or less"),
            std::string::npos)
      << out;
}

TEST(PromptProgress, OnlyOnATerminalAndForPromptsLongerThanAChunk) {
  using airlock::cli::WantPromptProgress;
  EXPECT_TRUE(WantPromptProgress(true, 257, 256));
  EXPECT_TRUE(WantPromptProgress(true, 4096, 256));
  EXPECT_FALSE(WantPromptProgress(true, 256, 256));  // one forward pass: nothing to follow
  EXPECT_FALSE(WantPromptProgress(true, 12, 256));
  EXPECT_FALSE(WantPromptProgress(false, 4096, 256));  // CI logs, pipes
  EXPECT_FALSE(WantPromptProgress(true, 4096, 0));
}

TEST(PromptProgress, LineNamesTokensAndRate) {
  using airlock::cli::PromptProgressText;
  EXPECT_EQ(PromptProgressText(2048, 4096, 5.0), "prompt 2048/4096 tokens, 410 tok/s");
  EXPECT_EQ(PromptProgressText(256, 600, 0), "prompt 256/600 tokens");
}

// A prompt of several chunks: the progress line goes to stderr on a terminal (a pseudo-terminal
// from script(1)), drawn in place and cleared, and never appears when stderr is a pipe or a file.
TEST(RunCommand, LongPromptShowsProgressOnlyOnATerminal) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  std::string prompt;
  for (int i = 0; i < 80; ++i) prompt += "Once upon a time there was a little girl. ";
  const std::string run = std::string(AIRLOCK_EXE) + " run '" +
                          (fixtures / "stories260K.gguf").string() + "' -p '" + prompt +
                          "' -n 2 --temp 0 --threads 2";
  int status = -1;
  const std::string piped = RunAndCapture(run + " 2>&1", &status);
  EXPECT_EQ(status, 0) << piped;
  EXPECT_EQ(piped.find("prompt 256/"), std::string::npos) << piped;
  EXPECT_EQ(piped.find('\r'), std::string::npos);
  if (RunAndCapture("command -v script", &status).empty() || status != 0)
    GTEST_SKIP() << "script(1) not found: the terminal half of this test needs it";
  // stdout to /dev/null: what script records is stderr on the pseudo-terminal.
  const std::string tty = RunAndCapture(
      "script -qec " + airlock::testing::Quote(run + " >/dev/null") + " /dev/null", &status);
  EXPECT_EQ(status, 0) << tty;
  EXPECT_NE(tty.find("\r\033[Kprompt 256/"), std::string::npos) << tty;
  EXPECT_NE(tty.find(" tok/s\r\033[K"), std::string::npos) << tty;  // cleared at the end
}

TEST(RunCommand, RefusesANonModelFile) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  int status = -1;
  const std::string out = RunAndCapture(
      std::string(AIRLOCK_EXE) + " run '" + (fixtures / "MANIFEST.md").string() + "' -p hi 2>&1",
      &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("structural checks"), std::string::npos) << out;
}

// --json-schema: the story model cannot follow instructions, yet stdout is JSON of the schema
// and generation stops when the object is complete, for every seed.
TEST(RunCommand, JsonSchemaConstrainsTheReply) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  airlock::testing::TempDir dir;
  const auto schema = dir.path() / "answer.schema.json";
  ASSERT_TRUE(airlock::core::WriteFileAtomic(
                  schema.string(),
                  R"({"type":"object","properties":{"mood":{"enum":["calm","angry","sleepy"]},
                      "ok":{"type":"boolean"},"n":{"type":"integer"}},"required":["mood","ok"]})")
                  .ok());
  for (int seed : {1, 2, 3, 4}) {
    int status = -1;
    const std::string out = RunAndCapture(
        std::string(AIRLOCK_EXE) + " run '" + (fixtures / "stories260K.gguf").string() +
            "' -p 'Once upon a time' -n 200 --threads 2 --seed " + std::to_string(seed) +
            " --json-schema '" + schema.string() + "' 2>/dev/null",
        &status);
    EXPECT_EQ(status, 0) << out;
    const auto j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << out;
    ASSERT_TRUE(j.is_object()) << out;
    ASSERT_TRUE(j.contains("mood") && j["mood"].is_string()) << out;
    const std::string mood = j["mood"];
    EXPECT_TRUE(mood == "calm" || mood == "angry" || mood == "sleepy") << out;
    EXPECT_TRUE(j.contains("ok") && j["ok"].is_boolean()) << out;
    if (j.contains("n")) {
      EXPECT_TRUE(j["n"].is_number_integer()) << out;
    }
  }
}

TEST(RunCommand, UnsupportedSchemaIsAClearError) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  airlock::testing::TempDir dir;
  const auto schema = dir.path() / "bad.schema.json";
  ASSERT_TRUE(airlock::core::WriteFileAtomic(
                  schema.string(), R"({"type":"object","properties":{"x":{"minimum":3}}})")
                  .ok());
  int status = -1;
  const std::string model = (fixtures / "stories260K.gguf").string();
  const std::string out = RunAndCapture(std::string(AIRLOCK_EXE) + " run '" + model +
                                            "' -p hi --json-schema '" + schema.string() + "' 2>&1",
                                        &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("'minimum' is not supported (at /properties/x)"), std::string::npos) << out;
  // --json (any object) and --json-schema exclude each other.
  const std::string both =
      RunAndCapture(std::string(AIRLOCK_EXE) + " run '" + model + "' -p hi --json --json-schema '" +
                        schema.string() + "' 2>&1",
                    &status);
  EXPECT_NE(status, 0);
  // --json: whatever the model, the reply starts as an object.
  const std::string any = RunAndCapture(
      std::string(AIRLOCK_EXE) + " run '" + model + "' -p hi --json -n 20 --threads 2 2>/dev/null",
      &status);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(any.rfind("{", 0), 0u) << any;
}

}  // namespace
