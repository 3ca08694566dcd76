// Subscript keys and attribute names the template computes (red team: ''[k] with k='__class__'
// kept in a variable scanned clean). Real Jinja reads obj[key] as getattr(obj, key) when the item
// lookup fails, so every string the template can give a key counts as if written there. Each
// payload below reaches <class 'str'> in real jinja2; each must make the verdict malicious.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "template/analyze.h"

namespace airlock::tmpl {
namespace {

FindingSeverity MaxSeverity(const TemplateAnalysis& a) {
  FindingSeverity m = FindingSeverity::kInfo;
  for (const auto& f : a.findings) m = std::max(m, f.severity);
  return m;
}

std::string Rules(const TemplateAnalysis& a) {
  std::string s;
  for (const auto& f : a.findings) s += f.rule_id + " (" + f.message + "); ";
  return s;
}

// High or critical: the scanner's malicious verdict.
void ExpectMalicious(const std::string& source) {
  TemplateAnalysis a = AnalyzeTemplate(source);
  EXPECT_TRUE(a.parsed) << source << ": " << a.parse_error;
  EXPECT_GE(MaxSeverity(a), FindingSeverity::kHigh) << source << "\n" << Rules(a);
}

void ExpectNothingAboveInfo(const std::string& source) {
  TemplateAnalysis a = AnalyzeTemplate(source);
  EXPECT_TRUE(a.parsed) << source << ": " << a.parse_error;
  EXPECT_LE(MaxSeverity(a), FindingSeverity::kInfo) << source << "\n" << Rules(a);
}

// The red team's variants, one test each.
TEST(ComputedKey, SetVariableHoldsDunderName) {
  ExpectMalicious("{% set k='__class__' %}{{ ''[k] }}");
  // The literal case names the attribute; so does the variable case.
  TemplateAnalysis a = AnalyzeTemplate("{% set k='__class__' %}{{ ''[k] }}");
  EXPECT_EQ(MaxSeverity(a), FindingSeverity::kCritical) << Rules(a);
}

TEST(ComputedKey, LoopOverLiteralList) {
  ExpectMalicious("{% for k in ['__class__'] %}{{ ''[k] }}{% endfor %}");
}

TEST(ComputedKey, MacroArgument) {
  ExpectMalicious("{% macro m(k) %}{{ ''[k] }}{% endmacro %}{{ m('__class__') }}");
}

TEST(ComputedKey, DictValueByAttribute) {
  ExpectMalicious("{% set d = {'a':'__class__'} %}{{ ''[d.a] }}");
}

TEST(ComputedKey, NamespaceAttribute) {
  ExpectMalicious("{% set ns = namespace(k='__class__') %}{{ ''[ns.k] }}");
}

TEST(ComputedKey, FirstOfLiteralList) { ExpectMalicious("{{ ''[['__class__']|first] }}"); }

TEST(ComputedKey, TupleItem) { ExpectMalicious("{{ ''[('__class__',)[0]] }}"); }

TEST(ComputedKey, BlockSet) { ExpectMalicious("{% set x %}__class__{% endset %}{{ ''[x] }}"); }

TEST(ComputedKey, ReversedSlice) { ExpectMalicious("{{ ''['__ssalc__'[::-1]] }}"); }

TEST(ComputedKey, DefaultFilter) { ExpectMalicious("{{ ''[(None|default('__class__'))] }}"); }

TEST(ComputedKey, PercentCharCodeFormatting) {
  // No '_' in the source at all: '%c' % 95 writes it.
  ExpectMalicious("{% set k = '%c%cclass%c%c' % (95,95,95,95) %}{{ ''[k] }}");
  ExpectMalicious("{% set k = '%c%cclass%c%c'|format(95,95,95,95) %}{{ ''[k] }}");
  ExpectMalicious("{{ ''['%c%cclass%c%c' % (95,95,95,95)] }}");
}

// Variants found while attacking the fix.
TEST(ComputedKey, ListAppendedThroughDo) {
  ExpectMalicious("{% set l = [] %}{% do l.append('__class__') %}{{ ''[l|first] }}");
}

TEST(ComputedKey, MacroOutput) {
  ExpectMalicious("{% macro m() %}__class__{% endmacro %}{% set k = m() %}{{ ''[k] }}");
  ExpectMalicious(
      "{% macro u() %}_{% endmacro %}{% set k = u() ~ u() ~ 'class' ~ u() ~ u() %}{{ ''[k] }}");
}

TEST(ComputedKey, ReplaceSpellsUnderscores) {
  ExpectMalicious("{% set k = 'xxclassxx'|replace('x','_') %}{{ ''[k] }}");
  ExpectMalicious("{% set k = 'xxclassxx'.replace('x','_') %}{{ ''[k] }}");
}

TEST(ComputedKey, DictKeywordNames) {
  ExpectMalicious("{% set ks = dict(__class__=1) %}{{ ''[ks|first] }}");
}

TEST(ComputedKey, JoinedPieces) {
  ExpectMalicious("{% set k = ['__cl','ass__']|join %}{{ ''[k] }}");
  ExpectMalicious("{% set k = '_'.join(['','','class','','']) %}{{ ''[k] }}");
}

TEST(ComputedKey, CharactersOfAStringInALoop) {
  // Iterating a string yields its characters: c can be '_'.
  ExpectMalicious(
      "{% for c in 'ab_' %}{% set k = c ~ c ~ 'class' ~ c ~ c %}{{ ''[k] }}{% endfor %}");
}

TEST(ComputedKey, StringGrownInALoop) {
  ExpectMalicious(
      "{% set ns = namespace(k='') %}{% for i in range(2) %}{% set ns.k = ns.k ~ '_' %}"
      "{% endfor %}{% set k = ns.k ~ 'class' ~ ns.k %}{{ ''[k] }}");
}

TEST(ComputedKey, CallerArgumentsAndOutput) {
  ExpectMalicious(
      "{% macro m() %}{{ caller('__class__') }}{% endmacro %}{% call(k) m() %}{{ ''[k] }}"
      "{% endcall %}");
  ExpectMalicious(
      "{% macro m() %}{{ ''[caller()] }}{% endmacro %}{% call m() %}__class__{% endcall %}");
}

TEST(ComputedKey, MacroKeywordAndExtraArguments) {
  ExpectMalicious("{% macro m(a, k='x') %}{{ ''[k] }}{% endmacro %}{{ m(1, k='__class__') }}");
  ExpectMalicious("{% macro m() %}{{ ''[varargs[0]] }}{% endmacro %}{{ m('__class__') }}");
  ExpectMalicious("{% macro m(k='__class__') %}{{ ''[k] }}{% endmacro %}{{ m() }}");
}

TEST(ComputedKey, MacroCalledThroughAnotherName) {
  // The arguments reach the macro's parameters whichever name the call uses.
  ExpectMalicious(
      "{% macro m(k) %}{{ ''[k] }}{% endmacro %}{% macro n(f) %}{{ f('__class__') }}{% endmacro %}"
      "{{ n(m) }}");
  ExpectMalicious(
      "{% macro m(k) %}{{ ''[k] }}{% endmacro %}{% set ns = namespace(f=m) %}"
      "{{ ns.f('__class__') }}");
  ExpectMalicious("{% macro m(k) %}{{ ''[k] }}{% endmacro %}{{ [m][0]('__class__') }}");
}

TEST(ComputedKey, LoopCycleAndPrevitem) {
  ExpectMalicious("{% for m in messages %}{{ ''[loop.cycle('__class__', 'a')] }}{% endfor %}");
  ExpectMalicious("{% for k in ['a', '__class__'] %}{{ ''[loop.previtem] }}{% endfor %}");
}

TEST(ComputedKey, CaseAndWhitespaceFilters) {
  ExpectMalicious("{{ ''[' __class__ '|trim] }}");
  ExpectMalicious("{% set k = 'xx__class__'|trim('x') %}{{ ''[k] }}");
  ExpectMalicious("{{ ''['__CLASS__'|lower] }}");
  ExpectMalicious("{{ ''['x__class__'[1:]] }}");
  ExpectMalicious("{% set n = 1 %}{{ ''['x__class__'[n:]] }}");
}

TEST(ComputedKey, CharactersTakenFromRuntimeData) {
  // A '_' cut out of the conversation's own keys (tool_calls), glued to 'class'.
  ExpectMalicious(
      "{% set u = (messages[0]|list|last)[4] %}{% set k = u ~ u ~ 'class' ~ u ~ u %}"
      "{{ ''[k] }}");
}

TEST(ComputedKey, FunctionReprSpellsUnderscore) {
  // str(raise_exception) is "<function ... raise_exception ...>".
  ExpectMalicious("{% set s = raise_exception|string %}{{ ''[s[20:30]] }}");
}

TEST(ComputedKey, PublicMethodReachedThroughAComputedKeyAndCalled) {
  ExpectMalicious("{% set k = 'format' %}{{ ''[k]('{0.__class__}', 1) }}");
}

TEST(ComputedKey, CallOfAVariableHoldingABoundMethod) {
  ExpectMalicious("{% set f = '{0.__class__}'.format %}{{ f('') }}");
  ExpectMalicious("{% set f = ''['format'] %}{{ f('{0.__class__}', 1) }}");
}

TEST(ComputedKey, AttributeFiltersWithComputedNames) {
  ExpectMalicious("{% set k = '__class__' %}{{ messages|map(attribute=k)|list }}");
  ExpectMalicious("{% set k = '__class__' %}{{ messages|selectattr(k)|list }}");
  ExpectMalicious("{% set k = '__class__' %}{{ messages|sort(attribute=k)|list }}");
  // Jinja's positional `attribute` parameters.
  ExpectMalicious("{{ messages|sum('__class__') }}");
  ExpectMalicious("{{ messages|join(',', '__class__') }}");
  ExpectMalicious("{{ messages|groupby('__class__')|list }}");
  ExpectMalicious("{{ messages|sort(false, false, '__class__')|list }}");
}

TEST(ComputedKey, NamesThatLookBenignButAreShadowed) {
  // A context variable the template overwrites is the template's own value.
  ExpectMalicious("{% set messages = ['__class__'] %}{{ ''[messages[0]] }}");
}

TEST(ComputedKey, KeywordArgumentNamesInKwargs) {
  ExpectMalicious(
      "{% macro m() %}{% for k in kwargs %}{{ ''[k] }}{% endfor %}{% endmacro %}"
      "{{ m(__class__=1) }}");
}

TEST(ComputedKey, TupleUnpackingInALoop) {
  ExpectMalicious("{% for k, v in [('__class__', 1)] %}{{ ''[k] }}{% endfor %}");
}

TEST(ComputedKey, StringRepetition) {
  ExpectMalicious("{% set k = '_' * 2 ~ 'class' ~ '_' * 2 %}{{ ''[k] }}");
}

TEST(ComputedKey, PiecesOfSerializedOrSplitText) {
  ExpectMalicious("{% set k = {'__class__':1}|tojson %}{{ ''[k[2:11]] }}");
  ExpectMalicious("{% set k = 'a,__class__'.split(',') %}{{ ''[k[1]] }}");
  ExpectMalicious("{% set k = 'x__class__'.lstrip('x') %}{{ ''[k] }}");
}

TEST(ComputedKey, PaddingAndTruncationFilters) {
  ExpectMalicious("{% set k = 'class'|center(9, '_') %}{{ ''[k] }}");
  ExpectMalicious("{% set k = 'x'|truncate(1, true, '__class__') %}{{ ''[k] }}");
}

TEST(ComputedKey, SliceOfAContainersText) {
  // str(['ab__class__']) is "['ab__class__']": its [4:13] is '__class__', not a slice of the item.
  ExpectMalicious("{% set k = ['ab__class__']|string %}{{ ''[k[4:13]] }}");
  ExpectMalicious("{% set k = ({'ab__class__': 1} ~ '') %}{{ ''[k[4:13]] }}");
  ExpectMalicious("{% set k = ['ab__class__']|replace('x', 'y') %}{{ ''[k[4:13]] }}");
}

TEST(ComputedKey, MethodReprSpellsUnderscore) {
  // str(''.format_map) is "<built-in method format_map of str object at ...>".
  ExpectMalicious("{% set k = ''.format_map|string %}{{ ''[k[20:30]] }}");
}

TEST(ComputedKey, BlockSetWithControlFlow) {
  ExpectMalicious("{% set k %}{% if true %}__class__{% endif %}{% endset %}{{ ''[k] }}");
}

TEST(ComputedKey, StrftimeCopiesItsFormat) {
  ExpectMalicious("{% set k = strftime_now('__class__') %}{{ ''[k] }}");
}

TEST(ComputedKey, ConditionalValueOnAListSubscript) {
  ExpectMalicious("{% set k = '__class__' if messages else 'x' %}{{ messages[k] }}");
}

TEST(ComputedKey, SetInsideAFilterBlock) {
  ExpectMalicious("{% filter upper %}{% set k='__class__' %}{% endfilter %}{{ ''[k] }}");
}

TEST(ComputedKey, WorkCapFailsClosed) {
  // Thousands of keys each built from 64 exact strings: past the work cap every computed key
  // counts as unknown, never as clean.
  std::string source = "{% set a = ['a','b','c','d','e','f','g','h'] %}";
  for (int i = 0; i < 4000; ++i) source += "{{ x[(a ~ a)|first ~ a] }}";
  TemplateAnalysis r = AnalyzeTemplate(source);
  bool capped = false;
  for (const auto& f : r.findings)
    capped |= f.rule_id == "template.computed-attribute" &&
              f.message.find("too costly") != std::string::npos;
  EXPECT_TRUE(capped) << Rules(r);
  EXPECT_GE(MaxSeverity(r), FindingSeverity::kHigh);
}

// What must stay clean: integer keys, benign keys from literals, keys from the conversation.
TEST(ComputedKey, IntegerAndBenignKeysStayClean) {
  ExpectNothingAboveInfo(
      "{% for m in messages %}{% if not loop.first %}{{ messages[loop.index0 - 1]['role'] }}"
      "{% endif %}{% endfor %}");
  ExpectNothingAboveInfo("{{ messages[(messages|length) - 1]['content'] }}");
  ExpectNothingAboveInfo(
      "{% set ns = namespace(i=0) %}{% for m in messages %}{% set ns.i = ns.i + 1 %}"
      "{% endfor %}{{ messages[ns.i - 1]['content'] }}");
  ExpectNothingAboveInfo(
      "{% for key in ['name', 'description', 'type'] %}{{ tools[0][key] }}{% endfor %}");
  ExpectNothingAboveInfo(
      "{% macro field(m, k) %}{{ m[k] }}{% endmacro %}{% for m in messages %}"
      "{{ field(m, 'content') }}{{ field(m, 'reasoning_content') }}{% endfor %}");
  ExpectNothingAboveInfo("{% set k = 'tool_calls' %}{{ messages[0][k]|length }}");
}

TEST(ComputedKey, KeysFromTheConversationKeepTodaysBehaviour) {
  // The conversation is not the template author's: a key taken from it is data.
  ExpectNothingAboveInfo(
      "{% set role_map = {'user': 'U', 'assistant': 'A'} %}{% for m in messages %}"
      "{{ role_map[m['role']] }}{% endfor %}");
  ExpectNothingAboveInfo(
      "{% for name, p in tools[0].parameters.properties|items %}"
      "{{ tools[0].parameters.properties[name].type }}{% endfor %}");
  ExpectNothingAboveInfo("{% set messages = messages[1:] %}{{ messages[0]['role'] }}");
  ExpectNothingAboveInfo(
      "{% set k = messages|selectattr('role')|map(attribute='role')|first %}{{ tools[0][k] }}");
}

TEST(ComputedKey, RecursiveMacroSettles) {
  // A recursive macro whose output grows every pass (Cohere's json_to_python_type) must settle
  // without flagging its data keys.
  ExpectNothingAboveInfo(
      "{% macro t(s) %}{% set m = {'string': 'str', 'integer': 'int'} %}"
      "{% if m[s.type] is defined %}{{ m[s.type] }}{% elif s.type == 'array' %}"
      "{{ 'List[' + t(s.items) + ']' }}{% endif %}{% endmacro %}"
      "{% for tool in tools %}{{ t(tool.parameters) }}{% endfor %}");
}

}  // namespace
}  // namespace airlock::tmpl
