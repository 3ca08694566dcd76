// The tokenizer algorithms on hand-made vocabularies: merge order, ignore_merges, byte-level
// mapping and fallbacks, SentencePiece scores and byte tokens, special-token parsing, segments,
// decoding and streaming, and the errors of a malformed vocabulary.
#include <gtest/gtest.h>

#include "engine/tokenizer.h"

namespace airlock::engine {
namespace {

using Ids = std::vector<TokenId>;

Vocabulary SmallBpe(std::vector<std::string> merges, std::string pre = "gpt-2") {
  Vocabulary v;
  v.kind = VocabKind::kBpe;
  v.pre = std::move(pre);
  // 0..5 letters and merges, 6 "Ġ", 7 "Ġa", 8 control, 9 user-defined, 10/11 the bytes of "é".
  v.tokens = {"a",
              "b",
              "c",
              "ab",
              "bc",
              "abc",
              "\xC4\xA0",
              "\xC4\xA0"
              "a",
              "<|im_start|>",
              "<tool>",
              "\xC3\x83",
              "\xC2\xA9",
              "<|im_end|>"};
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.types[8] = TokenType::kControl;
  v.types[9] = TokenType::kUserDefined;
  v.types[12] = TokenType::kControl;
  v.merges = std::move(merges);
  v.bos = 8;
  v.eos = 12;
  return v;
}

Tokenizer Make(Vocabulary v) {
  auto t = Tokenizer::FromVocabulary(std::move(v));
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().ToString());
  return std::move(t).value();
}

TEST(BpeTokenizer, MergesFollowRankOrder) {
  Tokenizer first_ab = Make(SmallBpe({"a b", "b c", "ab c"}));
  EXPECT_EQ(first_ab.Encode("abc", false, false), (Ids{5}));
  Tokenizer first_bc = Make(SmallBpe({"b c", "a b", "ab c"}));
  EXPECT_EQ(first_bc.Encode("abc", false, false), (Ids{0, 4}));
  Tokenizer none = Make(SmallBpe({}));
  EXPECT_EQ(none.Encode("abc", false, false), (Ids{0, 1, 2}));
}

TEST(BpeTokenizer, SpaceIsByteMappedAndPreTokenized) {
  Tokenizer t = Make(SmallBpe({"\xC4\xA0 a", "a b"}));
  // " a" is one pre-token word ("Ġa"); "ab" another.
  EXPECT_EQ(t.Encode("ab a", false, false), (Ids{3, 7}));
}

TEST(BpeTokenizer, IgnoreMergesTakesWholeWordsForLlama3) {
  Tokenizer gpt2 = Make(SmallBpe({}, "gpt-2"));
  EXPECT_EQ(gpt2.Encode("abc", false, false), (Ids{0, 1, 2}));
  Tokenizer llama3 = Make(SmallBpe({}, "llama-bpe"));
  EXPECT_EQ(llama3.Encode("abc", false, false), (Ids{5}));
  EXPECT_TRUE(llama3.add_bos());  // llama3 pre-tokenizer defaults to adding BOS
  EXPECT_EQ(llama3.Encode("abc", true, false), (Ids{8, 5}));
  EXPECT_FALSE(gpt2.add_bos());
}

TEST(BpeTokenizer, NonAsciiGoesThroughByteLevelMapping) {
  Tokenizer t = Make(SmallBpe({}));
  // U+00E9 is C3 A9, mapped to U+00C3 U+00A9, both tokens here.
  EXPECT_EQ(t.Encode("\xC3\xA9", false, false), (Ids{10, 11}));
  EXPECT_EQ(t.Decode(Ids{10, 11}), "\xC3\xA9");
}

TEST(BpeTokenizer, InvalidUtf8NeverCrashes) {
  Tokenizer t = Make(SmallBpe({"a b"}));
  std::string junk =
      "\xFF\xFE"
      "ab\xC3"
      "\x80\x80\xF4\x90\x80\x80"
      "a\xE2\x82";
  Ids ids = t.Encode(junk, true, true);
  EXPECT_FALSE(ids.empty());
  for (TokenId id : ids) EXPECT_LT(id, t.vocab_size());
}

TEST(SpecialTokens, ControlTextParsedOnlyWhenAsked) {
  Tokenizer t = Make(SmallBpe({"a b"}));
  Ids plain = t.Encode("<|im_start|>ab", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 8), 0);
  Ids parsed = t.Encode("<|im_start|>ab", false, true);
  EXPECT_EQ(parsed, (Ids{8, 3}));
}

TEST(SpecialTokens, UserDefinedTokensAlwaysMatch) {
  Tokenizer t = Make(SmallBpe({"a b"}));
  EXPECT_EQ(t.Encode("ab<tool>ab", false, false), (Ids{3, 9, 3}));
}

TEST(SpecialTokens, SegmentsKeepUserTextPlain) {
  Tokenizer t = Make(SmallBpe({"a b"}));
  std::vector<TextSegment> segments = {
      {"<|im_start|>ab", true}, {"<|im_start|>", false}, {"<|im_end|>", true}};
  Ids ids = t.EncodeSegments(segments, false);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 8);
  EXPECT_EQ(ids.back(), 12);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 8), 1);
  // Joined plain stretches tokenize as one text.
  std::vector<TextSegment> split = {{"a", false}, {"b", true}};
  EXPECT_EQ(t.EncodeSegments(split, false), t.Encode("ab", false, true));
}

TEST(SpecialTokens, SpansParseOnlyMarkedRanges) {
  Tokenizer t = Make(SmallBpe({"a b"}));
  const std::string text = "<|im_start|>ab<|im_start|><|im_end|>";
  // [0,12) template, [12,26) content, [26,36) template.
  std::vector<TextSpan> spans = {{0, 12, true}, {12, 26, false}, {26, 36, true}};
  Ids ids = t.EncodeSpans(text, spans, false);
  EXPECT_EQ(ids.front(), 8);
  EXPECT_EQ(ids.back(), 12);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 8), 1);
  // Bad spans fall back to plain text; nothing is parsed.
  std::vector<TextSpan> bad = {{0, 1000, true}};
  Ids plain = t.EncodeSpans(text, bad, false);
  EXPECT_EQ(plain, t.Encode(text, false, false));
}

TEST(SpecialTokens, EndOfTurnRecognizedByText) {
  Tokenizer t = Make(SmallBpe({}));
  EXPECT_EQ(t.eot(), 12);
  EXPECT_TRUE(t.IsEog(12));
  EXPECT_TRUE(t.IsControl(12));
  EXPECT_FALSE(t.IsEog(0));
}

Vocabulary SmallSpm() {
  Vocabulary v;
  v.kind = VocabKind::kSpm;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  v.scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    v.tokens.push_back(name);
    v.types.push_back(TokenType::kByte);
    v.scores.push_back(0);
  }
  auto add = [&](const std::string& text, float score) {
    v.tokens.push_back(text);
    v.types.push_back(TokenType::kNormal);
    v.scores.push_back(score);
  };
  add("\xE2\x96\x81", -1);       // 259 ▁
  add("h", -2);                  // 260
  add("e", -2);                  // 261
  add("l", -2);                  // 262
  add("o", -2);                  // 263
  add("\xE2\x96\x81h", -3);      // 264 ▁h
  add("he", -1);                 // 265
  add("ll", -1.5f);              // 266
  add("llo", -4);                // 267
  add("\xE2\x96\x81he", -5);     // 268 ▁he
  add("\xE2\x96\x81hello", -6);  // 269 ▁hello
  add("hell", -9);               // 270
  return v;
}

TEST(SpmTokenizer, MergesByScoreWithSpacePrefix) {
  Tokenizer t = Make(SmallSpm());
  // ▁ h e l l o: best pairs he (-1), then ll (-1.5), ▁he (-5) vs llo (-4): llo first, then ▁he,
  // then ▁hello (-6).
  EXPECT_EQ(t.Encode("hello", true, false), (Ids{1, 269}));
  EXPECT_EQ(t.Encode("hello", false, false), (Ids{269}));
  EXPECT_EQ(t.Decode(Ids{1, 269}), "hello");
  EXPECT_EQ(t.Decode(Ids{1, 269}, true), "<s> hello");
}

TEST(SpmTokenizer, UnknownCharactersFallBackToBytes) {
  Tokenizer t = Make(SmallSpm());
  // é = C3 A9 -> <0xC3> <0xA9> (ids 3 + byte).
  EXPECT_EQ(t.Encode("\xC3\xA9", false, false), (Ids{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(t.Decode(Ids{259, 3 + 0xC3, 3 + 0xA9}), "\xC3\xA9");
}

TEST(StreamDecoder, HoldsBackIncompleteUtf8) {
  Tokenizer t = Make(SmallSpm());
  StreamDecoder stream(t);
  EXPECT_EQ(stream.Push(3 + 0xE2), "");
  EXPECT_EQ(stream.Push(3 + 0x82), "");
  EXPECT_EQ(stream.Push(3 + 0xAC), "\xE2\x82\xAC");  // €
  EXPECT_EQ(stream.Push(260), "h");
  EXPECT_EQ(stream.Push(1), "");  // control: not printed
  EXPECT_EQ(stream.Push(3 + 0xF0), "");
  EXPECT_EQ(stream.Flush(), "\xF0");
}

TEST(TokenizerErrors, MalformedVocabulariesAreErrors) {
  EXPECT_EQ(Tokenizer::FromVocabulary(Vocabulary{}).error().code(), StatusCode::kNotFound);
  Vocabulary unknown_pre = SmallBpe({});
  unknown_pre.pre = "no-such-pre";
  EXPECT_EQ(Tokenizer::FromVocabulary(unknown_pre).error().code(), StatusCode::kUnsupported);
  Vocabulary short_scores = SmallSpm();
  short_scores.scores.pop_back();
  EXPECT_EQ(Tokenizer::FromVocabulary(short_scores).error().code(), StatusCode::kCorrupt);
  Vocabulary bad_ids = SmallSpm();
  bad_ids.bos = 1'000'000;  // out of range: llama.cpp keeps the default
  auto t = Tokenizer::FromVocabulary(bad_ids);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->bos(), 1);
}

TEST(TokenizerAccessors, PiecesAndTexts) {
  Tokenizer t = Make(SmallSpm());
  EXPECT_EQ(t.TokenText(269), "\xE2\x96\x81hello");
  EXPECT_EQ(t.TokenPiece(269), " hello");
  EXPECT_EQ(t.TokenPiece(3 + 'A'), "A");
  EXPECT_EQ(t.TokenPiece(-1), "");
  EXPECT_EQ(t.TokenText(100000), "");
  EXPECT_EQ(t.Find("\xE2\x96\x81h"), 264);
  EXPECT_EQ(t.Find("zzz"), kNoToken);
}

}  // namespace
}  // namespace airlock::engine
