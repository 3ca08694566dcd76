// String-literal escapes (issue #12, class 4): Jinja decodes a literal with Python's
// "unicode-escape" codec, so every spelling Python accepts must decode to the same text here
// before any check runs, and every spelling Python refuses must make the template fail to parse.
// Expected values were checked against CPython 3.11
// (`s.encode("ascii", "backslashreplace").decode("unicode-escape")`, what Jinja's lexer does).
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <string>

#include "scan/scan.h"
#include "template/analyze.h"
#include "template/template.h"
#include "template/value.h"

namespace airlock::tmpl {
namespace {

// What `{{ '<literal>' }}` renders to, or "PARSE ERROR".
std::string Literal(const std::string& body) {
  auto t = Template::Parse("{{ '" + body + "' }}");
  if (!t) return "PARSE ERROR";
  auto r = t->Render(Value::Dict());
  if (!r) return "RENDER ERROR: " + r.error().message();
  return r->text;
}

bool HasRule(const TemplateAnalysis& a, const std::string& rule) {
  return std::any_of(a.findings.begin(), a.findings.end(),
                     [&](const auto& f) { return f.rule_id == rule; });
}

TEST(LiteralEscapes, NamedCharacterEscapesDecodeLikePython) {
  EXPECT_EQ(Literal(R"(\N{LOW LINE})"), "_");
  EXPECT_EQ(Literal(R"(\N{low line})"), "_");                     // names match case-insensitively
  EXPECT_EQ(Literal(R"(\N{CJK UNIFIED IDEOGRAPH-4E2D})"), "中");  // algorithmic names
  EXPECT_EQ(Literal(R"(\N{HANGUL SYLLABLE GA})"), "가");
  EXPECT_EQ(Literal(R"(\N{LATIN CAPITAL LETTER GHA})"), "Ƣ");  // a corrected-name alias
}

TEST(LiteralEscapes, EveryNameAliasTypeDecodesLikePython) {
  // Control, abbreviation and figment aliases come from Debian's NameAliases.txt (ICU only knows
  // the corrected names).
  EXPECT_EQ(Literal(R"(\N{LINE FEED})"), "\n");
  EXPECT_EQ(Literal(R"(\N{SP})"), " ");
  EXPECT_EQ(Literal(R"(\N{byte order mark})"), "\xEF\xBB\xBF");
  EXPECT_EQ(Literal(R"(\N{NBSP})"), "\xC2\xA0");
}

TEST(LiteralEscapes, NumericEscapesDecodeLikePython) {
  EXPECT_EQ(Literal(R"(\x5f\u005F\U0001F600)"), "__😀");
  EXPECT_EQ(Literal(R"(\137)"), "_");
  EXPECT_EQ(Literal(R"(\47)"), "'");
  EXPECT_EQ(Literal(R"(\7)"), "\a");
  EXPECT_EQ(Literal(R"(\777)"), "ǿ");  // octal above \377 is still accepted
  EXPECT_EQ(Literal(R"(a\
b)"),
            "ab");  // line continuation
}

TEST(LiteralEscapes, UnknownEscapesStayVerbatimAsInPython) {
  EXPECT_EQ(Literal(R"(\q)"), "\\q");
  // Jinja backslash-replaces non-ASCII characters before decoding, so "\é" becomes "\xe9".
  EXPECT_EQ(Literal("\\é"), "\\xe9");
  EXPECT_EQ(Literal("\\中"), "\\u4e2d");
}

TEST(LiteralEscapes, EscapesPythonRefusesFailToParse) {
  for (const char* bad : {R"(\N{NO SUCH NAME})", R"(\N{})", R"(\N{LOW LINE)", R"(\N)", R"(\x5)",
                          R"(\u12)", R"(\U00110000)", R"(\N{<control-0041>})"}) {
    EXPECT_EQ(Literal(bad), "PARSE ERROR") << bad;
  }
  // A lone surrogate is accepted by Python but cannot be carried in UTF-8: refuse it too.
  EXPECT_EQ(Literal(R"(\ud800)"), "PARSE ERROR");
  // The name must end inside its own literal.
  EXPECT_EQ(Literal(R"(\N{LOW' ~ 'LINE})"), "PARSE ERROR");
}

TEST(LiteralEscapes, NamedEscapeDunderBypassIsFlagged) {
  // '\N{LOW LINE}\N{LOW LINE}class\N{LOW LINE}\N{LOW LINE}' reaches __class__.
  auto a =
      AnalyzeTemplate(R"({{ messages['\N{LOW LINE}\N{LOW LINE}class\N{LOW LINE}\N{LOW LINE}'] }})");
  ASSERT_TRUE(a.parsed) << a.parse_error;
  EXPECT_TRUE(HasRule(a, "template.dunder-access"));
  EXPECT_TRUE(HasRule(a, "template.obfuscation"));
  // The same through a filter's attribute name and through octal / two-digit forms.
  EXPECT_TRUE(HasRule(AnalyzeTemplate(R"({{ messages|map(attribute='\N{LOW LINE}\137x')|list }})"),
                      "template.attr-gadget"));
  EXPECT_TRUE(
      HasRule(AnalyzeTemplate(R"({{ x['\137\137globals\137\137'] }})"), "template.dunder-access"));
  // Rendering refuses it as well.
  auto t =
      Template::Parse(R"({{ messages['\N{LOW LINE}\N{LOW LINE}class\N{LOW LINE}\N{LOW LINE}'] }})");
  ASSERT_TRUE(t);
  Value vars = Value::Dict();
  vars.Set("messages", Value::List());
  EXPECT_FALSE(t->Render(vars));
}

TEST(LiteralEscapes, ScannerCallsNamedEscapeDunderMaliciousAndBadEscapeInconclusive) {
  auto scan_text = [](const std::string& text) {
    return scan::ScanBuffer(std::as_bytes(std::span<const char>(text.data(), text.size())),
                            "chat_template.jinja", {});
  };
  auto bypass =
      scan_text(R"({{ messages['\N{LOW LINE}\N{LOW LINE}class\N{LOW LINE}\N{LOW LINE}'] }})");
  EXPECT_EQ(bypass.verdict, scan::Verdict::kMalicious);
  auto undecodable = scan_text(R"({% for m in messages %}{{ m['\N{NOT A NAME}'] }}{% endfor %})");
  EXPECT_EQ(undecodable.verdict, scan::Verdict::kInconclusive);
}

}  // namespace
}  // namespace airlock::tmpl
