// CollectPromptText: walks the parsed template once per branch structure (nothing is rendered)
// and collects every constant piece of text that can reach the output, with where it lands. The
// placement comes from the conditions around it (role comparisons, "no system message" tests,
// loop.first, add_generation_prompt), from the loop over the messages, and from the order of
// constant text and message content inside one turn.
//
// Fail-closed choices: a literal in a position not known to stay out of the output counts as
// emitted; text recorded into a variable or macro that is never seen reaching an output is still
// reported where it was defined.
//
// Kept as one file (about 820 lines): the condition analysis (Guard, Constrain) exists only for
// the Collector's walk below it, and the walk's methods share one state.
#include "template/internal/prompt_text.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace airlock::tmpl::internal {
namespace {

constexpr unsigned kUser = 1, kAssistant = 2, kSystem = 4, kTool = 8, kOtherRole = 16;
constexpr unsigned kAllRoles = 31;
constexpr int kMaxDepth = 256;               // the parser caps nesting at 200
constexpr std::size_t kMaxSteps = 400000;    // re-emissions of variables/macros included
constexpr std::size_t kMaxFolds = 2000;      // constant expressions evaluated per template
constexpr std::uint64_t kFoldSteps = 20000;  // interpreter work per folded expression

unsigned RoleBit(std::string_view r) {
  if (r == "user" || r == "human") return kUser;
  if (r == "assistant" || r == "model" || r == "bot" || r == "gpt") return kAssistant;
  if (r == "system" || r == "developer") return kSystem;
  if (r == "tool" || r == "ipython" || r == "function" || r == "tool_response" ||
      r == "observation")
    return kTool;
  return kOtherRole;
}

bool IsStringLiteral(const Expr& e) {
  return e.kind == ExprKind::kLiteral && e.literal.is_string();
}

// Whether `e` reads a name/attribute/key containing `word` (e.g. "content", "message").
bool Mentions(const Expr& e, std::string_view word, int depth = 0) {
  if (depth > 64) return true;  // too deep to tell: assume it does
  if ((e.kind == ExprKind::kName || e.kind == ExprKind::kGetAttr) &&
      e.name.find(word) != std::string::npos)
    return true;
  if (e.kind == ExprKind::kGetItem && e.args.size() > 1 && e.args[1] &&
      IsStringLiteral(*e.args[1]) && e.args[1]->literal.str().find(word) != std::string::npos)
    return true;
  for (const auto& a : e.args)
    if (a && Mentions(*a, word, depth + 1)) return true;
  for (const auto& [k, v] : e.kwargs)
    if (v && Mentions(*v, word, depth + 1)) return true;
  return false;
}

// 0: not a role; 1: the role of the message being iterated; 2: the role of a message picked by a
// constant index (messages[0]['role']), i.e. a test on the conversation, not on the turn.
int RoleSubject(const Expr& e) {
  const Expr* object = nullptr;
  if (e.kind == ExprKind::kGetAttr && e.name == "role") object = e.args[0].get();
  if (e.kind == ExprKind::kGetItem && e.args.size() > 1 && IsStringLiteral(*e.args[1]) &&
      e.args[1]->literal.str() == "role")
    object = e.args[0].get();
  if (object) {
    if (object->kind == ExprKind::kGetItem && object->args.size() > 1 && object->args[1] &&
        object->args[1]->kind == ExprKind::kLiteral && object->args[1]->literal.is_int())
      return 2;
    return 1;
  }
  if (e.kind == ExprKind::kName && e.name.find("role") != std::string::npos) return 1;
  return 0;
}

std::optional<unsigned> RoleValues(const Expr& e) {
  if (IsStringLiteral(e)) return RoleBit(e.literal.str());
  if (e.kind == ExprKind::kList || e.kind == ExprKind::kTuple) {
    unsigned m = 0;
    for (const auto& a : e.args) {
      if (!a || !IsStringLiteral(*a)) return std::nullopt;
      m |= RoleBit(a->literal.str());
    }
    return m;
  }
  return std::nullopt;
}

// What must hold on a branch: which roles the current message can have, whether the
// conversation is known to lack a system message, first iteration only, generation prompt.
struct Guard {
  unsigned roles = kAllRoles;
  bool no_system = false;
  bool first_only = false;
  bool gen_prompt = false;
};

Guard Union(const Guard& a, const Guard& b) {
  Guard g;
  g.roles = a.roles | b.roles;
  g.no_system = a.no_system && b.no_system;
  g.first_only = a.first_only && b.first_only;
  g.gen_prompt = a.gen_prompt && b.gen_prompt;
  return g;
}

bool IsLoopAttr(const Expr& e, const char* attr) {
  return e.kind == ExprKind::kGetAttr && e.name == attr && e.args[0]->kind == ExprKind::kName &&
         e.args[0]->name == "loop";
}

// Narrows `g` by "`c` is true" (positive) or "`c` is false".
void Constrain(const Expr& c, bool positive, Guard& g, int depth = 0) {
  if (depth > 64) return;
  switch (c.kind) {
    case ExprKind::kNot:
      Constrain(*c.args[0], !positive, g, depth + 1);
      return;
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      bool conjunction = (c.kind == ExprKind::kAnd) == positive;
      if (conjunction) {
        Constrain(*c.args[0], positive, g, depth + 1);
        Constrain(*c.args[1], positive, g, depth + 1);
      } else {
        Guard a = g, b = g;
        Constrain(*c.args[0], positive, a, depth + 1);
        Constrain(*c.args[1], positive, b, depth + 1);
        Guard u = Union(a, b);
        g.roles &= u.roles;
        g.no_system |= u.no_system;
        g.first_only |= u.first_only;
        g.gen_prompt |= u.gen_prompt;
      }
      return;
    }
    case ExprKind::kCompare: {
      const std::string& op = c.name;
      if (op != "==" && op != "!=" && op != "in" && op != "not in") return;
      bool eq = (op == "==" || op == "in") == positive;
      const Expr* subject = c.args[0].get();
      const Expr* values = c.args[1].get();
      int kind = RoleSubject(*subject);
      std::optional<unsigned> vals = RoleValues(*values);
      if ((!kind || !vals) && (op == "==" || op == "!=")) {
        std::swap(subject, values);
        kind = RoleSubject(*subject);
        vals = RoleValues(*values);
      }
      if (kind == 1 && vals) {
        g.roles &= eq ? *vals : ~*vals;
      } else if (kind == 2 && vals) {
        if ((eq && !(*vals & kSystem)) || (!eq && (*vals & kSystem))) g.no_system = true;
      } else if (eq && op == "==") {
        // loop.index0 == 0 / loop.index == 1
        for (int k = 0; k < 2; ++k) {
          const Expr& a = *c.args[k];
          const Expr& b = *c.args[1 - k];
          if (b.kind != ExprKind::kLiteral || !b.literal.is_int()) continue;
          if ((IsLoopAttr(a, "index0") && b.literal.int_value() == 0) ||
              (IsLoopAttr(a, "index") && b.literal.int_value() == 1))
            g.first_only = true;
        }
      }
      return;
    }
    case ExprKind::kTest: {
      bool truthy_when_true = c.name == "defined" || c.name == "true";
      bool falsy_when_true = c.name == "none" || c.name == "undefined" || c.name == "false";
      if (!truthy_when_true && !falsy_when_true) return;
      bool value_truthy = (positive != c.negated) == truthy_when_true;
      Constrain(*c.args[0], value_truthy, g, depth + 1);
      return;
    }
    case ExprKind::kName:
    case ExprKind::kGetAttr:
      if (IsLoopAttr(c, "first") && positive) g.first_only = true;
      if (c.kind == ExprKind::kName && c.name == "add_generation_prompt" && positive)
        g.gen_prompt = true;
      if (!positive && c.name.find("system") != std::string::npos) g.no_system = true;
      return;
    default:
      return;
  }
}

struct Ctx {
  Guard guard;
  int turn_loops = 0;
};

struct Flow {
  bool after_content = false;  // message content was emitted earlier in this turn
  bool after_loop = false;     // the loop over the messages has run
};

struct Recorded {
  std::string text;
  std::size_t offset;
  TextPlacement placement;  // where it was defined (used when it is never seen reaching output)
};

class Collector {
 public:
  explicit Collector(std::size_t max_pieces) : max_pieces_(max_pieces) {}

  PromptTextResult Run(const Program& p) {
    program_ = &p;
    for (pass_ = 0; pass_ < 2; ++pass_) {
      Flow flow;
      WalkBody(p.body, Ctx{}, flow);
    }
    // Text kept in a variable or macro that was never seen reaching an output: report it where
    // it was defined.
    for (const auto& [key, list] : vars_)
      if (!used_vars_.count(key))
        for (const Recorded& r : list) Store(r.text, r.offset, r.placement);
    PromptTextResult out;
    out.truncated = truncated_;
    for (auto& [key, piece] : pieces_) out.pieces.push_back(std::move(piece));
    return out;
  }

 private:
  static TextPlacement Place(const Ctx& ctx, bool after_content, bool after_loop) {
    const Guard& g = ctx.guard;
    if (g.gen_prompt) return TextPlacement::kAfterConversation;
    if (ctx.turn_loops > 0) {
      bool user = (g.roles & kUser) != 0;
      if (user && after_content) return TextPlacement::kAfterUser;
      // "No system message" makes text a default system prompt only once per conversation:
      // inside the loop it must also be limited to the first turn, or it rides on every turn.
      if (g.first_only)
        return g.no_system ? TextPlacement::kDefaultSystem : TextPlacement::kFirstTurn;
      return user ? TextPlacement::kUserTurns : TextPlacement::kOtherTurns;
    }
    if (g.no_system) return TextPlacement::kDefaultSystem;
    return after_loop ? TextPlacement::kAfterConversation : TextPlacement::kPreamble;
  }

  bool Step() {
    if (++steps_ > kMaxSteps) truncated_ = true;
    return !truncated_;
  }

  void Store(const std::string& text, std::size_t offset, TextPlacement p) {
    if (text.empty() || !Step()) return;
    auto key = std::make_pair(offset, text);
    auto it = pieces_.find(key);
    if (it == pieces_.end()) {
      if (pieces_.size() >= max_pieces_) {
        truncated_ = true;
        return;
      }
      PromptText t;
      t.text = text;
      t.offset = offset;
      t.placement = p;
      pieces_.emplace(std::move(key), std::move(t));
    } else if (p > it->second.placement) {
      it->second.placement = p;
    }
  }

  // A constant run reaching the output here, or the value being recorded into a variable.
  void Emit(const std::string& text, std::size_t offset, const Ctx& ctx, const Flow& flow) {
    if (text.empty()) return;
    TextPlacement p = Place(ctx, flow.after_content, flow.after_loop);
    if (!recording_.empty()) {
      if (pass_ == 0 && Step()) vars_[recording_.back()].push_back({text, offset, p});
      return;
    }
    Store(text, offset, p);
  }

  // A variable, namespace attribute or macro reaching the output here.
  void EmitVariable(const std::string& key, const Ctx& ctx, const Flow& flow) {
    auto it = vars_.find(key);
    if (it == vars_.end() || truncated_) return;
    // Re-emitting costs one step per recorded piece, counted before the copy below.
    if (steps_ + it->second.size() > kMaxSteps) {
      truncated_ = true;
      return;
    }
    if (recording_.empty()) used_vars_.insert(key);
    if (std::find(recording_.begin(), recording_.end(), key) != recording_.end()) return;
    // Copy: recording into another variable may grow vars_.
    std::vector<Recorded> list = it->second;
    for (const Recorded& r : list) Emit(r.text, r.offset, ctx, flow);
  }

  static std::optional<std::string> VariableKey(const Expr& e) {
    if (e.kind == ExprKind::kName) return e.name;
    if (e.kind == ExprKind::kGetAttr && e.args[0]->kind == ExprKind::kName)
      return e.args[0]->name + "." + e.name;
    return std::nullopt;
  }

  // ---- expressions ----

  struct Part {
    const Expr* expr;  // null: constant text
    std::string text;
    std::size_t offset = 0;
  };

  static void Flatten(const Expr& e, std::vector<Part>& out, int depth) {
    if (IsStringLiteral(e)) {
      out.push_back({nullptr, e.literal.str(), e.offset});
      return;
    }
    if (depth < kMaxDepth && e.kind == ExprKind::kBinary && (e.name == "+" || e.name == "~")) {
      Flatten(*e.args[0], out, depth + 1);
      Flatten(*e.args[1], out, depth + 1);
      return;
    }
    out.push_back({&e, {}, e.offset});
  }

  // Output of `e` at this point; constant parts join the pending run.
  void Output(const Expr& e, const Ctx& ctx, Flow& flow, int depth) {
    std::vector<Part> parts;
    Flatten(e, parts, depth);
    for (const Part& part : parts) {
      if (!part.expr) {
        if (run_.empty()) run_offset_ = part.offset;
        run_ += part.text;
        continue;
      }
      Flush(ctx, flow);
      bool content = Mentions(*part.expr, "content");
      bool role = Mentions(*part.expr, "role");
      // Message content and role names end the bridged text (see Bridge).
      if (content || role) EndBridge(ctx, flow);
      Sink(*part.expr, ctx, flow, depth + 1);
      // Inside the loop over the messages any value written is taken as part of the message
      // (it only decides between "every user turn" and "after the user's message", both high).
      // The role name is the turn's header, not its content.
      // raise_exception() aborts rendering and writes nothing.
      bool aborts = part.expr->kind == ExprKind::kCall &&
                    part.expr->args[0]->kind == ExprKind::kName &&
                    part.expr->args[0]->name == "raise_exception";
      if (!aborts && (content || (ctx.turn_loops > 0 && !role))) flow.after_content = true;
    }
  }

  void Flush(const Ctx& ctx, const Flow& flow) {
    if (run_.empty()) return;
    Emit(run_, run_offset_, ctx, flow);
    // Bridge: constant runs separated only by other values ("Ask{{ sep }}for{{ sep }}the...")
    // are also read as one text, so words cannot be split below the natural-language
    // threshold by interleaving values. Reported only when no run alone is natural language.
    if (bridge_runs_ == 0) bridge_offset_ = run_offset_;
    if (bridge_.size() < (1u << 16)) bridge_ += run_ + " ";
    ++bridge_runs_;
    bridge_has_language_ |= IsNaturalLanguage(run_);
    run_.clear();
  }

  void EndBridge(const Ctx& ctx, const Flow& flow) {
    if (bridge_runs_ > 1 && !bridge_has_language_ && IsNaturalLanguage(bridge_))
      Emit(bridge_, bridge_offset_, ctx, flow);
    bridge_.clear();
    bridge_runs_ = 0;
    bridge_has_language_ = false;
  }

  // A sub-expression whose value can reach the output (a fresh run of its own).
  void SinkValue(const Expr& e, const Ctx& ctx, const Flow& flow, int depth) {
    Flow local = flow;
    std::string saved_run = std::move(run_), saved_bridge = std::move(bridge_);
    std::size_t saved_offset = run_offset_, saved_bridge_offset = bridge_offset_;
    int saved_bridge_runs = bridge_runs_;
    bool saved_bridge_language = bridge_has_language_;
    run_.clear();
    bridge_.clear();
    bridge_runs_ = 0;
    bridge_has_language_ = false;
    Output(e, ctx, local, depth);
    Flush(ctx, local);
    EndBridge(ctx, local);
    run_ = std::move(saved_run);
    run_offset_ = saved_offset;
    bridge_ = std::move(saved_bridge);
    bridge_offset_ = saved_bridge_offset;
    bridge_runs_ = saved_bridge_runs;
    bridge_has_language_ = saved_bridge_language;
  }

  // True for an expression the interpreter can evaluate without any variable but the special
  // tokens: literals, containers, filters, methods and operators over them (range() included).
  static bool IsClosed(const Expr& e, int depth) {
    if (depth > kMaxDepth) return false;
    switch (e.kind) {
      case ExprKind::kLiteral:
        return true;
      case ExprKind::kName:
        return e.name == "bos_token" || e.name == "eos_token";
      case ExprKind::kPlaceholder:
        return false;
      case ExprKind::kCall:
        if (e.args[0]->kind == ExprKind::kName && e.args[0]->name != "range") return false;
        break;
      default:
        break;
    }
    for (const auto& a : e.args)
      if (a && !IsClosed(*a, depth + 1)) return false;
    for (const auto& [k, v] : e.kwargs)
      if (v && !IsClosed(*v, depth + 1)) return false;
    return true;
  }

  // Text that only exists once a filter, method or operator has run over constants
  // ('Ignore_all...'|replace('_', ' '), '%c%c' % (73, 103), [...]|reverse|join(' '), '...'[::-1])
  // is folded with the template interpreter itself, so that it is judged as what it renders to.
  // Returns false when `e` is not such an expression or cannot be folded.
  bool FoldConstant(const Expr& e, const Ctx& ctx, const Flow& flow) {
    switch (e.kind) {
      case ExprKind::kFilter:
      case ExprKind::kCall:
      case ExprKind::kBinary:
      case ExprKind::kSlice:
      case ExprKind::kGetItem:
        break;
      default:
        return false;
    }
    if (!IsClosed(e, 0)) return false;
    if (++folds_ > kMaxFolds) {
      truncated_ = true;  // reported as incomplete rather than skipped silently
      return true;
    }
    Limits limits;
    limits.max_steps = kFoldSteps;
    limits.max_output_bytes = 1u << 16;
    limits.max_string_bytes = 1u << 16;
    limits.max_call_depth = 4;
    auto v = EvaluateClosedExpression(*program_, e, limits);
    if (!v) return false;
    std::string text;
    if (v->is_string()) {
      text = v->str();
    } else if (v->is_list()) {
      for (const Value& item : v->items())
        if (item.is_string()) text += (text.empty() ? "" : " ") + item.str();
    }
    if (!text.empty()) Emit(text, e.offset, ctx, flow);
    return !text.empty();
  }

  void Sink(const Expr& e, const Ctx& ctx, const Flow& flow, int depth) {
    if (depth > kMaxDepth || !Step()) return;
    if (FoldConstant(e, ctx, flow)) return;
    auto sink = [&](const ExprPtr& a) {
      if (a) SinkValue(*a, ctx, flow, depth + 1);
    };
    switch (e.kind) {
      case ExprKind::kLiteral:
        if (e.literal.is_string()) Emit(e.literal.str(), e.offset, ctx, flow);
        return;
      case ExprKind::kName:
        EmitVariable(e.name, ctx, flow);
        return;
      case ExprKind::kGetAttr:
        if (auto key = VariableKey(e)) EmitVariable(*key, ctx, flow);
        sink(e.args[0]);
        return;
      case ExprKind::kGetItem:
      case ExprKind::kSlice:
        sink(e.args[0]);  // the key/bounds only select
        return;
      case ExprKind::kCond: {
        Ctx yes = ctx, no = ctx;
        Constrain(*e.args[1], true, yes.guard);
        Constrain(*e.args[1], false, no.guard);
        SinkValue(*e.args[0], yes, flow, depth + 1);
        if (e.args[2]) SinkValue(*e.args[2], no, flow, depth + 1);
        return;
      }
      case ExprKind::kCompare:
      case ExprKind::kTest:
      case ExprKind::kNot:
      case ExprKind::kUnary:
      case ExprKind::kPlaceholder:
        return;  // booleans and numbers
      case ExprKind::kFilter: {
        sink(e.args[0]);
        const std::string& f = e.name;
        if (f == "replace" && e.args.size() > 2) sink(e.args[2]);
        if (f == "join") EmitJoinedList(*e.args[0], ctx, flow);
        if ((f == "join" || f == "default" || f == "d") && e.args.size() > 1) sink(e.args[1]);
        if (f == "format")
          for (std::size_t i = 1; i < e.args.size(); ++i) sink(e.args[i]);
        return;
      }
      case ExprKind::kCall: {
        const Expr& callee = *e.args[0];
        if (callee.kind == ExprKind::kGetAttr) {
          const std::string& m = callee.name;
          static const std::unordered_set<std::string> kSelectingMethods = {
              "split",   "rsplit",  "startswith", "endswith", "find",    "rfind",
              "index",   "count",   "strip",      "lstrip",   "rstrip",  "isdigit",
              "isalpha", "isspace", "isalnum",    "islower",  "isupper", "keys",
              "items",   "values",  "upper",      "lower",    "title",   "capitalize"};
          sink(callee.args[0]);
          if (m == "join" && e.args.size() > 1) EmitJoinedList(*e.args[1], ctx, flow);
          if (m == "replace") {
            if (e.args.size() > 2) sink(e.args[2]);
          } else if (m == "get" || m == "pop") {
            if (e.args.size() > 2) sink(e.args[2]);
          } else if (!kSelectingMethods.count(m)) {
            for (std::size_t i = 1; i < e.args.size(); ++i) sink(e.args[i]);
            for (const auto& [k, v] : e.kwargs) sink(v);
          }
          return;
        }
        if (callee.kind == ExprKind::kName) {
          if (callee.name == "raise_exception" || callee.name == "range" ||
              callee.name == "strftime_now")
            return;                              // aborts rendering / numbers / a date
          EmitVariable(callee.name, ctx, flow);  // a macro's text
        } else {
          sink(e.args[0]);
        }
        for (std::size_t i = 1; i < e.args.size(); ++i) sink(e.args[i]);
        for (const auto& [k, v] : e.kwargs) sink(v);
        return;
      }
      default:  // dicts, and/or, arithmetic: any operand may be the value
        for (const auto& a : e.args) sink(a);
        for (const auto& [k, v] : e.kwargs) sink(v);
        return;
    }
  }

  // Words kept one per item of a list literal and joined at render time ("[...]|join(' ')")
  // are also read as one piece.
  void EmitJoinedList(const Expr& list, const Ctx& ctx, const Flow& flow) {
    if (list.kind != ExprKind::kList && list.kind != ExprKind::kTuple) return;
    std::string joined;
    std::size_t constant_items = 0;
    for (const auto& a : list.args) {
      if (!a || !IsStringLiteral(*a)) continue;
      if (!joined.empty()) joined += ' ';
      joined += a->literal.str();
      ++constant_items;
    }
    if (constant_items > 1) Emit(joined, list.offset, ctx, flow);
  }

  // Records what `e` can evaluate to into variable `key` (pass 0) without emitting it.
  void Record(const std::string& key, const Expr& e, const Ctx& ctx, const Flow& flow) {
    recording_.push_back(key);
    // namespace(a='...') / dict(a='...'): each keyword is an attribute of its own.
    if (e.kind == ExprKind::kCall && e.args[0]->kind == ExprKind::kName &&
        (e.args[0]->name == "namespace" || e.args[0]->name == "dict")) {
      for (const auto& [k, v] : e.kwargs) {
        recording_.push_back(key + "." + k);
        SinkValue(*v, ctx, flow, 0);
        recording_.pop_back();
      }
    }
    SinkValue(e, ctx, flow, 0);
    recording_.pop_back();
  }

  // ---- statements ----

  void WalkBody(const Body& body, const Ctx& ctx, Flow& flow, int depth = 0) {
    if (depth > kMaxDepth) return;
    for (const auto& s : body) {
      if (truncated_) break;
      WalkStmt(*s, ctx, flow, depth);
    }
    Flush(ctx, flow);
    EndBridge(ctx, flow);
  }

  void WalkStmt(const Stmt& s, const Ctx& ctx, Flow& flow, int depth) {
    switch (s.kind) {
      case StmtKind::kText:
        if (run_.empty()) run_offset_ = s.offset;
        run_ += s.text;
        return;
      case StmtKind::kOutput:
        Output(*s.expr, ctx, flow, depth);
        return;
      default:
        break;
    }
    Flush(ctx, flow);
    EndBridge(ctx, flow);
    switch (s.kind) {
      case StmtKind::kIf: {
        Guard rest = ctx.guard;  // the earlier conditions were false
        Flow merged = flow;
        auto branch = [&](const Body& body, const Guard& g) {
          Ctx c = ctx;
          c.guard = g;
          Flow f = flow;
          WalkBody(body, c, f, depth + 1);
          merged.after_content |= f.after_content;
          merged.after_loop |= f.after_loop;
        };
        for (const auto& [cond, body] : s.branches) {
          Guard g = rest;
          Constrain(*cond, true, g);
          branch(body, g);
          Constrain(*cond, false, rest);
        }
        branch(s.else_body, rest);
        flow = merged;
        return;
      }
      case StmtKind::kFor: {
        bool turn_loop = Mentions(*s.expr, "message");
        if (auto key = VariableKey(*s.expr)) turn_loop |= aliases_.count(*key) > 0;
        for (const auto& t : s.targets) Record(t, *s.expr, ctx, flow);
        Ctx c = ctx;
        if (turn_loop) {
          c.turn_loops++;
          c.guard.roles = kAllRoles;
          c.guard.first_only = false;
        }
        if (s.cond) Constrain(*s.cond, true, c.guard);
        Flow f{false, flow.after_loop};
        WalkBody(s.body, c, f, depth + 1);
        Flow e = flow;
        WalkBody(s.else_body, ctx, e, depth + 1);
        // A loop that only collects (sets variables) has not written the conversation yet.
        flow.after_loop |= (turn_loop && f.after_content) || f.after_loop;
        flow.after_content |= f.after_content;
        return;
      }
      case StmtKind::kSet: {
        std::string key = s.targets.empty() ? std::string() : s.targets[0];
        if (!s.attr.empty()) key += "." + s.attr;
        if (Mentions(*s.expr, "message"))
          for (const auto& t : s.targets) aliases_.insert(s.attr.empty() ? t : key);
        if (s.attr.empty())
          for (const auto& t : s.targets) Record(t, *s.expr, ctx, flow);
        else
          Record(key, *s.expr, ctx, flow);
        return;
      }
      case StmtKind::kSetBlock: {
        recording_.push_back(s.targets[0]);
        Flow f = flow;
        WalkBody(s.body, ctx, f, depth + 1);
        recording_.pop_back();
        return;
      }
      case StmtKind::kMacro: {
        recording_.push_back(s.name);
        for (const auto& d : s.defaults)
          if (d) SinkValue(*d, ctx, flow, 0);
        Flow f;
        WalkBody(s.body, Ctx{}, f, depth + 1);
        recording_.pop_back();
        return;
      }
      case StmtKind::kCallBlock:
      case StmtKind::kFilterBlock:
      case StmtKind::kScope:
        if (s.expr) SinkValue(*s.expr, ctx, flow, 0);
        WalkBody(s.body, ctx, flow, depth + 1);
        return;
      case StmtKind::kDo: {
        // ns.parts.append('...') keeps the text in ns.parts; anything else may emit nothing,
        // but its literals are still counted here.
        const Expr& e = *s.expr;
        if (e.kind == ExprKind::kCall && e.args[0]->kind == ExprKind::kGetAttr) {
          if (auto key = VariableKey(*e.args[0]->args[0])) {
            recording_.push_back(*key);
            for (std::size_t i = 1; i < e.args.size(); ++i) SinkValue(*e.args[i], ctx, flow, 0);
            recording_.pop_back();
            return;
          }
        }
        SinkValue(e, ctx, flow, 0);
        return;
      }
      default:
        return;
    }
  }

  std::size_t max_pieces_;
  int pass_ = 0;
  std::size_t steps_ = 0;
  std::size_t folds_ = 0;
  const Program* program_ = nullptr;
  bool truncated_ = false;
  std::string run_;
  std::size_t run_offset_ = 0;
  std::string bridge_;
  std::size_t bridge_offset_ = 0;
  int bridge_runs_ = 0;
  bool bridge_has_language_ = false;
  std::vector<std::string> recording_;
  std::map<std::string, std::vector<Recorded>> vars_;
  std::set<std::string> used_vars_;
  std::set<std::string> aliases_;
  std::map<std::pair<std::size_t, std::string>, PromptText> pieces_;
};

bool IsSpace(UChar32 c) { return u_isUWhiteSpace(c) != 0; }

// Length of a special-token-like span at s[i], or 0: <|...|>, <｜...｜>, <tag>, </tag>, <<SYS>>
// (no whitespace inside, at most 80 bytes), and [INST]-style markers ([/INST], [TOOL_CALLS]).
std::size_t SpecialTokenAt(std::string_view s, std::size_t i) {
  if (s[i] == '<') {
    std::size_t j = i;
    while (j < s.size() && s[j] == '<') ++j;
    std::size_t start = j;
    while (j < s.size() && j - i < 80 && s[j] != '>' && s[j] != '<' &&
           !std::isspace(static_cast<unsigned char>(s[j])))
      ++j;
    if (j >= s.size() || s[j] != '>' || j == start) return 0;
    while (j < s.size() && s[j] == '>') ++j;
    return j - i;
  }
  if (s[i] == '[') {
    std::size_t j = i + 1;
    if (j < s.size() && s[j] == '/') ++j;
    std::size_t start = j;
    while (j < s.size() && j - i < 40 && ((s[j] >= 'A' && s[j] <= 'Z') || s[j] == '_')) ++j;
    if (j - start < 2 || j >= s.size() || s[j] != ']') return 0;
    return j + 1 - i;
  }
  return 0;
}

}  // namespace

PromptTextResult CollectPromptText(const Program& program, std::size_t max_pieces) {
  Collector c(max_pieces);
  return c.Run(program);
}

std::size_t NaturalLanguageWords(std::string_view text) {
  std::size_t words = 0, unspaced = 0;
  bool in_word = false, word_has_letter = false;
  std::size_t word_start = 0, token_end = std::string_view::npos;
  // Not counted, being scaffolding rather than prose: a word glued to the special token before
  // it (the role in "<|im_start|>user", "<|start_header_id|>assistant"), and a quoted JSON key
  // ("name": ).
  auto end_word = [&](std::size_t end) {
    if (in_word && word_has_letter) {
      bool after_token = word_start == token_end;
      bool json_key = word_start > 0 && text[word_start - 1] == '"' && end + 1 < text.size() &&
                      text[end] == '"' && text[end + 1] == ':';
      if (!after_token && !json_key) ++words;
    }
    in_word = word_has_letter = false;
  };
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  std::int32_t n = static_cast<std::int32_t>(std::min<std::size_t>(text.size(), 1u << 20));
  for (std::int32_t i = 0; i < n;) {
    if (std::size_t skip = SpecialTokenAt(text, std::size_t(i))) {
      end_word(std::size_t(i));
      i += static_cast<std::int32_t>(skip);
      token_end = std::size_t(i);
      continue;
    }
    std::int32_t at = i;
    UChar32 c;
    U8_NEXT(bytes, i, n, c);
    if (c < 0) {
      end_word(std::size_t(at));
      continue;
    }
    int lb = u_getIntPropertyValue(c, UCHAR_LINE_BREAK);
    if (lb == U_LB_IDEOGRAPHIC || lb == U_LB_COMPLEX_CONTEXT ||
        lb == U_LB_CONDITIONAL_JAPANESE_STARTER) {
      end_word(std::size_t(at));
      if (u_isalpha(c)) ++unspaced;
      continue;
    }
    std::int8_t type = u_charType(c);
    bool mark =
        type == U_NON_SPACING_MARK || type == U_COMBINING_SPACING_MARK || type == U_ENCLOSING_MARK;
    if (u_isalnum(c) || mark || c == '_' || ((c == '\'' || c == 0x2019 || c == '-') && in_word)) {
      if (!in_word) word_start = std::size_t(at);
      in_word = true;
      word_has_letter |= u_isalpha(c) != 0;
    } else {
      end_word(std::size_t(at));
    }
  }
  end_word(std::size_t(n));
  return words + (unspaced + 1) / 2;
}

bool IsNaturalLanguage(std::string_view text) { return NaturalLanguageWords(text) >= 3; }

std::string NormalizeLiteral(std::string_view text) {
  std::string out;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  std::int32_t n = static_cast<std::int32_t>(std::min<std::size_t>(text.size(), 1u << 24));
  bool space = false;
  for (std::int32_t i = 0; i < n;) {
    std::int32_t start = i;
    UChar32 c;
    U8_NEXT(bytes, i, n, c);
    if (c >= 0 && IsSpace(c)) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.append(text.substr(std::size_t(start), std::size_t(i - start)));
  }
  return out;
}

}  // namespace airlock::tmpl::internal
