// The grammar representation, its pushdown matcher and the JSON Schema compiler (engine/grammar.h).
//
// A grammar is a list of rules; a rule is a list of alternatives; an alternative is a sequence of
// symbols (a code-point class, possibly negated, or a reference to a rule). All alternatives are
// stored in one flat array, each ended by a kEnd symbol, so that "a position in an alternative"
// is one index. The matcher's state is a set of stacks of such positions: the top of a stack is
// the next symbol to match, the entries below are where to continue once the rules above end.
// Stacks are kept expanded: their top is always a class (or the stack is empty: the document may
// end here). A rule reference at the end of an alternative pushes no return position, so
// right-recursive repetition does not grow the stack.
//
// Kept as one file (about 1,150 lines): the representation (Sym, Grammar, Builder) is private to
// it, with no header, and the matcher, the token constraint and the JSON Schema compiler below
// (each under its own ---- rule) all build or walk it.
#include "engine/grammar.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "core/text.h"

namespace airlock::engine {

namespace {

enum class SymKind : std::uint8_t { kEnd, kChars, kNotChars, kRef };

struct Sym {
  SymKind kind = SymKind::kEnd;
  std::uint32_t a = 0;  // kChars/kNotChars: first range; kRef: rule id
  std::uint32_t b = 0;  // kChars/kNotChars: number of ranges
};

struct Range {
  char32_t lo, hi;
};

constexpr std::size_t kMaxSymbols = 200'000;
constexpr std::size_t kMaxStacks = 1024;
constexpr std::size_t kMaxStackDepth = 256;
constexpr int kMaxSchemaDepth = 64;
constexpr std::size_t kMaxEnumValues = 10'000;
constexpr std::size_t kMaxLiteralBytes = 256 << 10;
constexpr long long kMaxRepeat = 1000;

}  // namespace

class Grammar {
 public:
  std::vector<Sym> syms;
  std::vector<Range> ranges;
  std::vector<std::vector<std::uint32_t>> alts;  // rule -> start positions of its alternatives
  std::vector<std::string> names;
  std::uint32_t root = 0;

  bool ClassMatches(const Sym& s, char32_t c) const {
    bool in = false;
    for (std::uint32_t i = s.a; i < s.a + s.b; ++i) {
      if (c >= ranges[i].lo && c <= ranges[i].hi) {
        in = true;
        break;
      }
    }
    return s.kind == SymKind::kChars ? in : !in;
  }

  // Whether some code point in [lo, hi] matches the class.
  bool ClassIntersects(const Sym& s, char32_t lo, char32_t hi) const {
    if (s.kind == SymKind::kChars) {
      for (std::uint32_t i = s.a; i < s.a + s.b; ++i) {
        if (ranges[i].lo <= hi && ranges[i].hi >= lo) return true;
      }
      return false;
    }
    // Negated: true unless the ranges cover all of [lo, hi]. Ranges are sorted and merged.
    char32_t next = lo;
    for (std::uint32_t i = s.a; i < s.a + s.b; ++i) {
      if (ranges[i].lo > next) break;
      if (ranges[i].hi >= next) {
        if (ranges[i].hi >= hi) return false;
        next = ranges[i].hi + 1;
      }
    }
    return true;
  }
};

namespace {

// One symbol of an alternative while building.
struct Item {
  SymKind kind;
  std::vector<Range> ranges;  // classes
  std::uint32_t rule = 0;     // references
};

Item Chars(std::vector<Range> r) { return {SymKind::kChars, std::move(r), 0}; }
Item NotChars(std::vector<Range> r) { return {SymKind::kNotChars, std::move(r), 0}; }
Item Char(char32_t c) { return Chars({{c, c}}); }
Item Ref(std::uint32_t rule) { return {SymKind::kRef, {}, rule}; }

// Decodes UTF-8 text into code points; invalid bytes become U+FFFD (only used on our own
// literals, which nlohmann's dump produced as valid UTF-8 or escaped).
std::vector<char32_t> CodePoints(std::string_view s) {
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t c = len == 1 ? b0 : b0 & (0x7F >> len);
    for (int k = 1; k < len; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(c);
    i += len;
  }
  return out;
}

class Builder {
 public:
  Builder() : g_(std::make_shared<Grammar>()) {}

  std::uint32_t NewRule(std::string name) {
    g_->alts.emplace_back();
    g_->names.push_back(std::move(name));
    return static_cast<std::uint32_t>(g_->alts.size() - 1);
  }

  void AddAlt(std::uint32_t rule, const std::vector<Item>& items) {
    if (g_->syms.size() + items.size() + 1 > kMaxSymbols) {
      too_big_ = true;
      return;
    }
    g_->alts[rule].push_back(static_cast<std::uint32_t>(g_->syms.size()));
    for (const Item& it : items) {
      Sym s;
      s.kind = it.kind;
      if (it.kind == SymKind::kRef) {
        s.a = it.rule;
      } else {
        std::vector<Range> r = it.ranges;
        std::sort(r.begin(), r.end(), [](Range x, Range y) { return x.lo < y.lo; });
        std::vector<Range> merged;
        for (Range x : r) {
          if (!merged.empty() && x.lo <= merged.back().hi + 1) {
            merged.back().hi = std::max(merged.back().hi, x.hi);
          } else {
            merged.push_back(x);
          }
        }
        s.a = static_cast<std::uint32_t>(g_->ranges.size());
        s.b = static_cast<std::uint32_t>(merged.size());
        g_->ranges.insert(g_->ranges.end(), merged.begin(), merged.end());
      }
      g_->syms.push_back(s);
    }
    g_->syms.push_back(Sym{});
  }

  // A rule matching exactly `text`.
  std::uint32_t Literal(std::string_view text, std::string name) {
    const std::uint32_t r = NewRule(std::move(name));
    std::vector<Item> items;
    for (char32_t c : CodePoints(text)) items.push_back(Char(c));
    AddAlt(r, items);
    return r;
  }

  // A rule matching any of `texts`, shared prefixes merged (a trie), so that a long enum does not
  // become one matcher stack per value.
  std::uint32_t LiteralSet(const std::vector<std::string>& texts, const std::string& name) {
    struct Node {
      std::map<char32_t, std::size_t> next;
      bool terminal = false;
    };
    std::vector<Node> nodes(1);
    for (const std::string& t : texts) {
      std::size_t at = 0;
      for (char32_t c : CodePoints(t)) {
        auto it = nodes[at].next.find(c);
        if (it == nodes[at].next.end()) {
          nodes.emplace_back();
          it = nodes[at].next.emplace(c, nodes.size() - 1).first;
        }
        at = it->second;
      }
      nodes[at].terminal = true;
    }
    // One rule per branching node; chains of single children become one alternative.
    std::vector<std::uint32_t> rule_of(nodes.size(), UINT32_MAX);
    rule_of[0] = NewRule(name);
    std::vector<std::size_t> work{0};
    while (!work.empty() && !too_big_) {
      const std::size_t n = work.back();
      work.pop_back();
      const std::uint32_t rule = rule_of[n];
      if (nodes[n].terminal) AddAlt(rule, {});
      for (const auto& [c, child] : nodes[n].next) {
        std::vector<Item> items{Char(c)};
        std::size_t at = child;
        while (!nodes[at].terminal && nodes[at].next.size() == 1) {
          items.push_back(Char(nodes[at].next.begin()->first));
          at = nodes[at].next.begin()->second;
        }
        if (!nodes[at].terminal || !nodes[at].next.empty()) {
          rule_of[at] = NewRule(name + "-" + std::to_string(at));
          items.push_back(Ref(rule_of[at]));
          work.push_back(at);
        }
        AddAlt(rule, items);
      }
    }
    return rule_of[0];
  }

  // `item` repeated min..max times (max < 0: no limit), with `sep` between repetitions.
  std::uint32_t Repeat(const std::vector<Item>& item, const std::vector<Item>& sep, long long min,
                       long long max, const std::string& name) {
    const std::uint32_t rule = NewRule(name);
    if (max == 0) {
      AddAlt(rule, {});
      return rule;
    }
    std::vector<Item> sep_item = sep;
    sep_item.insert(sep_item.end(), item.begin(), item.end());
    // The tail after the first item: (sep item) repeated (min-1)..(max-1) times.
    const long long tail_min = std::max<long long>(0, min - 1);
    const long long tail_max = max < 0 ? -1 : max - 1;
    std::uint32_t tail = NewRule(name + "-tail");
    if (tail_max < 0) {
      // tail ::= (sep item){tail_min} more ; more ::= sep item more | ""
      const std::uint32_t more = NewRule(name + "-more");
      std::vector<Item> again = sep_item;
      again.push_back(Ref(more));
      AddAlt(more, again);
      AddAlt(more, {});
      std::vector<Item> seq;
      for (long long i = 0; i < tail_min; ++i) seq.push_back(Ref(NewSeq(sep_item, name)));
      seq.push_back(Ref(more));
      AddAlt(tail, seq);
    } else {
      // opt_k ::= sep item opt_{k-1} | "" (k optional repetitions), after tail_min required ones.
      std::uint32_t opt = NewRule(name + "-opt0");
      AddAlt(opt, {});
      for (long long k = 1; k <= tail_max - tail_min && !too_big_; ++k) {
        const std::uint32_t next = NewRule(name + "-opt" + std::to_string(k));
        std::vector<Item> seq = sep_item;
        seq.push_back(Ref(opt));
        AddAlt(next, seq);
        AddAlt(next, {});
        opt = next;
      }
      std::vector<Item> seq;
      const std::uint32_t one = NewSeq(sep_item, name);
      for (long long i = 0; i < tail_min; ++i) seq.push_back(Ref(one));
      seq.push_back(Ref(opt));
      AddAlt(tail, seq);
    }
    std::vector<Item> all = item;
    all.push_back(Ref(tail));
    AddAlt(rule, all);
    if (min == 0) AddAlt(rule, {});
    return rule;
  }

  Result<std::shared_ptr<const Grammar>> Finish(std::uint32_t root) {
    if (too_big_) {
      return InvalidArgument("json_schema: the grammar would exceed " +
                             std::to_string(kMaxSymbols) + " symbols");
    }
    g_->root = root;
    AIRLOCK_TRY(CheckLeftRecursion());
    return std::shared_ptr<const Grammar>(std::move(g_));
  }

 private:
  std::uint32_t NewSeq(const std::vector<Item>& items, const std::string& name) {
    const std::uint32_t r = NewRule(name + "-item");
    AddAlt(r, items);
    return r;
  }

  // A rule that can reach itself before consuming a character would make the matcher's
  // expansion loop forever: refuse it (it comes from a $ref cycle such as {"$ref": "#"}).
  Status CheckLeftRecursion() const {
    const Grammar& g = *g_;
    const std::size_t n = g.alts.size();
    std::vector<char> nullable(n, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (std::size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (std::uint32_t pos : g.alts[r]) {
          bool all = true;
          for (std::uint32_t p = pos; g.syms[p].kind != SymKind::kEnd; ++p) {
            if (g.syms[p].kind != SymKind::kRef || !nullable[g.syms[p].a]) {
              all = false;
              break;
            }
          }
          if (all) {
            nullable[r] = 1;
            changed = true;
            break;
          }
        }
      }
    }
    // Edges r -> s when s can start r; an iterative depth-first search finds a cycle.
    std::vector<std::vector<std::uint32_t>> edges(n);
    for (std::size_t r = 0; r < n; ++r) {
      for (std::uint32_t pos : g.alts[r]) {
        for (std::uint32_t p = pos; g.syms[p].kind == SymKind::kRef; ++p) {
          edges[r].push_back(g.syms[p].a);
          if (!nullable[g.syms[p].a]) break;
        }
      }
    }
    std::vector<char> color(n, 0);  // 0 new, 1 on the path, 2 done
    for (std::size_t start = 0; start < n; ++start) {
      if (color[start] != 0) continue;
      std::vector<std::pair<std::uint32_t, std::size_t>> path{{start, 0}};
      color[start] = 1;
      while (!path.empty()) {
        auto& [r, next] = path.back();
        if (next < edges[r].size()) {
          const std::uint32_t s = edges[r][next++];
          if (color[s] == 1) {
            return Unsupported("json_schema: a $ref cycle reaches '" + g.names[s] +
                               "' again before any character (left recursion)");
          }
          if (color[s] == 0) {
            color[s] = 1;
            path.push_back({s, 0});
          }
        } else {
          color[r] = 2;
          path.pop_back();
        }
      }
    }
    return Status::Ok();
  }

  std::shared_ptr<Grammar> g_;
  bool too_big_ = false;
};

using Stack = std::vector<std::uint32_t>;

// Expands `s` until its top is a class (or it is empty) and appends the results to `out`.
// Stacks deeper than kMaxStackDepth are dropped.
void Expand(const Grammar& g, Stack s, std::vector<Stack>& out) {
  std::vector<Stack> work;
  work.push_back(std::move(s));
  while (!work.empty()) {
    Stack st = std::move(work.back());
    work.pop_back();
    if (st.empty() || g.syms[st.back()].kind != SymKind::kRef) {
      out.push_back(std::move(st));
      continue;
    }
    const std::uint32_t pos = st.back();
    st.pop_back();
    if (g.syms[pos + 1].kind != SymKind::kEnd) st.push_back(pos + 1);
    if (st.size() >= kMaxStackDepth) continue;
    for (std::uint32_t alt : g.alts[g.syms[pos].a]) {
      Stack n = st;
      if (g.syms[alt].kind != SymKind::kEnd) n.push_back(alt);
      work.push_back(std::move(n));
    }
    if (work.size() + out.size() > 4 * kMaxStacks) break;  // pathological ambiguity: cut
  }
}

void Normalize(std::vector<Stack>& stacks) {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  if (stacks.size() > kMaxStacks) stacks.resize(kMaxStacks);
}

void Advance(const Grammar& g, const std::vector<Stack>& in, char32_t c, std::vector<Stack>& out) {
  out.clear();
  for (const Stack& st : in) {
    if (out.size() >= 4 * kMaxStacks) break;  // pathological ambiguity: cut
    if (st.empty()) continue;
    const std::uint32_t pos = st.back();
    if (!g.ClassMatches(g.syms[pos], c)) continue;
    Stack n(st.begin(), st.end() - 1);
    if (g.syms[pos + 1].kind != SymKind::kEnd) n.push_back(pos + 1);
    Expand(g, std::move(n), out);
  }
  Normalize(out);
}

int Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;  // a continuation byte, an overlong lead (C0, C1) or beyond U+10FFFF
}

}  // namespace

struct GrammarMatcher::State {
  std::vector<Stack> stacks;
  std::string partial;  // the bytes of an incomplete UTF-8 sequence at the end
};

namespace {

// Feeds `bytes` to (stacks, partial). False when some byte cannot continue.
bool Feed(const Grammar& g, std::vector<Stack>& stacks, std::string& partial,
          std::string_view bytes, std::vector<Stack>& scratch) {
  for (char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    if (partial.empty()) {
      const int len = Utf8Length(b);
      if (len == 0) return false;
      if (len > 1) {
        partial.push_back(ch);
        continue;
      }
      Advance(g, stacks, b, scratch);
      stacks.swap(scratch);
      if (stacks.empty()) return false;
      continue;
    }
    if ((b & 0xC0) != 0x80) return false;
    partial.push_back(ch);
    const auto lead = static_cast<unsigned char>(partial[0]);
    const int len = Utf8Length(lead);
    if (static_cast<int>(partial.size()) < len) continue;
    char32_t c = lead & (0x7F >> len);
    for (int k = 1; k < len; ++k) c = (c << 6) | (static_cast<unsigned char>(partial[k]) & 0x3F);
    partial.clear();
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < kMin[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
    Advance(g, stacks, c, scratch);
    stacks.swap(scratch);
    if (stacks.empty()) return false;
  }
  if (partial.empty()) return true;
  // A sequence still incomplete: some completion of it must be acceptable.
  const auto lead = static_cast<unsigned char>(partial[0]);
  const int len = Utf8Length(lead);
  char32_t lo = lead & (0x7F >> len), hi = lo;
  for (int k = 1; k < len; ++k) {
    const bool have = k < static_cast<int>(partial.size());
    const unsigned char cont = have ? static_cast<unsigned char>(partial[k]) : 0;
    lo = (lo << 6) | (have ? (cont & 0x3F) : 0x00);
    hi = (hi << 6) | (have ? (cont & 0x3F) : 0x3F);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  lo = std::max(lo, kMin[len]);
  hi = std::min<char32_t>(hi, 0x10FFFF);
  if (lo > hi) return false;
  for (const Stack& st : stacks) {
    if (!st.empty() && g.ClassIntersects(g.syms[st.back()], lo, hi)) return true;
  }
  return false;
}

}  // namespace

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar)
    : grammar_(std::move(grammar)), state_(std::make_unique<State>()) {
  Reset();
}

GrammarMatcher::~GrammarMatcher() = default;

GrammarMatcher::GrammarMatcher(const GrammarMatcher& o)
    : grammar_(o.grammar_), state_(std::make_unique<State>(*o.state_)) {}

GrammarMatcher& GrammarMatcher::operator=(const GrammarMatcher& o) {
  if (this != &o) {
    grammar_ = o.grammar_;
    state_ = std::make_unique<State>(*o.state_);
  }
  return *this;
}

void GrammarMatcher::Reset() {
  state_->stacks.clear();
  state_->partial.clear();
  const Grammar& g = *grammar_;
  for (std::uint32_t alt : g.alts[g.root]) {
    Stack s;
    if (g.syms[alt].kind != SymKind::kEnd) s.push_back(alt);
    Expand(g, std::move(s), state_->stacks);
  }
  Normalize(state_->stacks);
}

bool GrammarMatcher::CanAccept(std::string_view bytes) const {
  if (bytes.empty()) return true;
  std::vector<Stack> stacks = state_->stacks, scratch;
  std::string partial = state_->partial;
  return Feed(*grammar_, stacks, partial, bytes, scratch);
}

bool GrammarMatcher::Accept(std::string_view bytes) {
  if (bytes.empty()) return true;
  std::vector<Stack> stacks = state_->stacks, scratch;
  std::string partial = state_->partial;
  if (!Feed(*grammar_, stacks, partial, bytes, scratch)) return false;
  state_->stacks = std::move(stacks);
  state_->partial = std::move(partial);
  return true;
}

bool GrammarMatcher::IsComplete() const {
  if (!state_->partial.empty()) return false;
  for (const Stack& s : state_->stacks) {
    if (s.empty()) return true;
  }
  return false;
}

std::string GrammarMatcher::StateKey() const {
  std::string key = state_->partial;
  key.push_back('\0');
  for (const Stack& s : state_->stacks) {
    const auto n = static_cast<std::uint32_t>(s.size());
    key.append(reinterpret_cast<const char*>(&n), sizeof n);
    key.append(reinterpret_cast<const char*>(s.data()), s.size() * sizeof(std::uint32_t));
  }
  return key;
}

bool GrammarMatcher::CanContinue() const {
  for (const Stack& s : state_->stacks) {
    if (!s.empty()) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// TokenConstraint

TokenConstraint::TokenConstraint(std::shared_ptr<const Grammar> grammar, const Tokenizer& tokenizer)
    : matcher_(std::move(grammar)), tokenizer_(tokenizer) {
  const int n = tokenizer_.vocab_size();
  is_eog_.assign(n, 0);
  for (TokenId id = 0; id < n; ++id) is_eog_[id] = tokenizer_.IsEog(id) ? 1 : 0;
  if (tokenizer_.eos() != kNoToken && tokenizer_.eos() < n && is_eog_[tokenizer_.eos()]) {
    end_token_ = tokenizer_.eos();
  } else {
    for (TokenId id = 0; id < n && end_token_ == kNoToken; ++id) {
      if (is_eog_[id]) end_token_ = id;
    }
  }
}

bool TokenConstraint::IsText(TokenId id) const {
  switch (tokenizer_.GetTokenType(id)) {
    case TokenType::kControl:
    case TokenType::kUnknown:
    case TokenType::kUnused:
      return false;
    default:
      return !tokenizer_.TokenPiece(id).empty();
  }
}

bool TokenConstraint::IsAllowed(TokenId id) const {
  if (id < 0 || id >= static_cast<TokenId>(is_eog_.size())) return false;
  if (is_eog_[id]) return matcher_.IsComplete();
  if (!IsText(id)) return false;
  return matcher_.CanAccept(tokenizer_.TokenPiece(id));
}

int TokenConstraint::Allowed(std::vector<char>& allowed) const {
  constexpr std::size_t kCacheSize = 8;
  std::string key = matcher_.StateKey();
  ++uses_;
  for (CachedMask& c : cache_) {
    if (c.key == key) {
      c.last_use = uses_;
      allowed = c.allowed;
      return c.count;
    }
  }
  const int count = ComputeAllowed(allowed);
  if (cache_.size() < kCacheSize) {
    cache_.emplace_back();
  } else {
    std::sort(cache_.begin(), cache_.end(),
              [](const CachedMask& a, const CachedMask& b) { return a.last_use > b.last_use; });
  }
  CachedMask& slot = cache_.back();  // new, or the least recently used
  slot.key = std::move(key);
  slot.allowed = allowed;
  slot.count = count;
  slot.last_use = uses_;
  return count;
}

std::int32_t TokenConstraint::StateId(const GrammarMatcher& m) const {
  std::string key = m.StateKey();
  auto it = dfa_ids_.find(key);
  if (it != dfa_ids_.end()) return it->second;
  if (dfa_states_.size() >= 4096) return kFull;
  const auto id = static_cast<std::int32_t>(dfa_states_.size());
  dfa_ids_.emplace(std::move(key), id);
  dfa_states_.push_back(m);
  dfa_next_.emplace_back();
  dfa_next_.back().fill(kUnknown);
  return id;
}

std::int32_t TokenConstraint::Step(std::int32_t state, unsigned char byte) const {
  std::int32_t next = dfa_next_[state][byte];
  if (next != kUnknown) return next;
  GrammarMatcher m = dfa_states_[state];
  const char c = static_cast<char>(byte);
  next = m.Accept(std::string_view(&c, 1)) ? StateId(m) : kDead;
  if (next != kFull) dfa_next_[state][byte] = next;
  return next;
}

int TokenConstraint::ComputeAllowed(std::vector<char>& allowed) const {
  const int n = static_cast<int>(is_eog_.size());
  allowed.assign(n, 0);
  const bool complete = matcher_.IsComplete();
  int count = 0;
  if (complete && !matcher_.CanContinue()) {
    for (int id = 0; id < n; ++id) count += allowed[id] = is_eog_[id];
    return count;
  }
  if (dfa_states_.size() >= 4096) {  // full: start over
    dfa_ids_.clear();
    dfa_states_.clear();
    dfa_next_.clear();
  }
  const std::int32_t start = StateId(matcher_);
  for (int id = 0; id < n; ++id) {
    if (is_eog_[id]) {
      allowed[id] = complete;
    } else if (IsText(id)) {
      const std::string& piece = tokenizer_.TokenPiece(id);
      std::int32_t s = start;
      for (std::size_t i = 0; i < piece.size() && s >= 0; ++i) {
        s = Step(s, static_cast<unsigned char>(piece[i]));
      }
      // kFull: the automaton has no room left; ask the matcher directly.
      allowed[id] = s == kFull ? matcher_.CanAccept(piece) : s >= 0;
    }
    count += allowed[id];
  }
  return count;
}

bool TokenConstraint::Accept(TokenId id) {
  if (!IsAllowed(id)) return false;
  if (is_eog_[id]) return true;
  return matcher_.Accept(tokenizer_.TokenPiece(id));
}

// ---------------------------------------------------------------------------------------------
// JSON Schema -> grammar

namespace {

using Json = nlohmann::ordered_json;

std::string PointerEscape(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string At(const std::string& path) { return " (at " + (path.empty() ? "/" : path) + ")"; }

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const Json& root) : root_(root) {}

  Result<std::uint32_t> CompileRoot() { return Compile(root_, "", 0); }
  Builder& builder() { return b_; }

  // Shared primitive rules, created on first use.
  std::uint32_t Ws() {
    if (!ws_) {
      ws_ = b_.NewRule("ws");
      b_.AddAlt(*ws_, {Char(' ')});
      b_.AddAlt(*ws_, {});
    }
    return *ws_;
  }
  std::uint32_t StringChar() {
    if (!string_char_) {
      string_char_ = b_.NewRule("char");
      b_.AddAlt(*string_char_, {NotChars({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}})});
      const std::vector<Range> hex{{'0', '9'}, {'a', 'f'}, {'A', 'F'}};
      b_.AddAlt(*string_char_, {Char('\\'), Chars({{'"', '"'},
                                                   {'\\', '\\'},
                                                   {'/', '/'},
                                                   {'b', 'b'},
                                                   {'f', 'f'},
                                                   {'n', 'n'},
                                                   {'r', 'r'},
                                                   {'t', 't'}})});
      b_.AddAlt(*string_char_,
                {Char('\\'), Char('u'), Chars(hex), Chars(hex), Chars(hex), Chars(hex)});
    }
    return *string_char_;
  }
  std::uint32_t String(long long min = 0, long long max = -1) {
    if (min == 0 && max < 0 && string_) return *string_;
    const std::uint32_t chars = b_.Repeat({Ref(StringChar())}, {}, min, max, "string-chars");
    const std::uint32_t r = b_.NewRule("string");
    b_.AddAlt(r, {Char('"'), Ref(chars), Char('"')});
    if (min == 0 && max < 0) string_ = r;
    return r;
  }
  std::uint32_t Integer() {
    if (!integer_) {
      const std::uint32_t digits = b_.Repeat({Chars({{'0', '9'}})}, {}, 0, 15, "int-digits");
      const std::uint32_t magnitude = b_.NewRule("int-magnitude");
      b_.AddAlt(magnitude, {Char('0')});
      b_.AddAlt(magnitude, {Chars({{'1', '9'}}), Ref(digits)});
      integer_ = b_.NewRule("integer");
      b_.AddAlt(*integer_, {Char('-'), Ref(magnitude)});
      b_.AddAlt(*integer_, {Ref(magnitude)});
    }
    return *integer_;
  }
  std::uint32_t Number() {
    if (!number_) {
      const std::uint32_t frac_digits = b_.Repeat({Chars({{'0', '9'}})}, {}, 1, 16, "frac-digits");
      const std::uint32_t frac = b_.NewRule("frac");
      b_.AddAlt(frac, {Char('.'), Ref(frac_digits)});
      b_.AddAlt(frac, {});
      const std::uint32_t exp_digits = b_.Repeat({Chars({{'0', '9'}})}, {}, 1, 3, "exp-digits");
      const std::uint32_t exp = b_.NewRule("exp");
      b_.AddAlt(
          exp, {Chars({{'e', 'e'}, {'E', 'E'}}), Chars({{'+', '+'}, {'-', '-'}}), Ref(exp_digits)});
      b_.AddAlt(exp, {Chars({{'e', 'e'}, {'E', 'E'}}), Ref(exp_digits)});
      b_.AddAlt(exp, {});
      number_ = b_.NewRule("number");
      b_.AddAlt(*number_, {Ref(Integer()), Ref(frac), Ref(exp)});
    }
    return *number_;
  }
  std::uint32_t Boolean() {
    if (!boolean_) boolean_ = b_.LiteralSet({"true", "false"}, "boolean");
    return *boolean_;
  }
  std::uint32_t Null() {
    if (!null_) null_ = b_.Literal("null", "null");
    return *null_;
  }
  // Any JSON value, and any object / array (recursive: value refers back to them).
  std::uint32_t Value() {
    if (value_) return *value_;
    value_ = b_.NewRule("value");
    const std::uint32_t v = *value_;
    b_.AddAlt(v, {Ref(AnyObject())});
    b_.AddAlt(v, {Ref(AnyArray())});
    b_.AddAlt(v, {Ref(String())});
    b_.AddAlt(v, {Ref(Number())});
    b_.AddAlt(v, {Ref(Boolean())});
    b_.AddAlt(v, {Ref(Null())});
    return v;
  }
  std::uint32_t AnyObject() {
    if (!any_object_) {
      any_object_ = b_.NewRule("object");
      const std::uint32_t member = b_.NewRule("member");
      b_.AddAlt(member, {Ref(String()), Char(':'), Ref(Ws()), Ref(Value())});
      const std::uint32_t members =
          b_.Repeat({Ref(member)}, {Char(','), Ref(Ws())}, 0, -1, "members");
      b_.AddAlt(*any_object_, {Char('{'), Ref(members), Char('}')});
    }
    return *any_object_;
  }
  std::uint32_t AnyArray() {
    if (!any_array_) {
      any_array_ = b_.NewRule("array");
      const std::uint32_t elements =
          b_.Repeat({Ref(Value())}, {Char(','), Ref(Ws())}, 0, -1, "elements");
      b_.AddAlt(*any_array_, {Char('['), Ref(elements), Char(']')});
    }
    return *any_array_;
  }

 private:
  Result<long long> Count(const Json& s, const char* key, long long fallback,
                          const std::string& path) {
    auto it = s.find(key);
    if (it == s.end()) return fallback;
    if (!it->is_number_integer() && !it->is_number_unsigned()) {
      return InvalidArgument(std::string("json_schema: '") + key + "' must be an integer" +
                             At(path));
    }
    if (it->is_number_integer() && it->get<long long>() < 0) {
      return InvalidArgument(std::string("json_schema: '") + key + "' is negative" + At(path));
    }
    if (it->is_number_unsigned() ? it->get<unsigned long long>() > kMaxRepeat
                                 : it->get<long long>() > kMaxRepeat) {
      return Unsupported(std::string("json_schema: '") + key + "' above " +
                         std::to_string(kMaxRepeat) + " is not supported" + At(path));
    }
    return it->get<long long>();
  }

  Result<std::uint32_t> LiteralOf(const std::vector<const Json*>& values, const std::string& path) {
    std::vector<std::string> texts;
    for (const Json* v : values) {
      texts.push_back(v->dump(-1, ' ', false, Json::error_handler_t::replace));
      literal_bytes_ += texts.back().size();
      if (literal_bytes_ > kMaxLiteralBytes) {
        return InvalidArgument("json_schema: enum/const values exceed 256 KiB" + At(path));
      }
    }
    return b_.LiteralSet(texts, "literal");
  }

  Result<std::uint32_t> Compile(const Json& s, const std::string& path, int depth) {
    if (depth > kMaxSchemaDepth)
      return InvalidArgument("json_schema: nested too deeply" + At(path));
    if (s.is_boolean()) {
      if (s.get<bool>()) return Value();
      return Unsupported("json_schema: the schema 'false' matches nothing" + At(path));
    }
    if (!s.is_object())
      return InvalidArgument("json_schema: a schema must be an object" + At(path));
    static const char* const kKnown[] = {
        "type",        "properties", "required",    "additionalProperties",
        "items",       "minItems",   "maxItems",    "minLength",
        "maxLength",   "enum",       "const",       "anyOf",
        "oneOf",       "allOf",      "$ref",        "$defs",
        "definitions", "title",      "description", "default",
        "examples",    "$schema",    "$id",         "$comment",
        "format",      "strict",     "name"};
    for (const auto& item : s.items()) {
      const std::string& key = item.key();
      if (std::find_if(std::begin(kKnown), std::end(kKnown),
                       [&](const char* k) { return key == k; }) == std::end(kKnown)) {
        return Unsupported("json_schema: keyword '" + key + "' is not supported" + At(path));
      }
    }
    if (auto ref = s.find("$ref"); ref != s.end()) return CompileRef(s, *ref, path, depth);
    if (auto c = s.find("const"); c != s.end()) return LiteralOf({&*c}, path + "/const");
    if (auto e = s.find("enum"); e != s.end()) {
      if (!e->is_array() || e->empty()) {
        return InvalidArgument("json_schema: 'enum' must be a non-empty array" + At(path));
      }
      if (e->size() > kMaxEnumValues) {
        return Unsupported("json_schema: 'enum' has more than " + std::to_string(kMaxEnumValues) +
                           " values" + At(path));
      }
      std::vector<const Json*> values;
      for (const Json& v : *e) values.push_back(&v);
      return LiteralOf(values, path + "/enum");
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      auto it = s.find(key);
      if (it == s.end()) continue;
      if (!it->is_array() || it->empty()) {
        return InvalidArgument(std::string("json_schema: '") + key + "' must be a non-empty array" +
                               At(path));
      }
      const std::uint32_t rule = b_.NewRule(key);
      for (std::size_t i = 0; i < it->size(); ++i) {
        AIRLOCK_ASSIGN_OR_RETURN(
            std::uint32_t alt,
            Compile((*it)[i], path + "/" + key + "/" + std::to_string(i), depth + 1));
        b_.AddAlt(rule, {Ref(alt)});
      }
      return rule;
    }
    if (auto all = s.find("allOf"); all != s.end()) {
      if (!all->is_array() || all->size() != 1) {
        return Unsupported("json_schema: 'allOf' is supported with exactly one schema" + At(path));
      }
      return Compile((*all)[0], path + "/allOf/0", depth + 1);
    }
    auto type = s.find("type");
    if (type == s.end()) {
      if (s.contains("properties") || s.contains("additionalProperties")) {
        return CompileTyped(s, "object", path, depth);
      }
      if (s.contains("items")) return CompileTyped(s, "array", path, depth);
      if (s.contains("minLength") || s.contains("maxLength")) {
        return CompileTyped(s, "string", path, depth);
      }
      return Value();
    }
    if (type->is_string()) return CompileTyped(s, type->get<std::string>(), path, depth);
    if (type->is_array() && !type->empty()) {
      const std::uint32_t rule = b_.NewRule("types");
      for (const Json& t : *type) {
        if (!t.is_string()) {
          return InvalidArgument("json_schema: 'type' entries must be strings" + At(path));
        }
        AIRLOCK_ASSIGN_OR_RETURN(std::uint32_t alt,
                                 CompileTyped(s, t.get<std::string>(), path, depth));
        b_.AddAlt(rule, {Ref(alt)});
      }
      return rule;
    }
    return InvalidArgument("json_schema: 'type' must be a string or a list of strings" + At(path));
  }

  Result<std::uint32_t> CompileRef(const Json& s, const Json& ref, const std::string& path,
                                   int depth) {
    for (const auto& [key, unused] : s.items()) {
      if (key != "$ref" && key != "title" && key != "description" && key != "$comment" &&
          key != "$defs" && key != "definitions" && key != "$schema" && key != "$id") {
        return Unsupported("json_schema: '" + key + "' beside '$ref' is not supported" + At(path));
      }
    }
    if (!ref.is_string()) return InvalidArgument("json_schema: '$ref' must be a string" + At(path));
    const std::string target = ref.get<std::string>();
    if (target.empty() || target[0] != '#') {
      return Unsupported("json_schema: only local '$ref' (\"#...\") is supported" + At(path));
    }
    if (auto it = refs_.find(target); it != refs_.end()) return it->second;
    const Json* resolved = nullptr;
    if (target == "#") {
      resolved = &root_;
    } else {
      try {
        const Json::json_pointer pointer(target.substr(1));
        if (root_.contains(pointer)) resolved = &root_.at(pointer);
      } catch (const std::exception&) {
        return InvalidArgument("json_schema: '$ref' \"" + target + "\" is not a JSON pointer" +
                               At(path));
      }
    }
    if (resolved == nullptr) {
      return InvalidArgument("json_schema: '$ref' \"" + target + "\" does not resolve" + At(path));
    }
    // The rule exists before its body is compiled, so recursive references find it.
    const std::uint32_t rule = b_.NewRule("ref" + target);
    refs_.emplace(target, rule);
    AIRLOCK_ASSIGN_OR_RETURN(std::uint32_t body, Compile(*resolved, target.substr(1), depth + 1));
    b_.AddAlt(rule, {Ref(body)});
    return rule;
  }

  Result<std::uint32_t> CompileTyped(const Json& s, const std::string& type,
                                     const std::string& path, int depth) {
    if (type == "string") {
      AIRLOCK_ASSIGN_OR_RETURN(long long min, Count(s, "minLength", 0, path));
      AIRLOCK_ASSIGN_OR_RETURN(long long max, Count(s, "maxLength", -1, path));
      if (max >= 0 && max < min) {
        return InvalidArgument("json_schema: maxLength below minLength" + At(path));
      }
      return String(min, max);
    }
    if (type == "number") return Number();
    if (type == "integer") return Integer();
    if (type == "boolean") return Boolean();
    if (type == "null") return Null();
    if (type == "array") {
      std::uint32_t item = 0;
      if (auto it = s.find("items"); it != s.end()) {
        AIRLOCK_ASSIGN_OR_RETURN(item, Compile(*it, path + "/items", depth + 1));
      } else {
        item = Value();
      }
      AIRLOCK_ASSIGN_OR_RETURN(long long min, Count(s, "minItems", 0, path));
      AIRLOCK_ASSIGN_OR_RETURN(long long max, Count(s, "maxItems", -1, path));
      if (max >= 0 && max < min) {
        return InvalidArgument("json_schema: maxItems below minItems" + At(path));
      }
      const std::uint32_t elements =
          b_.Repeat({Ref(item)}, {Char(','), Ref(Ws())}, min, max, "items");
      const std::uint32_t rule = b_.NewRule("array");
      b_.AddAlt(rule, {Char('['), Ref(elements), Char(']')});
      return rule;
    }
    if (type == "object") return CompileObject(s, path, depth);
    return Unsupported("json_schema: type '" + type + "' is not supported" + At(path));
  }

  Result<std::uint32_t> CompileObject(const Json& s, const std::string& path, int depth) {
    auto props = s.find("properties");
    auto extra = s.find("additionalProperties");
    if (props == s.end()) {
      if (extra == s.end() || (extra->is_boolean() && extra->get<bool>())) return AnyObject();
      if (extra->is_boolean()) {  // false and no properties: only {}
        return b_.Literal("{}", "empty-object");
      }
      // A map: string keys to values of one schema.
      AIRLOCK_ASSIGN_OR_RETURN(std::uint32_t value,
                               Compile(*extra, path + "/additionalProperties", depth + 1));
      const std::uint32_t member = b_.NewRule("map-member");
      b_.AddAlt(member, {Ref(String()), Char(':'), Ref(Ws()), Ref(value)});
      const std::uint32_t members =
          b_.Repeat({Ref(member)}, {Char(','), Ref(Ws())}, 0, -1, "map-members");
      const std::uint32_t rule = b_.NewRule("map");
      b_.AddAlt(rule, {Char('{'), Ref(members), Char('}')});
      return rule;
    }
    if (!props->is_object()) {
      return InvalidArgument("json_schema: 'properties' must be an object" + At(path));
    }
    if (extra != s.end() && !(extra->is_boolean() && !extra->get<bool>())) {
      return Unsupported(
          "json_schema: 'additionalProperties' other than false beside 'properties' is not "
          "supported" +
          At(path));
    }
    std::vector<std::string> required;
    if (auto req = s.find("required"); req != s.end()) {
      if (!req->is_array())
        return InvalidArgument("json_schema: 'required' must be an array" + At(path));
      for (const Json& r : *req) {
        if (!r.is_string()) {
          return InvalidArgument("json_schema: 'required' entries must be strings" + At(path));
        }
        if (!props->contains(r.get<std::string>())) {
          return Unsupported("json_schema: required property '" + r.get<std::string>() +
                             "' is not in 'properties'" + At(path));
        }
        required.push_back(r.get<std::string>());
      }
    }
    // One "key": value rule per property, in the schema's order.
    struct Prop {
      std::uint32_t kv;
      bool required;
    };
    std::vector<Prop> list;
    for (const auto& [key, schema] : props->items()) {
      AIRLOCK_ASSIGN_OR_RETURN(
          std::uint32_t value,
          Compile(schema, path + "/properties/" + PointerEscape(key), depth + 1));
      const std::string key_text = Json(key).dump(-1, ' ', false, Json::error_handler_t::replace);
      const std::uint32_t kv = b_.NewRule("kv-" + key);
      std::vector<Item> items;
      for (char32_t c : CodePoints(key_text)) items.push_back(Char(c));
      items.push_back(Char(':'));
      items.push_back(Ref(Ws()));
      items.push_back(Ref(value));
      b_.AddAlt(kv, items);
      list.push_back({kv, std::find(required.begin(), required.end(), key) != required.end()});
    }
    // after[i]: properties i.. when some property was already written (each prefixed by ',');
    // first[i]: the same when none was. Optional properties may be skipped.
    const std::size_t n = list.size();
    std::vector<std::uint32_t> after(n + 1), first(n + 1);
    after[n] = b_.NewRule("props-end");
    b_.AddAlt(after[n], {});
    first[n] = after[n];
    for (std::size_t i = n; i-- > 0;) {
      after[i] = b_.NewRule("props-after");
      b_.AddAlt(after[i], {Char(','), Ref(Ws()), Ref(list[i].kv), Ref(after[i + 1])});
      if (!list[i].required) b_.AddAlt(after[i], {Ref(after[i + 1])});
      first[i] = b_.NewRule("props-first");
      b_.AddAlt(first[i], {Ref(list[i].kv), Ref(after[i + 1])});
      if (!list[i].required) b_.AddAlt(first[i], {Ref(first[i + 1])});
    }
    const std::uint32_t rule = b_.NewRule("object");
    b_.AddAlt(rule, {Char('{'), Ref(first[0]), Char('}')});
    return rule;
  }

  const Json& root_;
  Builder b_;
  std::map<std::string, std::uint32_t> refs_;
  std::size_t literal_bytes_ = 0;
  std::optional<std::uint32_t> ws_, string_char_, string_, integer_, number_, boolean_, null_,
      value_, any_object_, any_array_;
};

}  // namespace

Result<std::shared_ptr<const Grammar>> CompileJsonSchema(std::string_view schema_json) {
  if (core::JsonNestingDepth(schema_json, kMaxSchemaDepth) >
      static_cast<std::size_t>(kMaxSchemaDepth)) {
    return InvalidArgument("json_schema: nested deeper than " + std::to_string(kMaxSchemaDepth) +
                           " levels");
  }
  Json schema = Json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return InvalidArgument("json_schema: not valid JSON");
  try {
    SchemaCompiler compiler(schema);
    AIRLOCK_ASSIGN_OR_RETURN(std::uint32_t root, compiler.CompileRoot());
    return compiler.builder().Finish(root);
  } catch (const std::exception& e) {  // nlohmann accessors on unexpected shapes
    return InvalidArgument(std::string("json_schema: ") + e.what());
  }
}

std::shared_ptr<const Grammar> JsonObjectGrammar() {
  static const std::shared_ptr<const Grammar> grammar = [] {
    Json empty = Json::object();
    SchemaCompiler compiler(empty);
    const std::uint32_t root = compiler.AnyObject();
    auto g = compiler.builder().Finish(root);
    return g ? *g : nullptr;
  }();
  return grammar;
}

std::string GrammarToText(const Grammar& g) {
  auto char_text = [](char32_t c) -> std::string {
    if (c == '"' || c == '\\' || c == ']' || c == '[' || c == '-' || c == '^') {
      return std::string("\\") + static_cast<char>(c);
    }
    if (c >= 0x20 && c < 0x7F) return std::string(1, static_cast<char>(c));
    char buf[16];
    std::snprintf(buf, sizeof buf, "\\x{%X}", static_cast<unsigned>(c));
    return buf;
  };
  std::string out;
  for (std::size_t r = 0; r < g.alts.size(); ++r) {
    out += g.names[r] + "-" + std::to_string(r) + " ::=";
    for (std::size_t k = 0; k < g.alts[r].size(); ++k) {
      if (k > 0) out += " |";
      std::uint32_t p = g.alts[r][k];
      if (g.syms[p].kind == SymKind::kEnd) out += " \"\"";
      for (; g.syms[p].kind != SymKind::kEnd; ++p) {
        const Sym& s = g.syms[p];
        if (s.kind == SymKind::kRef) {
          out += " " + g.names[s.a] + "-" + std::to_string(s.a);
          continue;
        }
        out += s.kind == SymKind::kNotChars ? " [^" : " [";
        for (std::uint32_t i = s.a; i < s.a + s.b; ++i) {
          out += char_text(g.ranges[i].lo);
          if (g.ranges[i].hi != g.ranges[i].lo) out += "-" + char_text(g.ranges[i].hi);
        }
        out += "]";
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace airlock::engine
