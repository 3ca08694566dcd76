// llama.cpp's tokenizer test vectors (../shared/fixtures/llama-vocab): for every vocabulary we
// support, tokenize(text, add_special=false, parse_special=false) must equal the recorded ids,
// case by case, as in llama.cpp's tests/test-tokenizer-0.cpp.
#include <fstream>
#include <sstream>
#include <thread>

#include "core/file.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace airlock::engine {
namespace {

using airlock::testing::ReadFileText;

// The .inp cases: pieces separated by "\n__ggml_vocab_test__\n"; the file ends with one.
std::vector<std::string> SplitCases(const std::string& inp) {
  static const std::string kSeparator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  std::size_t pos = 0;
  while (true) {
    std::size_t hit = inp.find(kSeparator, pos);
    if (hit == std::string::npos) break;
    cases.push_back(inp.substr(pos, hit - pos));
    pos = hit + kSeparator.size();
  }
  return cases;
}

std::vector<std::vector<TokenId>> ReadExpected(const std::string& out) {
  std::vector<std::vector<TokenId>> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ids(line);
    std::vector<TokenId> v;
    long id;
    while (ids >> id) v.push_back(static_cast<TokenId>(id));
    lines.push_back(std::move(v));
  }
  return lines;
}

std::string Join(const std::vector<TokenId>& ids) {
  std::string s;
  for (TokenId id : ids) s += " " + std::to_string(id);
  return s;
}

struct LoadedVocab {
  core::MappedFile mapped;
  std::unique_ptr<formats::gguf::File> file;
};

class VocabFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabFixtureTest, MatchesLlamaCppIds) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  const std::string name = GetParam();
  const auto gguf_path = fixtures / ("ggml-vocab-" + name + ".gguf");
  if (!std::filesystem::exists(gguf_path)) GTEST_SKIP() << gguf_path << " not present";

  auto mapped = core::MappedFile::Open(gguf_path.string());
  ASSERT_TRUE(mapped.ok()) << mapped.error().ToString();
  auto file = formats::gguf::File::Parse(mapped->bytes());
  ASSERT_TRUE(file.ok()) << file.error().ToString();
  auto tokenizer = Tokenizer::FromGguf(*file);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().ToString();

  const auto cases = SplitCases(ReadFileText(gguf_path.string() + ".inp"));
  const auto expected = ReadExpected(ReadFileText(gguf_path.string() + ".out"));
  ASSERT_GE(cases.size(), 40u);
  ASSERT_EQ(cases.size(), expected.size());

  int passed = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::vector<TokenId> got = tokenizer->Encode(cases[i], false, false);
    if (got == expected[i]) {
      ++passed;
    } else {
      ADD_FAILURE() << name << " case " << i << " '" << cases[i]
                    << "'\n  expected:" << Join(expected[i]) << "\n  got:     " << Join(got);
    }
  }
  std::printf("[ vocab    ] %s %d/%zu\n", name.c_str(), passed, cases.size());

  // Decoding what we encoded gives the text back (byte-level BPE and byte fallback are lossless).
  int round_trips = 0;
  for (const std::string& text : cases) {
    if (tokenizer->Decode(tokenizer->Encode(text, false, false)) == text) ++round_trips;
  }
  EXPECT_EQ(round_trips, static_cast<int>(cases.size())) << name << ": decode(encode(x)) != x";
  EXPECT_EQ(passed, static_cast<int>(cases.size()));
}

// Special-token text becomes a control token only when asked, on real vocabularies.
TEST(VocabFixtureSpecial, Qwen2ChatMarkers) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  auto path = fixtures / "ggml-vocab-qwen2.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
  auto mapped = core::MappedFile::Open(path.string());
  ASSERT_TRUE(mapped.ok());
  auto file = formats::gguf::File::Parse(mapped->bytes());
  ASSERT_TRUE(file.ok());
  auto tokenizer = Tokenizer::FromGguf(*file);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().ToString();
  const TokenId im_start = tokenizer->Find("<|im_start|>");
  const TokenId im_end = tokenizer->Find("<|im_end|>");
  ASSERT_NE(im_start, kNoToken);
  EXPECT_TRUE(tokenizer->IsControl(im_start));
  EXPECT_TRUE(tokenizer->IsEog(im_end));
  EXPECT_EQ(tokenizer->eot(), im_end);
  EXPECT_FALSE(tokenizer->add_bos());  // qwen2 vocabularies do not add BOS

  const std::string text = "<|im_start|>user\nhi<|im_end|>";
  auto parsed = tokenizer->Encode(text, true, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), im_start);
  EXPECT_EQ(parsed.back(), im_end);
  auto plain = tokenizer->Encode(text, true, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_end), 0);
  EXPECT_EQ(tokenizer->Decode(plain), text);
  EXPECT_EQ(tokenizer->Decode(parsed), "user\nhi");
  EXPECT_EQ(tokenizer->Decode(parsed, true), text);

  std::vector<TextSegment> chat = {
      {"<|im_start|>user\n", true}, {"<|im_end|>", false}, {"<|im_end|>", true}};
  auto segmented = tokenizer->EncodeSegments(chat, false);
  EXPECT_EQ(std::count(segmented.begin(), segmented.end(), im_end), 1);
  EXPECT_EQ(segmented.back(), im_end);
}

Result<Tokenizer> LoadFixture(const std::filesystem::path& path, core::MappedFile* keep) {
  AIRLOCK_ASSIGN_OR_RETURN(*keep, core::MappedFile::Open(path.string()));
  AIRLOCK_ASSIGN_OR_RETURN(auto file, formats::gguf::File::Parse(keep->bytes()));
  return Tokenizer::FromGguf(file);
}

TEST(VocabFixtureSpecial, Llama3AndSpmSettings) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  core::MappedFile keep;
  auto llama3 = LoadFixture(fixtures / "ggml-vocab-llama-bpe.gguf", &keep);
  if (!llama3) GTEST_SKIP() << llama3.error().ToString();
  EXPECT_EQ(llama3->bos(), 128000);
  EXPECT_TRUE(llama3->add_bos());
  EXPECT_EQ(llama3->eot(), llama3->Find("<|eot_id|>"));
  EXPECT_TRUE(llama3->IsEog(llama3->Find("<|eot_id|>")));
  EXPECT_TRUE(llama3->IsEog(llama3->Find("<|end_of_text|>")));
  EXPECT_FALSE(llama3->IsEog(llama3->Find("<|start_header_id|>")));
  auto ids = llama3->Encode("<|start_header_id|>user<|end_header_id|>", true, true);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids[0], 128000);
  EXPECT_EQ(ids[1], llama3->Find("<|start_header_id|>"));

  auto spm = LoadFixture(fixtures / "ggml-vocab-llama-spm.gguf", &keep);
  ASSERT_TRUE(spm.ok()) << spm.error().ToString();
  EXPECT_EQ(spm->kind(), VocabKind::kSpm);
  auto hello = spm->Encode("Hello world", true, false);
  ASSERT_FALSE(hello.empty());
  EXPECT_EQ(hello.front(), 1);
  EXPECT_EQ(spm->Decode(hello), "Hello world");
  EXPECT_TRUE(spm->IsEog(2));
  // "</s>" in user text stays text without --parse-special.
  auto text = spm->Encode("a</s>", false, false);
  EXPECT_EQ(std::count(text.begin(), text.end(), 2), 0);
  EXPECT_EQ(spm->Encode("a</s>", false, true).back(), 2);
}

// As llama.cpp's test does: one tokenizer shared by several threads gives the same ids.
TEST(VocabFixtureSpecial, ConcurrentEncodeIsConsistent) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  const auto path = fixtures / "ggml-vocab-deepseek-llm.gguf";
  core::MappedFile keep;
  auto tokenizer = LoadFixture(path, &keep);
  if (!tokenizer) GTEST_SKIP() << tokenizer.error().ToString();
  const auto cases = SplitCases(ReadFileText(path.string() + ".inp"));
  const auto expected = ReadExpected(ReadFileText(path.string() + ".out"));
  ASSERT_EQ(cases.size(), expected.size());
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (std::size_t i = 0; i < cases.size(); ++i) {
          if (tokenizer->Encode(cases[i], false, false) != expected[i]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// SPM merges word by word when no token can join a character to a following U+2581. A vocabulary
// with one extra token that breaks that rule merges the whole text at once (llama.cpp's way):
// both must give the same ids on varied text.
TEST(VocabFixtureSpecial, SpmWordSplittingMatchesWholeTextMerging) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  for (const char* name : {"llama-spm", "phi-3"}) {
    auto mapped =
        core::MappedFile::Open((fixtures / (std::string("ggml-vocab-") + name + ".gguf")).string());
    if (!mapped) GTEST_SKIP() << mapped.error().ToString();
    auto file = formats::gguf::File::Parse(mapped->bytes());
    ASSERT_TRUE(file.ok());
    auto vocab = Tokenizer::ReadGgufVocabulary(*file);
    ASSERT_TRUE(vocab.ok()) << vocab.error().ToString();
    auto split = Tokenizer::FromVocabulary(*vocab);
    ASSERT_TRUE(split.ok());
    Vocabulary whole_vocab = *vocab;
    whole_vocab.tokens.push_back("\x01\xE2\x96\x81\x02");  // never formed from the text below
    whole_vocab.scores.push_back(-1e9f);
    whole_vocab.types.push_back(TokenType::kNormal);
    auto whole = Tokenizer::FromVocabulary(whole_vocab);
    ASSERT_TRUE(whole.ok());

    std::string text;
    for (const auto& entry : std::filesystem::directory_iterator(fixtures)) {
      if (entry.path().extension() == ".inp") text += ReadFileText(entry.path());
    }
    text += ReadFileText(std::filesystem::path(AIRLOCK_SOURCE_DIR) / "README.md");
    text +=
        ReadFileText(std::filesystem::path(AIRLOCK_SOURCE_DIR) / "src" / "engine" / "tokenizer.cc");
    text += "  double  spaces,   triple, \t tab \n\n newline \xE2\x96\x81 literal, \xFF bad";
    auto a = split->Encode(text, true, false);
    auto b = whole->Encode(text, true, false);
    std::size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    if (i < a.size() || i < b.size()) {
      std::vector<TokenId> ctx_a(a.begin() + (i > 5 ? i - 5 : 0),
                                 a.begin() + std::min(a.size(), i + 5));
      std::vector<TokenId> ctx_b(b.begin() + (i > 5 ? i - 5 : 0),
                                 b.begin() + std::min(b.size(), i + 5));
      ADD_FAILURE() << name << " differs at token " << i << ": split '"
                    << split->Decode(ctx_a, true) << "'" << Join(ctx_a) << "\n whole '"
                    << whole->Decode(ctx_b, true) << "'" << Join(ctx_b);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, VocabFixtureTest,
                         ::testing::Values("llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35",
                                           "deepseek-llm", "deepseek-coder", "gpt-2", "falcon",
                                           "mpt", "starcoder", "refact"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) {
                             if (c == '-') c = '_';
                           }
                           return s;
                         });

}  // namespace
}  // namespace airlock::engine
