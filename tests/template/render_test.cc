// Unit tests of the template engine: one group per language feature, checked against what
// Jinja2 (with Hugging Face's settings) renders for the same source.
#include <gtest/gtest.h>

#include <string>

#include "template/template.h"
#include "template/value.h"

namespace airlock::tmpl {
namespace {

Value Vars() {
  Value v = Value::Dict();
  Value msgs = Value::List();
  for (auto [role, content] :
       {std::pair{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}}) {
    Value m = Value::Dict();
    m.Set("role", Value::String(role));
    m.Set("content", Value::String(content));
    msgs.Append(m);
  }
  v.Set("messages", msgs);
  v.Set("name", Value::String("World"));
  v.Set("n", Value::Int(3));
  v.Set("items", Value::List({Value::Int(3), Value::Int(1), Value::Int(2)}));
  v.Set("nothing", Value::None());
  return v;
}

std::string R(const std::string& src, const Value& vars = Vars()) {
  auto t = Template::Parse(src);
  if (!t) return "PARSE ERROR: " + t.error().message();
  auto r = t->Render(vars);
  if (!r) return "RENDER ERROR: " + r.error().message();
  return r->text;
}

StatusCode Code(const std::string& src, const Value& vars = Vars()) {
  auto t = Template::Parse(src);
  if (!t) return t.error().code();
  auto r = t->Render(vars);
  return r ? StatusCode::kOk : r.error().code();
}

TEST(Render, TextAndOutput) {
  EXPECT_EQ(R("Hello {{ name }}!"), "Hello World!");
  EXPECT_EQ(R("{{ 1 + 2 }} {{ 7 // 2 }} {{ 7 / 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ -7 // 2 }}"),
            "3 3 3.5 1 1024 -4");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none }}"), "a1None");
  EXPECT_EQ(R("{{ nothing }}|{{ undefined_var }}|{{ true }}|{{ 1.0 }}|{{ 1e-5 }}"),
            "None||True|1.0|1e-05");
  EXPECT_EQ(R("{{ [1, 'a', none, true] }} {{ {'k': 'v'} }}"), "[1, 'a', None, True] {'k': 'v'}");
  EXPECT_EQ(R("{{ 'x' if n > 2 else 'y' }}{{ 'x' if n > 5 else 'y' }}{{ 'z' if false }}"), "xy");
}

TEST(Render, Comments) { EXPECT_EQ(R("a{# comment {{ x }} #}b"), "ab"); }

TEST(Render, WhitespaceControl) {
  EXPECT_EQ(R("a  {{- name -}}  b"), "aWorldb");
  EXPECT_EQ(R("a\n  {%- if true %} x {% endif -%}\n b"), "a x b");
  // trim_blocks removes the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(R("{% if true %}\n  yes\n  {% endif %}\nend"), "  yes\nend");
  EXPECT_EQ(R("{% for i in items %}\n{{ i }}\n{% endfor %}\n"), "3\n1\n2\n");
  // "+" disables lstrip_blocks for that tag.
  EXPECT_EQ(R("x\n  {%+ if true %}y{% endif %}"), "x\n  y");
  // One trailing newline is dropped (keep_trailing_newline=False).
  EXPECT_EQ(R("abc\n"), "abc");
  EXPECT_EQ(R("abc\n\n"), "abc\n");
  // Expression tags are not affected by trim_blocks.
  EXPECT_EQ(R("{{ n }}\nx"), "3\nx");
}

TEST(Render, IfElifElse) {
  EXPECT_EQ(R("{% if n == 1 %}one{% elif n == 3 %}three{% else %}other{% endif %}"), "three");
  EXPECT_EQ(R("{% if nothing %}a{% else %}b{% endif %}"), "b");
  EXPECT_EQ(R("{% if not missing is defined %}undef{% endif %}"), "undef");
  EXPECT_EQ(R("{% if n > 1 and n < 5 or false %}in{% endif %}"), "in");
}

TEST(Render, ForLoop) {
  EXPECT_EQ(R("{% for i in items %}{{ loop.index }}:{{ i }}{% if not loop.last %},{% endif %}{% "
              "endfor %}"),
            "1:3,2:1,3:2");
  EXPECT_EQ(R("{% for i in items %}{{ loop.index0 }}{{ loop.first }}{{ loop.length }}{{ "
              "loop.revindex }} {% endfor %}"),
            "0True33 1False32 2False31 ");
  EXPECT_EQ(R("{% for i in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for i in items if i > 1 %}{{ i }}{{ loop.length }}{% endfor %}"), "3222");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  EXPECT_EQ(R("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}"), "ab");
  EXPECT_EQ(R("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% "
              "break %}{% endif %}{{ i }}{% endfor %}"),
            "013");
  EXPECT_EQ(R("{% for m in messages %}{{ m.role[0] }}{{ m['content'] }}|{% endfor %}"),
            "sBe brief.|uHi|aHello!|");
  EXPECT_EQ(R("{% for i in items %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "aba");
  EXPECT_EQ(R("{% for i in items %}{{ loop.previtem|default('-') }}{% endfor %}"), "-31");
  // Assignments inside a loop do not leak out of it.
  EXPECT_EQ(R("{% set x = 1 %}{% for i in items %}{% set x = i %}{% endfor %}{{ x }}"), "1");
}

TEST(Render, SetAndNamespace) {
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(R("{% set ns = namespace(count=0) %}{% for i in items %}{% set ns.count = ns.count + i "
              "%}{% endfor %}{{ ns.count }}"),
            "6");
  EXPECT_EQ(R("{% set block %}  inner {{ n }}{% endset %}[{{ block }}]"), "[  inner 3]");
  EXPECT_EQ(R("{% set block | upper %}abc{% endset %}{{ block }}"), "ABC");
  EXPECT_EQ(Code("{% set d = {} %}{% set d.x = 1 %}"), StatusCode::kInvalidArgument);
}

TEST(Render, MacroAndCall) {
  EXPECT_EQ(R("{% macro greet(who, punct='!') %}Hi {{ who }}{{ punct }}{% endmacro %}{{ greet('A') "
              "}} {{ greet('B', punct='?') }}"),
            "Hi A! Hi B?");
  EXPECT_EQ(R("{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}inside {{ n }}{% "
              "endcall %}"),
            "[inside 3]");
  EXPECT_EQ(R("{% filter upper %}abc {{ name }}{% endfilter %}"), "ABC WORLD");
}

TEST(Render, Literals) {
  EXPECT_EQ(R("{{ (1, 2)[1] }}{{ [1, 2, 3][-1] }}{{ {'a': {'b': 5}}.a.b }}{{ 'ab' 'cd' }}"),
            "23"
            "5abcd");
  EXPECT_EQ(R("{{ '\\x41\\u00e9\\n'|length }}"), "3");
  EXPECT_EQ(R("{{ 1_000 + 0.5 }}"), "1000.5");
}

TEST(Render, Tests) {
  EXPECT_EQ(
      R("{{ n is number }}{{ name is string }}{{ items is sequence }}{{ messages[0] is mapping }}"),
      "TrueTrueTrueTrue");
  EXPECT_EQ(
      R("{{ nothing is none }}{{ nothing is not none }}{{ x is undefined }}{{ n is defined }}"),
      "TrueFalseTrueTrue");
  EXPECT_EQ(R("{{ true is true }}{{ false is false }}{{ 0 is false }}{{ true is boolean }}{{ items "
              "is iterable }}"),
            "TrueTrueFalseTrueTrue");
  EXPECT_EQ(R("{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 3 is odd }}{{ 'a' is in 'abc' }}"),
            "TrueTrueTrueTrue");
}

TEST(Render, Operators) {
  EXPECT_EQ(
      R("{{ 'b' in 'abc' }}{{ 'x' not in 'abc' }}{{ 1 in items }}{{ 'role' in messages[0] }}"),
      "TrueTrueTrueTrue");
  EXPECT_EQ(R("{{ 'a' + 'b' }}{{ [1] + [2] }}{{ '-' * 3 }}{{ 1 == 1.0 }}{{ 'a' < 'b' }}"),
            "ab[1, 2]---TrueTrue");
  EXPECT_EQ(Code("{{ 'a' + 1 }}"), StatusCode::kInvalidArgument);
  EXPECT_EQ(Code("{{ 1 // 0 }}"), StatusCode::kInvalidArgument);
  EXPECT_EQ(Code("{{ 9223372036854775807 + 1 }}"), StatusCode::kInvalidArgument);
}

TEST(Render, SubscriptAndSlice) {
  EXPECT_EQ(R("{{ items[1:] }}{{ items[::-1] }}{{ items[:-1] }}{{ items[::2] }}"),
            "[1, 2][2, 1, 3][3, 1][3, 2]");
  EXPECT_EQ(R("{{ 'hello'[1:3] }}{{ 'hello'[::-1] }}{{ 'héllo'[1] }}{{ 'héllo'[:2] }}"),
            "elollehéhé");
  EXPECT_EQ(R("{{ messages[1:]|length }}{{ messages[-1].content }}{{ items[10] is undefined }}"),
            "2Hello!True");
}

TEST(Render, Undefined) {
  EXPECT_EQ(R("[{{ missing }}]{{ missing|default('d') }}{{ messages[0].nope is defined }}"),
            "[]dFalse");
  EXPECT_EQ(R("{% for x in missing %}x{% endfor %}{{ missing|length }}"), "0");
  // Attribute of an undefined value is an error, like Jinja's default Undefined.
  EXPECT_EQ(Code("{{ missing.attr }}"), StatusCode::kInvalidArgument);
  EXPECT_EQ(Code("{{ messages[0].nope.deeper }}"), StatusCode::kInvalidArgument);
  EXPECT_EQ(Code("{{ missing + 1 }}"), StatusCode::kInvalidArgument);
}

TEST(Render, Filters) {
  EXPECT_EQ(R("{{ '  a b  '|trim }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}|{{ 'hello world'|title "
              "}}|{{ 'hELLO'|capitalize }}"),
            "a b|ABC|abc|Hello World|Hello");
  EXPECT_EQ(
      R("{{ items|length }}{{ 'héllo'|length }}{{ items|count }}{{ items|first }}{{ items|last }}"),
      "35332");
  EXPECT_EQ(R("{{ items|join(', ') }}|{{ items|sort|list }}|{{ items|sort(reverse=true)|join }}|{{ "
              "items|reverse|list }}"),
            "3, 1, 2|[1, 2, 3]|321|[2, 1, 3]");
  EXPECT_EQ(R("{{ 'aXbX'|replace('X', '-') }}{{ 'abc'|replace('b', 'B', 1) }}"), "a-b-aBc");
  EXPECT_EQ(R("{{ '3'|int + 1 }}{{ 'x'|int }}{{ '2.5'|float }}{{ -3|abs }}{{ 2.567|round(2) }}{{ "
              "2.5|round }}{{ 3|string }}"),
            "402.532.573.03");
  EXPECT_EQ(R("{{ [1, 2, 1, 3]|unique|list }}{{ ['B', 'a', 'c']|sort|join }}{{ 'one two  "
              "three'|wordcount }}"),
            "[1, 2, 3]aBc3");
  EXPECT_EQ(R("{{ messages|map(attribute='role')|join(',') }}"), "system,user,assistant");
  EXPECT_EQ(
      R("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|first }}"),
      "Hi");
  EXPECT_EQ(R("{{ messages|rejectattr('role', 'eq', 'system')|list|length }}"), "2");
  EXPECT_EQ(R("{{ [0, 1, none, 2]|select|list }}{{ [1, 2, 3, 4]|reject('even')|list }}"),
            "[1, 2][1, 3]");
  EXPECT_EQ(R("{{ ['a', 'b']|map('upper')|join }}"), "AB");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2}|items|list }}{{ {'b': 1, 'a': 2}|dictsort }}"),
            "[['b', 1], ['a', 2]][['a', 2], ['b', 1]]");
  EXPECT_EQ(R("{{ '<a>'|escape }}{{ '<a>'|safe }}"), "&lt;a&gt;<a>");
  EXPECT_EQ(R("{{ 'a\nb\n\nc'|indent(2) }}"), "a\n  b\n\n  c");
  EXPECT_EQ(R("{{ 'a\nb'|indent(2, true) }}"), "  a\n  b");
  EXPECT_EQ(R("{{ none|default('x', true) }}{{ ''|d('y', true) }}{{ 0|default(5) }}"), "xy0");
  EXPECT_EQ(R("{{ [1, 2, 3]|sum }}{{ [3, 1]|min }}{{ [3, 1]|max }}{{ 'abcdefghij'|truncate(7) }}"),
            "613abcd...");
  EXPECT_EQ(Code("{{ 1|nosuchfilter }}"), StatusCode::kInvalidArgument);
}

TEST(Render, ToJson) {
  EXPECT_EQ(R("{{ {'a': [1, 2.5, true, none], 'b': 'x\"y<'}|tojson }}"),
            "{\"a\": [1, 2.5, true, null], \"b\": \"x\\\"y<\"}");
  EXPECT_EQ(R("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
  EXPECT_EQ(R("{{ 'é\n'|tojson }}"), "\"é\\n\"");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}"), "{\"a\": 2, \"b\": 1}");
  EXPECT_EQ(Code("{{ missing|tojson }}"), StatusCode::kInvalidArgument);
}

TEST(Render, StringMethods) {
  EXPECT_EQ(R("{{ '  x  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\n\nx\n'.lstrip('\n') }}|{{ 'x  "
              "'.rstrip() }}"),
            "x|a|x\n|x");
  EXPECT_EQ(R("{{ 'a</think>b'.split('</think>')[-1] }}{{ 'a b  c'.split() }}{{ 'a,b,c'.split(',', "
              "1) }}{{ 'a,b,c'.rsplit(',', 1) }}"),
            "b['a', 'b', 'c']['a', 'b,c']['a,b', 'c']");
  EXPECT_EQ(R("{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}{{ "
              "'abc'.replace('b', '') }}{{ 'ab'.upper() }}"),
            "TrueTrueacAB");
  EXPECT_EQ(R("{{ 'hello'.find('l') }}{{ 'hello'.count('l') }}{{ '-'.join(['a', 'b']) }}{{ "
              "'Ab'.lower() }}{{ 'ab cd'.title() }}"),
            "22a-babAb Cd");
}

TEST(Render, DictAndListMethods) {
  EXPECT_EQ(R("{% set d = {'a': 1} %}{{ d.get('a') }}{{ d.get('b') }}{{ d.get('b', 2) }}{{ "
              "d.keys()|list }}{{ d.values()|list }}"),
            "1None2['a'][1]");
  EXPECT_EQ(R("{% set l = [] %}{% for i in items %}{% do l.append(i * 2) %}{% endfor %}{{ l }}{{ "
              "l.append(0) }}{{ l|length }}"),
            "[6, 2, 4]None4");
  EXPECT_EQ(R("{% set ns = namespace(items=[]) %}{% set _ = ns.items.append('x') %}{{ ns.items }}"),
            "['x']");
  EXPECT_EQ(R("{{ dict(a=1, b='x') }}"), "{'a': 1, 'b': 'x'}");
}

TEST(Render, Globals) {
  EXPECT_EQ(R("{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ range(3, 0, -1)|list }}"),
            "[0, 1, 2][1, 3, 5][3, 2, 1]");
  auto t = Template::Parse("{{ strftime_now('%Y-%m-%d') }}");
  ASSERT_TRUE(t);
  RenderOptions opts;
  opts.now_unix_seconds = 1721995200;  // 2024-07-26 12:00 UTC: the same day in any zone
  auto r = t->Render(Value::Dict(), opts);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->text, "2024-07-26");
  auto e = Template::Parse("{{ raise_exception('Only user and assistant roles are supported!') }}");
  ASSERT_TRUE(e);
  auto er = e->Render(Value::Dict());
  ASSERT_FALSE(er);
  EXPECT_EQ(er.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(er.error().message().find("Only user and assistant roles are supported!"),
            std::string::npos);
}

TEST(Render, GenerationBlockAndRaw) {
  EXPECT_EQ(R("{% generation %}gen{% endgeneration %}"), "gen");
  EXPECT_EQ(R("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
}

TEST(Parse, SyntaxErrorsHaveOffsets) {
  for (const char* bad :
       {"{{ unclosed_bracket", "{% if x %}no end", "{% for %}", "{{ 1 + }}", "{% endif %}",
        "{{ 'unterminated }}", "{% unknown_tag %}", "{{ a | }}", "{# open comment"}) {
    auto t = Template::Parse(bad);
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().code(), StatusCode::kCorrupt) << bad;
    EXPECT_NE(t.error().message().find("at byte"), std::string::npos) << t.error().message();
  }
}

TEST(Parse, NestingIsCapped) {
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  auto t = Template::Parse(deep);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), StatusCode::kLimitExceeded);
  std::string chain = "{{ a";
  for (int i = 0; i < 5000; ++i) chain += ".b";
  chain += " }}";
  EXPECT_FALSE(Template::Parse(chain));
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  EXPECT_FALSE(Template::Parse(ifs));
}

}  // namespace
}  // namespace airlock::tmpl

namespace airlock::tmpl {
namespace {

TEST(Render, EdgeCasesFailOrSucceedCleanly) {
  EXPECT_EQ(R("{{ 'abc'[1::9223372036854775807] }}{{ 'abc'[::-9223372036854775807] }}"), "bc");
  EXPECT_EQ(R("{{ '' * 9223372036854775807 }}{{ ([] * 9223372036854775807)|length }}"), "0");
  EXPECT_EQ(R("{{ 'abc'.startswith(('x', 'a')) }}"), "True");
  EXPECT_EQ(Code("{{ 'abc'.startswith([['a']]) }}"), StatusCode::kInvalidArgument);
  EXPECT_EQ(Code("{{ range(9223372036854775807)|length }}"), StatusCode::kLimitExceeded);
}

}  // namespace
}  // namespace airlock::tmpl

namespace airlock::tmpl {
namespace {

TEST(Render, ToJsonOptions) {
  EXPECT_EQ(R("{{ {'a': 'é😀'}|tojson(ensure_ascii=true) }}"), "{\"a\": \"\\u00e9\\ud83d\\ude00\"}");
  EXPECT_EQ(R("{{ {'a': [1, 2]}|tojson(separators=(',', ':')) }}"), "{\"a\":[1,2]}");
  EXPECT_EQ(Code("{{ {'a': 1}|tojson(separators='x') }}"), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace airlock::tmpl

namespace airlock::tmpl {
namespace {

TEST(Render, PercentFormatting) {
  EXPECT_EQ(R("{{ '%s-%d-%.2f-%5s|%-3s|%x%%' % ('a', 7, 1.5, 'r', 'l', 255) }}"),
            "a-7-1.50-    r|l  |ff%");
  EXPECT_EQ(R("{{ '%(who)s is %(n)03d' % {'who': 'x', 'n': 5} }}"), "x is 005");
  EXPECT_EQ(R("{{ 'Hi %s!'|format(name) }}{{ '%s'|format([1]) }}"), "Hi World![1]");
  EXPECT_EQ(Code("{{ '%s %s' % ('a',) }}"), StatusCode::kInvalidArgument);
  EXPECT_EQ(Code("{{ '%s' % ('a', 'b') }}"), StatusCode::kInvalidArgument);
  EXPECT_EQ(Code("{{ '%(__class__)s' % {'a': 1} }}"), StatusCode::kPermissionDenied);
  EXPECT_EQ(Code("{{ '%q' % 1 }}"), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace airlock::tmpl
