// The JSON-Schema-to-grammar compiler and its matcher (engine/grammar.h): documents accepted and
// refused byte by byte, UTF-8 split across pieces, token masks over hand-made vocabularies, and
// constrained generation on a real model (stories260K, which cannot follow instructions: the
// grammar alone must make its output valid).
#include "engine/grammar.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>

#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/tokenizer.h"
#include "test_util.h"

namespace airlock::engine {
namespace {

std::shared_ptr<const Grammar> Compile(const std::string& schema) {
  auto g = CompileJsonSchema(schema);
  EXPECT_TRUE(g.has_value()) << (g ? "" : g.error().ToString());
  return g ? *g : JsonObjectGrammar();
}

// Whether `doc` is a complete document of `g`, fed whole and also one byte at a time.
bool Matches(const std::shared_ptr<const Grammar>& g, const std::string& doc) {
  GrammarMatcher whole(g);
  const bool whole_ok = whole.Accept(doc) && whole.IsComplete();
  GrammarMatcher bytes(g);
  bool bytes_ok = true;
  for (char c : doc) bytes_ok = bytes_ok && bytes.Accept(std::string_view(&c, 1));
  bytes_ok = bytes_ok && bytes.IsComplete();
  EXPECT_EQ(whole_ok, bytes_ok) << doc;
  return whole_ok;
}

// Whether `doc` can still be continued (a valid prefix).
bool IsPrefix(const std::shared_ptr<const Grammar>& g, const std::string& doc) {
  GrammarMatcher m(g);
  return m.Accept(doc);
}

const char* kColorSchema = R"({
  "type": "object",
  "properties": {
    "color": {"enum": ["red", "green", "blue"]},
    "happy": {"type": "boolean"}
  },
  "required": ["color", "happy"]
})";

TEST(Grammar, ObjectWithEnumAndBoolean) {
  auto g = Compile(kColorSchema);
  EXPECT_TRUE(Matches(g, R"({"color":"red","happy":true})"));
  EXPECT_TRUE(Matches(g, R"({"color": "blue", "happy": false})"));
  EXPECT_FALSE(Matches(g, R"({"color":"pink","happy":true})"));
  EXPECT_FALSE(Matches(g, R"({"happy":true,"color":"red"})"));  // schema order
  EXPECT_FALSE(Matches(g, R"({"color":"red"})"));               // happy is required
  EXPECT_FALSE(Matches(g, R"({"color":"red","happy":true,"x":1})"));
  EXPECT_FALSE(Matches(g, R"({"color":"red","happy":1})"));
  EXPECT_TRUE(IsPrefix(g, R"({"color":"gr)"));
  EXPECT_FALSE(IsPrefix(g, R"({"color":"gx)"));
  EXPECT_FALSE(IsPrefix(g, R"( {)"));  // no leading blanks
  GrammarMatcher m(g);
  ASSERT_TRUE(m.Accept(R"({"color":"red","happy":true})"));
  EXPECT_TRUE(m.IsComplete());
  EXPECT_FALSE(m.CanContinue());  // nothing may follow a complete object
  EXPECT_FALSE(m.CanAccept(" "));
}

TEST(Grammar, OptionalPropertiesKeepOrderAndCommas) {
  auto g = Compile(R"({"type":"object","properties":{"a":{"type":"integer"},
    "b":{"type":"integer"},"c":{"type":"integer"}},"required":["a","c"]})");
  EXPECT_TRUE(Matches(g, R"({"a":1,"c":2})"));
  EXPECT_TRUE(Matches(g, R"({"a":1,"b":2,"c":3})"));
  EXPECT_FALSE(Matches(g, R"({"a":1,"c":2,"b":3})"));
  EXPECT_FALSE(Matches(g, R"({"a":1,,"c":2})"));
  EXPECT_FALSE(Matches(g, R"({"b":2,"c":3})"));
  auto all_optional = Compile(R"({"type":"object","properties":{"x":{"type":"null"},
    "y":{"type":"boolean"}}})");
  EXPECT_TRUE(Matches(all_optional, "{}"));
  EXPECT_TRUE(Matches(all_optional, R"({"y":false})"));
  EXPECT_TRUE(Matches(all_optional, R"({"x":null,"y":true})"));
  EXPECT_FALSE(Matches(all_optional, R"({,"y":true})"));
  EXPECT_FALSE(Matches(all_optional, R"({"x":null,})"));
}

TEST(Grammar, StringsWithEscapesAndUtf8) {
  auto g = Compile(R"({"type":"string"})");
  EXPECT_TRUE(Matches(g, R"("plain")"));
  EXPECT_TRUE(Matches(g, R"("q\"b\\s\/\b\f\n\r\t\u00e9\uD83D\uDE00")"));
  EXPECT_TRUE(Matches(g, "\"caf\xC3\xA9 \xF0\x9F\x98\x80\""));  // é and an emoji, raw UTF-8
  EXPECT_FALSE(Matches(g, R"("bad \x escape")"));
  EXPECT_FALSE(Matches(g, R"("\u12G4")"));
  EXPECT_FALSE(Matches(g, "\"raw\nnewline\""));
  EXPECT_FALSE(IsPrefix(g, "\"\xC0\x80"));      // overlong
  EXPECT_FALSE(IsPrefix(g, "\"\x80"));          // a lone continuation byte
  EXPECT_FALSE(IsPrefix(g, "\"\xED\xA0\x80"));  // a UTF-16 surrogate
  EXPECT_FALSE(IsPrefix(g, "\"\xF5"));          // beyond U+10FFFF
  // A sequence split across pieces: the lead byte alone is a valid prefix.
  GrammarMatcher m(g);
  ASSERT_TRUE(m.Accept("\"\xF0\x9F"));
  EXPECT_FALSE(m.IsComplete());
  EXPECT_FALSE(m.CanAccept("\""));  // the sequence must be finished first
  ASSERT_TRUE(m.Accept("\x98"));
  ASSERT_TRUE(m.Accept("\x80\""));
  EXPECT_TRUE(m.IsComplete());
}

TEST(Grammar, PartialUtf8MustBeCompletableByTheClass) {
  // Only ASCII letters allowed: a UTF-8 lead byte can never start a valid continuation.
  auto g = Compile(R"({"enum":["ab","a\u00e9"]})");
  EXPECT_TRUE(Matches(g, R"("ab")"));
  EXPECT_TRUE(Matches(g, "\"a\xC3\xA9\""));
  EXPECT_TRUE(IsPrefix(g, "\"a\xC3"));       // could become é
  EXPECT_FALSE(IsPrefix(g, "\"a\xE2"));      // three-byte characters are not in the enum
  EXPECT_FALSE(IsPrefix(g, "\"a\xC3\xA8"));  // è
}

TEST(Grammar, NumbersAndIntegers) {
  auto number = Compile(R"({"type":"number"})");
  for (const char* ok : {"0", "-0", "12", "3.25", "-1.5e+3", "2E-7", "1e9"}) {
    EXPECT_TRUE(Matches(number, ok)) << ok;
  }
  for (const char* bad : {"01", "1.", "+1", ".5", "1e", "--1", "NaN", "1.2.3"}) {
    EXPECT_FALSE(Matches(number, bad)) << bad;
  }
  auto integer = Compile(R"({"type":"integer"})");
  EXPECT_TRUE(Matches(integer, "-42"));
  EXPECT_FALSE(Matches(integer, "4.2"));
  GrammarMatcher m(integer);
  ASSERT_TRUE(m.Accept("12"));
  EXPECT_TRUE(m.IsComplete());
  EXPECT_TRUE(m.CanContinue());  // more digits may follow
  // Bounded digits: a model cannot loop on digits forever.
  EXPECT_FALSE(IsPrefix(integer, std::string(17, '7')));
}

TEST(Grammar, ArraysNestedObjectsConstAnyOfAndTypeLists) {
  auto g = Compile(R"({"type":"object","properties":{
      "tags":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":3},
      "owner":{"type":"object","properties":{"name":{"type":"string"},
               "kind":{"const":"person"}},"required":["name","kind"]},
      "note":{"type":["string","null"]},
      "id":{"anyOf":[{"type":"integer"},{"type":"string","maxLength":4}]}},
    "required":["tags","owner","note","id"]})");
  EXPECT_TRUE(
      Matches(g, R"({"tags":["a"],"owner":{"name":"x","kind":"person"},"note":null,"id":7})"));
  EXPECT_TRUE(Matches(
      g, R"({"tags":["a", "b","c"],"owner":{"name":"","kind":"person"},"note":"n","id":"abcd"})"));
  EXPECT_FALSE(
      Matches(g, R"({"tags":[],"owner":{"name":"x","kind":"person"},"note":null,"id":7})"));
  EXPECT_FALSE(Matches(
      g, R"({"tags":["a","b","c","d"],"owner":{"name":"x","kind":"person"},"note":null,"id":7})"));
  EXPECT_FALSE(
      Matches(g, R"({"tags":["a"],"owner":{"name":"x","kind":"robot"},"note":null,"id":7})"));
  EXPECT_FALSE(Matches(
      g, R"({"tags":["a"],"owner":{"name":"x","kind":"person"},"note":null,"id":"abcde"})"));
}

TEST(Grammar, RecursiveRefAndDefinitions) {
  auto g = Compile(R"({"$defs":{"node":{"type":"object","properties":{
      "v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},
      "required":["v","kids"]}},"$ref":"#/$defs/node"})");
  EXPECT_TRUE(Matches(g, R"({"v":1,"kids":[]})"));
  EXPECT_TRUE(
      Matches(g, R"({"v":1,"kids":[{"v":2,"kids":[{"v":3,"kids":[]}]},{"v":4,"kids":[]}]})"));
  EXPECT_FALSE(Matches(g, R"({"v":1,"kids":[{"v":2}]})"));
}

TEST(Grammar, LeftRecursiveRefIsRefused) {
  for (const char* schema : {R"({"$ref":"#"})", R"({"anyOf":[{"$ref":"#"},{"type":"null"}]})",
                             R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},
                                 "$ref":"#/$defs/a"})"}) {
    auto g = CompileJsonSchema(schema);
    ASSERT_FALSE(g.has_value()) << schema;
    EXPECT_EQ(g.error().code(), StatusCode::kUnsupported);
    EXPECT_NE(g.error().message().find("left recursion"), std::string::npos);
  }
}

TEST(Grammar, JsonObjectModeAcceptsAnyObjectOnly) {
  auto g = JsonObjectGrammar();
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(g, "{}"));
  EXPECT_TRUE(Matches(g, R"({"a":[1,{"b":null},"x",-2.5e3,true],"c":{"d":{}}})"));
  EXPECT_FALSE(Matches(g, "[1]"));
  EXPECT_FALSE(Matches(g, R"("text")"));
  EXPECT_FALSE(Matches(g, R"({"a":})"));
  EXPECT_FALSE(Matches(g, R"({a:1})"));
}

TEST(Grammar, UnsupportedKeywordsNameTheKeywordAndPlace) {
  auto g = CompileJsonSchema(
      R"({"type":"object","properties":{"name":{"type":"string","pattern":"^a"}}})");
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error().code(), StatusCode::kUnsupported);
  EXPECT_NE(g.error().message().find("'pattern'"), std::string::npos) << g.error().message();
  EXPECT_NE(g.error().message().find("/properties/name"), std::string::npos);
  for (const char* schema :
       {R"({"type":"integer","minimum":1})", R"({"type":"object","properties":{},
           "additionalProperties":true})",
        R"({"allOf":[{"type":"null"},{"type":"null"}]})", R"({"$ref":"http://example.com/s.json"})",
        R"({"type":"date"})", "false"}) {
    auto r = CompileJsonSchema(schema);
    ASSERT_FALSE(r.has_value()) << schema;
    EXPECT_EQ(r.error().code(), StatusCode::kUnsupported) << r.error().ToString();
  }
  for (const char* schema : {"", "{", "[]", "42", R"({"enum":[]})", R"({"type":7})",
                             R"({"$ref":"#/nowhere"})", R"({"type":"array","minItems":-1})",
                             R"({"type":"object","properties":{},"required":"a"})"}) {
    auto r = CompileJsonSchema(schema);
    ASSERT_FALSE(r.has_value()) << schema;
  }
}

TEST(Grammar, HostileSchemasAreBounded) {
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += R"({"type":"array","items":)";
  deep += "{}";
  for (int i = 0; i < 100; ++i) deep += "}";
  EXPECT_FALSE(CompileJsonSchema(deep).has_value());
  std::string huge = R"({"enum":[)";
  for (int i = 0; i <= 10'000; ++i) huge += (i ? "," : "") + std::to_string(i);
  huge += "]}";
  EXPECT_FALSE(CompileJsonSchema(huge).has_value());
  EXPECT_FALSE(CompileJsonSchema(R"({"type":"array","maxItems":100000})").has_value());
  const std::string long_value(100'000, 'z');
  const auto too_much_text = CompileJsonSchema(R"({"enum":[")" + long_value + "1\",\"" +
                                               long_value + "2\",\"" + long_value + "3\"]}");
  ASSERT_FALSE(too_much_text.has_value());
  EXPECT_NE(too_much_text.error().message().find("256 KiB"), std::string::npos);
  // A large enum that is allowed stays one trie: a value far down the list matches.
  std::string big = R"({"enum":[)";
  for (int i = 0; i < 5'000; ++i) big += (i ? ",\"v" : "\"v") + std::to_string(i) + "\"";
  big += "]}";
  auto g = Compile(big);
  EXPECT_TRUE(Matches(g, "\"v4999\""));
  EXPECT_TRUE(Matches(g, "\"v0\""));
  EXPECT_FALSE(Matches(g, "\"v5000\""));
  // Deep documents of a recursive schema are cut at the matcher's stack limit, not a crash.
  auto any = Compile("{}");
  EXPECT_FALSE(IsPrefix(any, std::string(100'000, '[')));
  EXPECT_TRUE(IsPrefix(any, std::string(50, '[')));
}

TEST(Grammar, TextDumpNamesRules) {
  auto g = Compile(kColorSchema);
  const std::string text = GrammarToText(*g);
  EXPECT_NE(text.find("::="), std::string::npos);
  EXPECT_NE(text.find("kv-color"), std::string::npos);
}

// A byte-level BPE vocabulary of JSON pieces, a token holding the first byte of "é" ("Ã",
// byte 0xC3) and one holding its second ("©", 0xA9), a token spanning several grammar symbols,
// an end-of-sequence control token and a space-prefixed token. Every character the test schemas
// need can be spelled: the constraint does not look ahead for dead ends a vocabulary cannot leave.
Tokenizer ToyBpe() {
  Vocabulary v;
  v.kind = VocabKind::kBpe;
  v.tokens = {"{", "}",  "\"",   "a", "\":", "true", "false", "{\"a\":", ",", "Ã",
              "©", "Ġ{", "</s>", "b", "\"}", "1",    "x",     "[",       "]", ":"};
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.types[12] = TokenType::kControl;
  v.eos = 12;
  auto t = Tokenizer::FromVocabulary(v);
  EXPECT_TRUE(t.has_value()) << (t ? "" : t.error().ToString());
  return std::move(*t);
}

std::set<TokenId> AllowedSet(const TokenConstraint& c) {
  std::vector<char> allowed;
  c.Allowed(allowed);
  std::set<TokenId> s;
  for (std::size_t i = 0; i < allowed.size(); ++i) {
    if (allowed[i]) s.insert(static_cast<TokenId>(i));
  }
  return s;
}

TEST(TokenConstraint, MasksTokensThatCannotContinue) {
  Tokenizer tok = ToyBpe();
  auto g = Compile(R"({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]})");
  TokenConstraint c(g, tok);
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{0, 7}));  // "{" and "{\"a\":", never " {" or </s>
  ASSERT_TRUE(c.Accept(7));                             // one token, several grammar symbols
  // Only an opening quote: '"' alone, or '"' then string text (":" and "}" are text there).
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{2, 4, 14}));
  EXPECT_FALSE(c.Accept(1));  // refused tokens change nothing
  ASSERT_TRUE(c.Accept(2));
  // Inside the string: letters, the partial é, and the closing quote (alone or with "}").
  const std::set<TokenId> in_string = AllowedSet(c);
  EXPECT_TRUE(in_string.count(3) && in_string.count(9) && in_string.count(2) &&
              in_string.count(14));
  EXPECT_FALSE(in_string.count(10));  // a lone continuation byte
  EXPECT_FALSE(in_string.count(12));  // not complete: no end of sequence
  ASSERT_TRUE(c.Accept(9));           // 0xC3: only its continuation may follow
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{10}));
  ASSERT_TRUE(c.Accept(10));
  ASSERT_TRUE(c.Accept(14));
  EXPECT_TRUE(c.IsComplete());
  EXPECT_TRUE(c.MustEnd());
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{12}));  // only the end token
  EXPECT_EQ(c.end_token(), 12);
}

TEST(TokenConstraint, ByteFallbackTokensOfSentencePiece) {
  Vocabulary v;
  v.kind = VocabKind::kSpm;
  v.tokens = {"<unk>", "<s>", "</s>", "<0x22>", "<0xC3>", "<0xA9>", "▁x", "x", "<0x7B>"};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl,
             TokenType::kByte,    TokenType::kByte,    TokenType::kByte,
             TokenType::kNormal,  TokenType::kNormal,  TokenType::kByte};
  v.scores.assign(v.tokens.size(), 0.0f);
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  auto tok = Tokenizer::FromVocabulary(v);
  ASSERT_TRUE(tok.has_value()) << tok.error().ToString();
  TokenConstraint c(Compile(R"({"enum":["x\u00e9"]})"), *tok);
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{3}));  // <0x22> is '"'
  ASSERT_TRUE(c.Accept(3));
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{7}));  // "x", not "▁x" (" x")
  ASSERT_TRUE(c.Accept(7));
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{4}));
  ASSERT_TRUE(c.Accept(4));
  ASSERT_TRUE(c.Accept(5));
  ASSERT_TRUE(c.Accept(3));
  EXPECT_EQ(AllowedSet(c), (std::set<TokenId>{2}));
}

// Models pad their output rows beyond the tokenizer's vocabulary: those ids are never sampled
// under a constraint, however large their logits; and logprobs list only allowed tokens.
TEST(TokenConstraint, PaddedRowsAndForbiddenTokensAreNeverSampledOrListed) {
  Tokenizer tok = ToyBpe();
  const int padded = tok.vocab_size() + 5;
  SamplerOptions o;
  o.temperature = 0;
  Sampler s(o, padded);
  s.SetConstraint(std::make_unique<TokenConstraint>(Compile(R"({"type":"boolean"})"), tok));
  std::vector<float> logits(padded, 0.0f);
  for (int i = tok.vocab_size(); i < padded; ++i) logits[i] = 100.0f;
  logits[1] = 50.0f;  // "}" is likely but not allowed
  TokenLogprobs lp;
  const TokenId t = s.Sample(logits, 20, &lp);
  EXPECT_TRUE(t == 5 || t == 6) << t;  // "true" or "false"
  ASSERT_EQ(lp.top.size(), 2u);        // the only two possible tokens
  EXPECT_NEAR(std::exp(lp.top[0].logprob) + std::exp(lp.top[1].logprob), 1.0, 1e-6);
  EXPECT_EQ(s.Sample(logits), tok.eos());  // the document is complete
  // Text and bytes of each listed token, as OpenAI reports them.
  const LogprobEntry e = DescribeLogprobs(lp, tok);
  EXPECT_EQ(e.chosen.token, t == 5 ? "true" : "false");
  EXPECT_EQ(e.chosen.bytes.size(), e.chosen.token.size());
  ASSERT_EQ(e.top.size(), 2u);
  // Half of "é" (byte 0xC3): the text is U+FFFD, the bytes exact.
  const LogprobEntry half = DescribeLogprobs({9, -1.0f, {{10, -2.0f}}}, tok);
  EXPECT_EQ(half.chosen.token, "\xEF\xBF\xBD");
  EXPECT_EQ(half.chosen.bytes, std::vector<std::uint8_t>{0xC3});
  EXPECT_EQ(half.top[0].bytes, std::vector<std::uint8_t>{0xA9});
  EXPECT_EQ(half.top[0].logprob, -2.0f);
}

// Sampling random logits under the constraint always yields a document of the schema.
TEST(TokenConstraint, SamplerWithRandomLogitsProducesValidDocuments) {
  Tokenizer tok = ToyBpe();
  auto g = Compile(R"({"type":"object","properties":{"a":{"type":"boolean"},
    "b":{"type":"array","items":{"type":"integer"},"maxItems":4}},"required":["a"]})");
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SamplerOptions o;
    o.temperature = 1.0f;
    o.top_k = 0;
    o.top_p = 1.0f;
    o.min_p = 0;
    o.seed = seed;
    Sampler s(o, tok.vocab_size());
    s.SetConstraint(std::make_unique<TokenConstraint>(g, tok));
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(tok.vocab_size());
    std::string text;
    bool ended = false;
    for (int step = 0; step < 200 && !ended; ++step) {
      for (float& l : logits) l = normal(rng);
      const TokenId t = s.Sample(logits);
      ASSERT_NE(t, kNoToken) << text;
      if (tok.IsEog(t)) {
        ended = true;
      } else {
        text += tok.TokenPiece(t);
      }
    }
    ASSERT_TRUE(ended) << text;
    const auto j = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
    EXPECT_TRUE(j.at("a").is_boolean()) << text;
    if (j.contains("b")) {
      EXPECT_TRUE(j["b"].is_array()) << text;
    }
  }
}

// stories260K cannot follow instructions; the grammar alone must make the reply valid JSON of
// the schema, whatever the seed.
TEST(TokenConstraint, Stories260KAnswersInTheSchema) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  auto model = Model::Load((fixtures / "stories260K.gguf").string());
  ASSERT_TRUE(model.has_value()) << model.error().ToString();
  auto tok = Tokenizer::FromGguf((*model)->gguf());
  ASSERT_TRUE(tok.has_value());
  auto g = Compile(kColorSchema);
  SessionOptions so;
  so.n_threads = 2;
  so.n_ctx = 256;
  auto session = Session::Create(**model, so);
  ASSERT_TRUE(session.has_value());
  const auto prompt = tok->Encode("Once upon a time", /*add_special=*/true, false);
  for (std::uint64_t seed : {0ull, 1ull, 2ull, 3ull, 42ull}) {
    SamplerOptions o;
    o.temperature = seed == 0 ? 0.0f : 1.0f;  // greedy once, then sampled
    o.seed = seed;
    Sampler sampler(o, tok->vocab_size());
    sampler.SetConstraint(std::make_unique<TokenConstraint>(g, *tok));
    (*session)->Rewind(0);
    auto logits = (*session)->Eval(prompt);
    ASSERT_TRUE(logits.has_value());
    StreamDecoder decoder(*tok);
    std::string text;
    bool ended = false;
    for (int i = 0; i < 100; ++i) {
      const TokenId t = sampler.Sample(*logits);
      ASSERT_NE(t, kNoToken);
      if (tok->IsEog(t)) {
        ended = true;
        break;
      }
      text += decoder.Push(t);
      logits = (*session)->Eval(std::span<const TokenId>(&t, 1));
      ASSERT_TRUE(logits.has_value());
    }
    text += decoder.Flush();
    ASSERT_TRUE(ended) << "seed " << seed << ": " << text;
    const auto j = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
    ASSERT_TRUE(j.is_object()) << text;
    EXPECT_EQ(j.size(), 2u) << text;
    ASSERT_TRUE(j.contains("color") && j["color"].is_string()) << text;
    const std::string color = j["color"];
    EXPECT_TRUE(color == "red" || color == "green" || color == "blue") << text;
    EXPECT_TRUE(j.contains("happy") && j["happy"].is_boolean()) << text;
  }
}

}  // namespace
}  // namespace airlock::engine
