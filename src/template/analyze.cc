#include "template/analyze.h"

#include <algorithm>
#include <optional>
#include <set>
#include <unordered_set>

#include "core/text.h"
#include "template/internal/ast.h"
#include "template/internal/key_values.h"
#include "template/internal/prompt_text.h"
#include "template/internal/strings.h"
#include "template/registry.h"

namespace airlock::tmpl {
namespace {

using internal::Expr;
using internal::ExprKind;
using internal::Stmt;
using internal::StmtKind;
using S = FindingSeverity;

constexpr std::size_t kMaxFindings = 200;

const std::unordered_set<std::string> kContextVariables = {"messages",
                                                           "tools",
                                                           "add_generation_prompt",
                                                           "bos_token",
                                                           "eos_token",
                                                           "pad_token",
                                                           "unk_token",
                                                           "enable_thinking",
                                                           "custom_tools",
                                                           "tools_in_user_message",
                                                           "date_string",
                                                           "documents",
                                                           "builtin_tools",
                                                           "tool_choice",
                                                           "reasoning_effort",
                                                           "thinking",
                                                           "add_vision_id",
                                                           "response_format",
                                                           "keep_past_thinking",
                                                           "chat_template_kwargs",
                                                           "available_tools",
                                                           "functions",
                                                           "json_schema",
                                                           "system_message",
                                                           "loop",
                                                           "caller",
                                                           "varargs",
                                                           "kwargs"};

const std::unordered_set<std::string> kGlobals = {"range", "dict", "namespace", "raise_exception",
                                                  "strftime_now"};

// Objects that Jinja, Flask or Python expose and SSTI payloads pivot through.
const std::unordered_set<std::string> kPivotGlobals = {
    "cycler",  "joiner",  "lipsum",     "self",
    "config",  "request", "url_for",    "get_flashed_messages",
    "session", "g",       "application"};
const std::unordered_set<std::string> kPythonBuiltins = {
    "getattr",    "setattr",   "delattr",     "eval",         "exec",    "compile", "open",
    "globals",    "locals",    "vars",        "chr",          "ord",     "os",      "sys",
    "subprocess", "builtins",  "importlib",   "type",         "object",  "input",   "breakpoint",
    "help",       "execfile",  "reload",      "apply",        "hasattr", "dir",     "memoryview",
    "bytes",      "bytearray", "classmethod", "staticmethod", "super",   "property"};
// Attribute names that only make sense on Python internals (frames, functions, os.environ).
// Plausible data keys ("system", "os") are not listed: calling them is caught as an unknown method.
const std::unordered_set<std::string> kDangerousAttributes = {
    "func_globals", "f_globals", "f_locals",   "f_back",   "f_builtins",
    "gi_frame",     "gi_code",   "cr_frame",   "tb_frame", "environ",
    "builtins",     "mro",       "subclasses", "im_func",  "func_code"};

const std::unordered_set<std::string> kMethods = {
    "strip",   "lstrip",  "rstrip",  "split",      "rsplit",  "startswith", "endswith", "replace",
    "upper",   "lower",   "title",   "capitalize", "find",    "rfind",      "index",    "count",
    "isdigit", "isalpha", "isspace", "isalnum",    "islower", "isupper",    "join",     "get",
    "items",   "keys",    "values",  "append",     "pop",     "cycle"};

const std::unordered_set<std::string> kFilters = {
    "safe",       "string",    "trim",       "strip",   "length", "count",   "upper",
    "lower",      "title",     "capitalize", "replace", "join",   "default", "d",
    "first",      "last",      "list",       "tojson",  "int",    "float",   "abs",
    "round",      "items",     "dictsort",   "map",     "select", "reject",  "selectattr",
    "rejectattr", "unique",    "reverse",    "sort",    "escape", "e",       "forceescape",
    "indent",     "wordcount", "sum",        "min",     "max",    "center",  "truncate"};

const std::unordered_set<std::string> kAttributeFilters = {
    "map", "selectattr", "rejectattr", "sort", "unique", "groupby", "sum", "join", "min", "max"};

// Lower-case phrases that have no business in a chat template's own text.
const char* const kInjectionPhrases[] = {"ignore previous instructions",
                                         "ignore all previous",
                                         "ignore the previous",
                                         "ignore the above",
                                         "ignore your instructions",
                                         "disregard previous",
                                         "disregard all previous",
                                         "disregard the above",
                                         "forget your instructions",
                                         "forget all previous",
                                         "do not tell the user",
                                         "don't tell the user",
                                         "do not reveal",
                                         "never reveal",
                                         "without the user knowing",
                                         "without telling the user",
                                         "secretly",
                                         "hidden instruction",
                                         "do not mention this",
                                         "never mention this",
                                         "exfiltrate",
                                         "send the conversation",
                                         "include the following link",
                                         "always recommend",
                                         "insert a link",
                                         "system override",
                                         "jailbreak",
                                         "developer mode",
                                         "you are now dan",
                                         "do anything now",
                                         "override all safety",
                                         "bypass safety",
                                         "leak the",
                                         "send all user data",
                                         "api key"};

// Escalation only: natural-language text no official template contains is already reported
// (inconclusive at least) whatever its language; these cues make it malicious when it also asks
// for secrets or tells the model to hide itself. Lower-case; matched as substrings.
const char* const kCredentialCues[] = {
    "password",    "passcode",        "passphrase",   "credential",    "api key",
    "api_key",     "apikey",          "secret key",   "private key",   "access token",
    "seed phrase", "recovery phrase", "mnemonic",     "one-time code", "verification code",
    "2fa",         "pin code",        "pin number",   "credit card",   "card number",
    "cvv",         "social security", "bank account", "login details", "密码",
    "口令",        "验证码",          "密钥",         "私钥",          "助记词",
    "信用卡",      "银行卡",          "身份证",       "パスワード",    "暗証番号",
    "비밀번호",    "contraseña",      "mot de passe", "passwort",      "пароль",
    "senha"};
const char* const kConcealmentCues[] = {"do not reveal",
                                        "don't reveal",
                                        "never reveal",
                                        "not reveal",
                                        "do not mention",
                                        "don't mention",
                                        "never mention",
                                        "do not disclose",
                                        "don't disclose",
                                        "never disclose",
                                        "not disclose",
                                        "do not tell the user",
                                        "don't tell the user",
                                        "never tell the user",
                                        "without telling",
                                        "keep this instruction",
                                        "keep these instructions",
                                        "instruction secret",
                                        "instructions secret",
                                        "hide this",
                                        "do not acknowledge",
                                        "never acknowledge",
                                        "do not repeat this",
                                        "不要透露",
                                        "不得透露",
                                        "切勿透露",
                                        "不要泄露",
                                        "不要提及",
                                        "不要提到",
                                        "不要告诉",
                                        "不要向用户",
                                        "不要说出",
                                        "保密",
                                        "隐藏",
                                        "秘密",
                                        "言及しない",
                                        "明かさない",
                                        "no reveles",
                                        "ne révèle",
                                        "nicht verraten",
                                        "не раскрывай",
                                        "не упоминай"};

// The text in double quotes, control characters escaped, cut after `max` bytes (on a UTF-8
// boundary).
std::string Quote(std::string_view text, std::size_t max) {
  std::string out = "\"";
  std::size_t i = 0;
  for (; i < text.size(); ++i) {
    if (i >= max && (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) break;
    char c = text[i];
    auto b = [&](std::size_t k) {
      return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
    };
    // C1 controls and bidirectional overrides would let the text disguise itself in a report.
    if (b(0) == 0xC2 && b(1) >= 0x80 && b(1) <= 0x9F) {
      out += "?";
      ++i;
      continue;
    }
    if (b(0) == 0xE2 && ((b(1) == 0x80 && b(2) >= 0xAA && b(2) <= 0xAE) ||
                         (b(1) == 0x81 && b(2) >= 0xA6 && b(2) <= 0xA9))) {
      out += "?";
      i += 2;
      continue;
    }
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '"')
      out += "\\\"";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      out += "?";
    else
      out.push_back(c);
  }
  out += "\"";
  if (i < text.size()) out += " (" + std::to_string(text.size()) + " bytes, cut)";
  return out;
}

class Analyzer {
 public:
  Analyzer(std::string_view source, const AnalysisOptions& options)
      : src_(source), options_(options) {
    for (const auto& v : options.extra_known_variables) known_.insert(v);
  }

  void Add(std::string rule, S sev, std::string msg, std::size_t offset) {
    if (findings_.size() >= kMaxFindings) return;
    if (!seen_.insert(rule + "@" + std::to_string(offset)).second) return;
    findings_.push_back({std::move(rule), sev, std::move(msg), offset});
  }

  std::vector<TemplateFinding> Take() {
    std::stable_sort(findings_.begin(), findings_.end(),
                     [](const auto& a, const auto& b) { return a.offset < b.offset; });
    return std::move(findings_);
  }

  void Run(const internal::Program& p) {
    parsed_ = true;
    Collect(p.body);
    std::set<std::string> runtime(kContextVariables.begin(), kContextVariables.end());
    runtime.insert(options_.extra_known_variables.begin(), options_.extra_known_variables.end());
    for (const char* n : {"loop", "caller", "varargs", "kwargs"}) runtime.erase(n);
    values_.emplace(p, runtime);
    WalkBody(p.body);
  }

  // Checks that need only the bytes: escape-sequence obfuscation and size.
  void Lexical() {
    if (src_.size() > options_.oversized_bytes)
      Add("template.oversized", S::kLow,
          "chat template is " + std::to_string(src_.size()) +
              " bytes, far larger than vendor templates",
          0);
    // Every escape form Python accepts (octal, \x, \u, \U, \N{NAME}), decoded by the parser's
    // own decoder, so no spelling of '_' slips past.
    for (std::size_t i = 0; i + 1 < src_.size();) {
      if (src_[i] != '\\') {
        ++i;
        continue;
      }
      internal::DecodedEscape esc = internal::DecodeEscape(src_, i);
      if (esc.spelled && esc.code_point >= 0x21 && esc.code_point <= 0x7e) {
        Add("template.obfuscation", S::kHigh,
            "escape sequence spells the printable character '" +
                std::string(1, char(esc.code_point)) +
                "': a common way to hide names such as __globals__ from pattern matching",
            i);
      }
      i += std::max<std::size_t>(esc.kind == internal::DecodedEscape::Kind::kText ? esc.length : 1,
                                 1);
    }
  }

  // Every piece of constant text the template can emit: natural language that no official
  // template has is reported with the text and where it lands; the registry names the template.
  void PromptTextFindings(const internal::Program& p, std::string_view source,
                          TemplateAnalysis& out) {
    internal::PromptTextResult r = internal::CollectPromptText(p);
    if (r.truncated)
      Add("template.prompt-text-limit", S::kMedium,
          "the template can emit more pieces of text than the analysis enumerates; its prompt "
          "text could not be fully reviewed",
          0);
    for (PromptText& piece : r.pieces) {
      piece.natural_language = internal::IsNaturalLanguage(piece.text);
      piece.official = piece.natural_language && IsOfficialLiteral(piece.text);
    }
    std::stable_sort(r.pieces.begin(), r.pieces.end(),
                     [](const auto& a, const auto& b) { return a.offset < b.offset; });
    out.registry = MatchRegistry(source, r.pieces);
    const RegistryVerdict& reg = out.registry;
    if (reg.official) {
      // The keyword rule would only be quoting the vendor's own instructions back.
      std::erase_if(findings_, [](const TemplateFinding& f) {
        return f.rule_id == "template.instruction-injection";
      });
      Add("template.official", S::kInfo,
          "official " + reg.family + " template (" + reg.version + ")", 0);
    } else if (!reg.family.empty()) {
      std::string msg = "differs from every official template; closest: " + reg.family + " (" +
                        reg.version + ", " + std::to_string(int(reg.similarity * 100 + 0.5)) +
                        "% of its text pieces present)";
      if (reg.added_literals.empty()) {
        msg += ", with no added natural-language text";
      } else {
        msg += ", with these added literals:";
        for (const auto& l : reg.added_literals) msg += " " + Quote(l, 160);
      }
      Add("template.unofficial", S::kInfo, msg, 0);
    }
    for (const PromptText& piece : r.pieces) {
      if (!piece.natural_language) continue;
      std::string where = PlacementName(piece.placement);
      if (piece.official) {
        Add("template.prompt-text", S::kInfo,
            "official template text (" + where + "): " + Quote(piece.text, 300), piece.offset);
        continue;
      }
      std::string shown = Quote(piece.text, 300);
      switch (piece.placement) {
        case TextPlacement::kUserTurns:
          Add("template.injected-user-turn", S::kHigh,
              "text no official template has, attached to every user turn: " + shown, piece.offset);
          break;
        case TextPlacement::kAfterUser:
          Add("template.injected-after-user", S::kHigh,
              "text no official template has, placed after the user's message: " + shown,
              piece.offset);
          break;
        case TextPlacement::kAfterConversation:
          // Text after the conversation reaches the model after the newest user message too, but
          // vendors' own templates (tool instructions, answer prefills) put text there: a reviewer
          // decides (inconclusive); credential requests and concealment still make it malicious.
          Add("template.injected-after-conversation", S::kMedium,
              "text no official template has, after the conversation or in the generation "
              "prompt: " +
                  shown,
              piece.offset);
          break;
        default:
          Add("template.injected-text", S::kMedium,
              "text no official template has, in " + where + ": " + shown, piece.offset);
          break;
      }
      std::string low = core::AsciiLower(piece.text);
      for (const char* cue : kCredentialCues)
        if (low.find(cue) != std::string::npos) {
          Add("template.injected-credential-request", S::kHigh,
              "template text asks for credentials (\"" + std::string(cue) + "\"): " + shown,
              piece.offset);
          break;
        }
      for (const char* cue : kConcealmentCues)
        if (low.find(cue) != std::string::npos) {
          Add("template.injected-concealment", S::kHigh,
              "template text tells the model to hide it (\"" + std::string(cue) + "\"): " + shown,
              piece.offset);
          break;
        }
    }
    out.prompt_text = std::move(r.pieces);
  }

  // When the template does not parse: look for the classic payload shapes in the raw bytes.
  void Fallback() {
    std::string low = core::AsciiLower(src_);
    for (std::size_t i = 0; i + 2 < low.size(); ++i) {
      if (low[i] == '_' && low[i + 1] == '_' &&
          std::isalpha(static_cast<unsigned char>(low[i + 2])) && (i == 0 || low[i - 1] != '_')) {
        Add("template.dunder-access", S::kCritical, "dunder name in an unparsable template", i);
      }
    }
    for (const std::string& name : kPivotGlobals) {
      if (name.size() < 4) continue;
      for (std::size_t f = low.find(name + "."); f != std::string::npos;
           f = low.find(name + ".", f + 1))
        if (f == 0 || !std::isalnum(static_cast<unsigned char>(low[f - 1])))
          Add("template.dangerous-global", S::kCritical,
              "'" + name + "' object used in an unparsable template", f);
    }
    for (const char* gadget :
         {"|attr(", "| attr(", ".format(", "getattr(", "eval(", "exec(", "popen(", "system("}) {
      for (std::size_t f = low.find(gadget); f != std::string::npos; f = low.find(gadget, f + 1))
        Add(std::string(gadget).find("attr(") != std::string::npos && gadget[0] == '|'
                ? "template.attr-gadget"
                : "template.unknown-callable",
            S::kHigh, std::string("'") + gadget + "' in an unparsable template", f);
    }
    ScanText(src_, 0);
  }

  // Literal text (template text or a string literal) that reads like an injected instruction.
  void ScanText(std::string_view text, std::size_t offset) {
    if (text.size() < 6) return;
    if (parsed_ && IsOfficialLiteral(text)) return;  // an official template's own text
    std::string low = core::AsciiLower(text);
    for (const char* phrase : kInjectionPhrases) {
      if (low.find(phrase) != std::string::npos) {
        Add("template.instruction-injection", S::kMedium,
            std::string("template text contains \"") + phrase +
                "\": chat templates should only add role markers, not instructions hidden from the "
                "user",
            offset);
        break;
      }
    }
    if (low.find("http://") != std::string::npos || low.find("https://") != std::string::npos)
      Add("template.url-literal", S::kLow, "template text contains a URL", offset);
  }

 private:
  void Collect(const internal::Body& body) {
    for (const auto& s : body) {
      for (const auto& t : s->targets) known_.insert(t);
      if (s->kind == StmtKind::kMacro) known_.insert(s->name);
      Collect(s->body);
      Collect(s->else_body);
      for (const auto& [c, b] : s->branches) Collect(b);
    }
  }

  void WalkBody(const internal::Body& body) {
    for (const auto& s : body) WalkStmt(*s);
  }

  void WalkStmt(const Stmt& s) {
    if (s.kind == StmtKind::kText) ScanText(s.text, s.offset);
    if (s.kind == StmtKind::kSet && !s.attr.empty() && s.attr[0] == '_')
      Add("template.dunder-access", S::kCritical, "assignment to attribute '" + s.attr + "'",
          s.offset);
    for (const auto& t : s.targets)
      if (!t.empty() && t[0] == '_' && t != "_")
        Add("template.dunder-access", S::kHigh, "variable named '" + t + "'", s.offset);
    if (s.expr) WalkExpr(*s.expr, false);
    if (s.cond) WalkExpr(*s.cond, false);
    for (const auto& d : s.defaults)
      if (d) WalkExpr(*d, false);
    for (const auto& [c, b] : s.branches) {
      WalkExpr(*c, false);
      WalkBody(b);
    }
    WalkBody(s.body);
    WalkBody(s.else_body);
  }

  // The string value of an expression made only of string literals joined by ~ or +.
  static std::optional<std::string> ConstString(const Expr& e) {
    if (e.kind == ExprKind::kLiteral && e.literal.is_string()) return e.literal.str();
    if (e.kind == ExprKind::kBinary && (e.name == "~" || e.name == "+")) {
      auto a = ConstString(*e.args[0]);
      auto b = ConstString(*e.args[1]);
      if (a && b) return *a + *b;
    }
    return std::nullopt;
  }

  static bool BuildsString(const Expr& e, int depth = 0) {
    if (depth > 64) return true;
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.literal.is_string();
      case ExprKind::kBinary:
        return (e.name == "~" || e.name == "+" || e.name == "%" || e.name == "*") &&
               (BuildsString(*e.args[0], depth + 1) || BuildsString(*e.args[1], depth + 1));
      case ExprKind::kFilter:
        return e.name == "join" || e.name == "format" || e.name == "replace" ||
               e.name == "string" || e.name == "lower" || e.name == "upper" || e.name == "reverse";
      case ExprKind::kCall:
        return true;
      default:
        return false;
    }
  }

  // A subscript key that is not a literal: Jinja's obj[key] falls back to getattr(obj, key), so
  // every string the template can give the key counts as if written there.
  void CheckComputedKey(const Expr& key, bool called) {
    internal::AbstractValue v = values_->Eval(key);
    // Dunder values first: one finding per rule and offset is kept, and it should be the worst.
    std::vector<std::string> values(v.strings.begin(), v.strings.end());
    std::stable_partition(values.begin(), values.end(),
                          [](const std::string& k) { return k.rfind("__", 0) == 0; });
    for (const std::string& k : values) {
      CheckName(k, key.offset, "subscript key (a value the template gives it)");
      if (kDangerousAttributes.count(k))
        Add("template.dangerous-global", S::kHigh,
            "subscript key '" + k + "' (a value the template gives it) names a host capability",
            key.offset);
      if (called && !kMethods.count(k) && !k.empty())
        Add("template.unknown-callable", S::kHigh, "call of subscripted member '" + k + "'",
            key.offset);
    }
    if (v.UnknownComputedString())
      Add("template.computed-attribute", S::kHigh,
          values_->Exhausted()
              ? "subscript key could not be resolved: the template is too costly to evaluate "
                "abstractly, so every computed key counts as a possible hidden attribute name"
              : "subscript key is a string the template computes from text that can spell a "
                "name starting with '_' (Jinja reads obj[key] as getattr(obj, key))",
          key.offset);
  }

  void CheckName(const std::string& name, std::size_t offset, const char* what) {
    if (name.empty() || name[0] != '_') return;
    bool dunder = name.size() > 1 && name[1] == '_';
    Add("template.dunder-access", dunder ? S::kCritical : S::kHigh,
        std::string(what) + " '" + name + "': templates have no reason to reach Python internals",
        offset);
  }

  void WalkExpr(const Expr& e, bool called) {
    switch (e.kind) {
      case ExprKind::kName: {
        CheckName(e.name, e.offset, "name");
        if (called && values_ && values_->IsAssignedVariable(e.name) && !values_->IsMacro(e.name))
          Add("template.unknown-callable", S::kHigh,
              "call of variable '" + e.name +
                  "': it holds whatever was assigned to it (a bound method such as str.format, "
                  "a value reached through a subscript), not a macro",
              e.offset);
        if (known_.count(e.name) || kContextVariables.count(e.name)) break;
        if (kPivotGlobals.count(e.name)) {
          Add("template.dangerous-global", S::kCritical,
              "'" + e.name +
                  "' is a Jinja/Flask object used as a pivot in template-injection payloads",
              e.offset);
        } else if (kPythonBuiltins.count(e.name)) {
          Add("template.dangerous-global", S::kHigh, "Python builtin '" + e.name + "' referenced",
              e.offset);
        } else if (kGlobals.count(e.name)) {
          // provided by the sandbox
        } else if (called) {
          Add("template.unknown-callable", S::kHigh, "call of unknown function '" + e.name + "'",
              e.offset);
        } else if (e.name[0] != '_' && reported_variables_.insert(e.name).second) {
          Add("template.unknown-variable", S::kInfo,
              "variable '" + e.name + "' is not part of the standard chat-template context",
              e.offset);
        }
        break;
      }
      case ExprKind::kGetAttr:
        CheckName(e.name, e.offset, "attribute");
        if (kDangerousAttributes.count(e.name))
          Add("template.dangerous-global", S::kHigh,
              "attribute '" + e.name + "' names a host capability", e.offset);
        if (called && !kMethods.count(e.name)) {
          if (e.name == "format" || e.name == "format_map")
            Add("template.format-gadget", S::kHigh,
                "str." + e.name + "() can read attributes of its arguments", e.offset);
          else
            Add("template.unknown-callable", S::kHigh, "call of unknown method '" + e.name + "'",
                e.offset);
        }
        break;
      case ExprKind::kGetItem: {
        const Expr& key = *e.args[1];
        if (auto k = ConstString(key)) {
          CheckName(*k, key.offset, "subscript");
          if (kDangerousAttributes.count(*k))
            Add("template.dangerous-global", S::kHigh,
                "subscript '" + *k + "' names a host capability", key.offset);
          if (called && !kMethods.count(*k) && (*k).size() > 0)
            Add("template.unknown-callable", S::kHigh, "call of subscripted member '" + *k + "'",
                key.offset);
        } else {
          if (BuildsString(key))
            Add("template.computed-attribute", S::kHigh,
                "subscript key is built at render time from strings (a way to spell hidden "
                "attribute names)",
                key.offset);
          CheckComputedKey(key, called);
        }
        break;
      }
      case ExprKind::kCall:
        if (e.args[0]->kind != ExprKind::kName && e.args[0]->kind != ExprKind::kGetAttr &&
            e.args[0]->kind != ExprKind::kGetItem)
          Add("template.unknown-callable", S::kHigh, "call of a computed value", e.offset);
        if (e.args[0]->kind == ExprKind::kGetAttr &&
            (e.args[0]->name == "get" || e.args[0]->name == "pop") && e.args.size() > 1)
          if (auto k = ConstString(*e.args[1])) CheckName(*k, e.args[1]->offset, "key");
        WalkExpr(*e.args[0], true);
        for (std::size_t i = 1; i < e.args.size(); ++i) WalkExpr(*e.args[i], false);
        for (const auto& [k, v] : e.kwargs) WalkExpr(*v, false);
        return;
      case ExprKind::kFilter:
        CheckFilter(e);
        break;
      case ExprKind::kBinary:
        if (e.name == "%" && e.args[0]->kind == ExprKind::kLiteral &&
            e.args[0]->literal.is_string()) {
          Add("template.format-gadget", S::kLow,
              "'%' string formatting (printf-style; reads no attributes)", e.offset);
          if (e.args[0]->literal.str().find("%(_") != std::string::npos)
            Add("template.dunder-access", S::kCritical, "'%' format reads key starting with '_'",
                e.offset);
        }
        break;
      case ExprKind::kLiteral:
        if (e.literal.is_string()) ScanText(e.literal.str(), e.offset);
        break;
      default:
        break;
    }
    for (std::size_t i = 0; i < e.args.size(); ++i)
      if (e.args[i]) WalkExpr(*e.args[i], false);
    for (const auto& [k, v] : e.kwargs)
      if (v) WalkExpr(*v, false);
  }

  void CheckFilter(const Expr& e) {
    const std::string& f = e.name;
    if (f == "attr") {
      Add("template.attr-gadget", S::kCritical,
          "the attr filter reads arbitrary attributes (classic SSTI gadget)", e.offset);
      return;
    }
    if (f == "format") {
      Add("template.format-gadget", S::kLow,
          "the format filter (printf-style; reads no attributes)", e.offset);
      return;
    }
    if (!kFilters.count(f)) {
      Add("template.unknown-filter", S::kMedium,
          "filter '" + f + "' is not provided by the sandbox", e.offset);
      if (f != "groupby") return;  // groupby(attribute) reads attributes in real Jinja
    }
    if (!kAttributeFilters.count(f)) return;
    auto check_attr = [&](const Expr& a) {
      std::set<std::string> names;
      if (auto k = ConstString(a)) {
        names.insert(*k);
      } else {
        // A name the template computes: every value it can take, or a finding when unknown.
        internal::AbstractValue v = values_->Eval(a);
        if (v.other) {
          Add("template.attr-gadget", S::kHigh, "filter '" + f + "' with a computed attribute name",
              a.offset);
          return;
        }
        names = v.strings;
      }
      for (const std::string& k : names)
        for (std::size_t i = 0, j; i <= k.size(); i = j + 1) {
          j = k.find('.', i);
          if (j == std::string::npos) j = k.size();
          std::string part = k.substr(i, j - i);
          if (!part.empty() && part[0] == '_')
            Add("template.attr-gadget", S::kCritical,
                "filter '" + f + "' reads attribute '" + part + "'", a.offset);
        }
    };
    for (const auto& [k, v] : e.kwargs)
      if (k == "attribute") check_attr(*v);
    // Jinja's positional `attribute` parameter (args[0] is the filtered value).
    std::size_t attribute_index = 0;
    if (f == "selectattr" || f == "rejectattr" || f == "groupby" || f == "sum")
      attribute_index = 1;
    else if (f == "unique" || f == "min" || f == "max" || f == "join")
      attribute_index = 2;
    else if (f == "sort")
      attribute_index = 3;
    if (attribute_index && e.args.size() > attribute_index) check_attr(*e.args[attribute_index]);
    if (f == "map" && e.args.size() > 1) {
      auto name = ConstString(*e.args[1]);
      if (name && (*name == "attr" || *name == "format"))
        Add("template.attr-gadget", S::kCritical, "map('" + *name + "') gadget", e.offset);
      else if (name && !kFilters.count(*name))
        Add("template.unknown-filter", S::kMedium, "map() with filter '" + *name + "'", e.offset);
      else if (!name)
        Add("template.attr-gadget", S::kHigh, "map() with a computed filter name", e.offset);
    }
  }

  std::string_view src_;
  const AnalysisOptions& options_;
  bool parsed_ = false;
  std::unordered_set<std::string> known_;
  std::optional<internal::KeyValueAnalysis> values_;  // set by Run
  std::vector<TemplateFinding> findings_;
  std::set<std::string> seen_;
  std::set<std::string> reported_variables_;
};

}  // namespace

bool IsNaturalLanguage(std::string_view text) { return internal::IsNaturalLanguage(text); }

const char* PlacementName(TextPlacement p) {
  switch (p) {
    case TextPlacement::kDefaultSystem:
      return "a default system prompt used when the user gives none";
    case TextPlacement::kPreamble:
      return "text added before every conversation";
    case TextPlacement::kFirstTurn:
      return "the first message";
    case TextPlacement::kOtherTurns:
      return "every assistant, system or tool message";
    case TextPlacement::kUserTurns:
      return "every user turn";
    case TextPlacement::kAfterConversation:
      return "after the conversation (generation prompt)";
    case TextPlacement::kAfterUser:
      return "after the user's message";
  }
  return "?";
}

TemplateAnalysis AnalyzeTemplate(std::string_view source, const AnalysisOptions& options) {
  TemplateAnalysis out;
  Analyzer a(source, options);
  a.Lexical();
  auto program = internal::ParseProgram(std::string(source), internal::ParseConfig{});
  if (program) {
    out.parsed = true;
    a.Run(**program);
    a.PromptTextFindings(**program, source, out);
  } else {
    out.parse_error = program.error().message();
    a.Fallback();
  }
  out.findings = a.Take();
  return out;
}

}  // namespace airlock::tmpl
