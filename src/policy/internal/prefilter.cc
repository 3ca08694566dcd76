#include "policy/internal/prefilter.h"

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <limits>

#include "policy/internal/anchor_scan.h"

#ifdef AIRLOCK_HAVE_HYPERSCAN
#include <hs/hs.h>
#endif

namespace airlock::policy::internal {
namespace {

// Adds every rule's regions as "the whole text" (the portable path, and the fallback when an
// engine fails at scan time).
void WholeText(std::size_t rule_count, std::size_t text_size, const std::vector<int>* only,
               Candidates* out) {
  out->Clear();
  auto add = [&](int rule) {
    out->rules.push_back({rule, out->regions.size(), out->regions.size() + 1});
    out->regions.push_back({0, text_size, text_size, text_size});
  };
  if (only) {
    for (int rule : *only) add(rule);
  } else {
    for (std::size_t i = 0; i < rule_count; ++i) add(static_cast<int>(i));
  }
}

// Sets each region's group_end: the end of the run of overlapping regions it belongs to.
void SetGroupEnds(std::vector<Region>::iterator first, std::vector<Region>::iterator last) {
  for (auto group = first; group != last;) {
    std::size_t end = group->end;
    auto next = group + 1;
    while (next != last && next->begin < end) end = std::max(end, (next++)->end);
    for (auto it = group; it != next; ++it) it->group_end = end;
    group = next;
  }
}

class Re2SetPrefilter final : public Prefilter {
 public:
  explicit Re2SetPrefilter(std::size_t rule_count, std::unique_ptr<RE2::Set> set)
      : rule_count_(rule_count), set_(std::move(set)) {}
  std::string_view name() const override { return "re2-set"; }
  void Find(std::string_view text, Candidates* out) const override {
    out->Clear();
    if (rule_count_ == 0) return;
    std::vector<int> matched;
    RE2::Set::ErrorInfo info{};
    if (!set_->Match(re2::StringPiece(text.data(), text.size()), &matched, &info)) {
      // No rule can match, or the DFA ran out of memory: then every rule runs (still linear).
      if (info.kind != RE2::Set::kNoError) WholeText(rule_count_, text.size(), nullptr, out);
      return;
    }
    std::sort(matched.begin(), matched.end());
    WholeText(rule_count_, text.size(), &matched, out);
  }

 private:
  std::size_t rule_count_;
  std::unique_ptr<RE2::Set> set_;
};

#ifdef AIRLOCK_HAVE_HYPERSCAN

constexpr unsigned kUnbounded = std::numeric_limits<unsigned>::max();

class HyperscanPrefilter final : public Prefilter {
 public:
  // Where a rule's match can lie around a report at offset `to`: [to - before, to + after], or
  // from the start of the text when `before` is unbounded.
  struct Reach {
    unsigned before, after;
  };
  // A rule whose candidates a hand-written finder gives (internal/anchor_scan.h), by index.
  struct HandRuleIndex {
    unsigned rule;
    HandRule finder;
  };
  // `dbs`: the shared database first, then those of rules with own_database (see rules.h); none
  // when every rule has a hand-written finder.
  HyperscanPrefilter(std::vector<hs_database_t*> dbs, std::vector<Reach> reach,
                     std::vector<HandRuleIndex> hand)
      : dbs_(std::move(dbs)), reach_(std::move(reach)), hand_(std::move(hand)) {
    for (const HandRuleIndex& h : hand_) hand_set_ |= 1u << static_cast<int>(h.finder);
  }
  ~HyperscanPrefilter() override {
    for (hs_database_t* db : dbs_) hs_free_database(db);
  }
  std::string_view name() const override { return "hyperscan"; }

  void Find(std::string_view text, Candidates* out) const override {
    out->Clear();
    Scratch& scratch = ThreadScratch();
    if (!dbs_.empty() && (scratch.space == nullptr || scratch.owner_db != dbs_.front())) {
      // One scratch per thread, grown to fit every database this thread scans with.
      if (!AllocScratch(&scratch.space)) {
        WholeText(reach_.size(), text.size(), nullptr, out);
        return;
      }
      scratch.owner_db = dbs_.front();
    }
    if (text.size() > std::numeric_limits<unsigned>::max()) {  // beyond hs_scan's length type
      WholeText(reach_.size(), text.size(), nullptr, out);
      return;
    }
    Collector c{this, text.size(), {}, {}, {}};
    c.last.assign(reach_.size(), kNone);
    c.unsorted.assign(reach_.size(), false);
    hs_error_t err = ScanAll(text, scratch.space, &c);
    if (err == HS_INVALID && AllocScratch(&scratch.space)) {
      // A database at the address of a freed one: the scratch was never sized for it.
      c.regions.clear();
      c.last.assign(reach_.size(), kNone);
      c.unsorted.assign(reach_.size(), false);
      err = ScanAll(text, scratch.space, &c);
    }
    if (err != HS_SUCCESS) {
      WholeText(reach_.size(), text.size(), nullptr, out);
      return;
    }
    if (!hand_.empty()) {
      // Appended after Hyperscan's reports, one rule at a time and sorted by begin.
      FindHandAnchors(text, hand_set_, &scratch.hand_regions);
      for (const HandRuleIndex& hand : hand_)
        for (const AnchorRegion& r : scratch.hand_regions[static_cast<int>(hand.finder)])
          c.Add(hand.rule, r.begin, r.end, r.starts_by);
    }
    // Group by rule, keeping each rule's regions in their order (a counting sort: rules are
    // few, regions many).
    std::vector<std::size_t> first_of_rule(reach_.size() + 1, 0);
    for (const auto& [rule, region] : c.regions)
      ++first_of_rule[static_cast<std::size_t>(rule) + 1];
    for (std::size_t r = 0; r < reach_.size(); ++r) first_of_rule[r + 1] += first_of_rule[r];
    out->regions.resize(c.regions.size());
    {
      std::vector<std::size_t> fill(first_of_rule.begin(), first_of_rule.end() - 1);
      for (const auto& [rule, region] : c.regions) out->regions[fill[rule]++] = region;
    }
    for (std::size_t rule = 0; rule < reach_.size(); ++rule) {
      auto first = out->regions.begin() + static_cast<std::ptrdiff_t>(first_of_rule[rule]);
      auto last = out->regions.begin() + static_cast<std::ptrdiff_t>(first_of_rule[rule + 1]);
      if (first == last) continue;
      if (c.unsorted[rule])
        std::sort(first, last, [](const Region& x, const Region& y) { return x.begin < y.begin; });
      SetGroupEnds(first, last);
      out->rules.push_back({static_cast<int>(rule), first_of_rule[rule], first_of_rule[rule + 1]});
    }
  }

 private:
  static constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();
  // Reports closer than this to the previous region's start extend it instead of adding one:
  // the start bound gets at most this much looser, and memory stays O(text / kCoalesce).
  static constexpr std::size_t kCoalesce = 64;

  struct Scratch {
    hs_scratch_t* space = nullptr;
    const hs_database_t* owner_db = nullptr;
    HandRegions hand_regions;  // reused from scan to scan
    ~Scratch() {
      if (space) hs_free_scratch(space);
    }
  };
  static Scratch& ThreadScratch() {
    thread_local Scratch scratch;
    return scratch;
  }

  struct Collector;

  bool AllocScratch(hs_scratch_t** space) const {
    for (hs_database_t* db : dbs_)
      if (hs_alloc_scratch(db, space) != HS_SUCCESS) return false;
    return true;
  }
  // Each rule is in one database only, so a rule's reports still come in one scan.
  hs_error_t ScanAll(std::string_view text, hs_scratch_t* space, Collector* c) const {
    for (hs_database_t* db : dbs_) {
      hs_error_t err = hs_scan(db, text.data(), static_cast<unsigned>(text.size()), 0, space,
                               &Collector::OnMatch, c);
      if (err != HS_SUCCESS) return err;
    }
    return HS_SUCCESS;
  }

  struct Collector {
    const HyperscanPrefilter* self;
    std::size_t text_size;
    std::vector<std::size_t> last;  // per rule: index in `regions` of its last region, or kNone
    std::vector<bool> unsorted;
    std::vector<std::pair<int, Region>> regions;

    static int OnMatch(unsigned id, unsigned long long /*from*/, unsigned long long to, unsigned,
                       void* ctx) {
      auto* c = static_cast<Collector*>(ctx);
      const Reach& reach = c->self->reach_[id];
      std::size_t begin = reach.before == kUnbounded || to < reach.before
                              ? 0
                              : static_cast<std::size_t>(to - reach.before);
      std::size_t end =
          std::min<std::size_t>(c->text_size, static_cast<std::size_t>(to) + reach.after);
      c->Add(id, begin, end, static_cast<std::size_t>(to));
      return 0;  // continue
    }

    void Add(unsigned id, std::size_t begin, std::size_t end, std::size_t starts_by) {
      std::size_t& last_index = last[id];
      if (last_index != kNone) {
        Region& prev = regions[last_index].second;
        if (begin >= prev.begin && begin - prev.begin < kCoalesce) {
          prev.end = std::max(prev.end, end);
          prev.starts_by = std::max(prev.starts_by, starts_by);
          return;
        }
        // Reports out of end order (Hyperscan does not promise the order): sort at the end.
        if (begin < prev.begin) unsorted[id] = true;
      }
      last_index = regions.size();
      regions.push_back({static_cast<int>(id), Region{begin, end, end, starts_by}});
    }
  };

  std::vector<hs_database_t*> dbs_;
  std::vector<Reach> reach_;  // per rule
  std::vector<HandRuleIndex> hand_;
  unsigned hand_set_ = 0;  // bit per HandRule in hand_
};

#endif  // AIRLOCK_HAVE_HYPERSCAN

}  // namespace

std::string BytewisePattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false, negated = false, class_done = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (class_done) {
      // Right after a negated class: each RE2 character of it is 1..4 bytes.
      class_done = false;
      if (c == '{') {
        std::size_t close = p.find('}', i);
        std::string_view body = p.substr(i + 1, close - i - 1);
        std::size_t comma = body.find(',');
        if (comma == std::string_view::npos) {
          int n = std::stoi(std::string(body));
          out += "{" + std::to_string(n) + "," + std::to_string(4 * n) + "}";
        } else if (comma + 1 == body.size()) {
          out += "{" + std::string(body) + "}";
        } else {
          int lo = std::stoi(std::string(body.substr(0, comma)));
          int hi = std::stoi(std::string(body.substr(comma + 1)));
          out += "{" + std::to_string(lo) + "," + std::to_string(4 * hi) + "}";
        }
        i = close;
        continue;
      }
      if (c == '?') {
        out += "{0,4}";
        continue;
      }
      if (c != '*' && c != '+') out += "{1,4}";
    }
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += in_class ? "\\t\\n\\f\\r " : "[\\t\\n\\f\\r ]";
      } else if (e == 'w') {
        out += in_class ? "0-9A-Za-z_" : "[0-9A-Za-z_]";
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      negated = i + 1 < p.size() && p[i + 1] == '^';
      out += c;
      continue;
    }
    if (in_class && c == ']') {
      in_class = false;
      out += c;
      class_done = negated;
      continue;
    }
    out += c;
  }
  if (class_done) out += "{1,4}";
  return out;
}

bool HyperscanBuilt() {
#ifdef AIRLOCK_HAVE_HYPERSCAN
  return true;
#else
  return false;
#endif
}

Result<std::unique_ptr<Prefilter>> MakeRe2SetPrefilter(std::span<const Rule* const> rules) {
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(64 << 20);
  auto set = std::make_unique<RE2::Set>(options, RE2::UNANCHORED);
  for (const Rule* rule : rules) {
    std::string error;
    if (set->Add(re2::StringPiece(rule->pattern.data(), rule->pattern.size()), &error) < 0)
      return Internal("policy: detector set at " + std::string(rule->id) + ": " + error);
  }
  if (!rules.empty() && !set->Compile()) return Internal("policy: detector set: compile failed");
  return std::unique_ptr<Prefilter>(new Re2SetPrefilter(rules.size(), std::move(set)));
}

Result<std::unique_ptr<Prefilter>> MakeHyperscanPrefilter(std::span<const Rule* const> rules) {
#ifndef AIRLOCK_HAVE_HYPERSCAN
  (void)rules;
  return Unavailable("policy: built without Hyperscan (AIRLOCK_DETECTOR_ENGINE)");
#else
  if (hs_valid_platform() != HS_SUCCESS)
    return Unavailable("policy: this CPU lacks what Hyperscan needs (SSSE3)");
  if (rules.empty()) return Unavailable("policy: Hyperscan needs at least one rule");
  std::vector<std::string> patterns;
  std::vector<unsigned> flags, ids;
  std::vector<HyperscanPrefilter::Reach> reach;
  std::vector<HyperscanPrefilter::HandRuleIndex> hand;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Rule& rule = *rules[i];
    ids.push_back(static_cast<unsigned>(i));
    flags.push_back(0);  // end offsets only: start-of-match tracking is slow or unsupported
    if (std::optional<HandRule> finder = HandRuleFor(rule.id)) {
      hand.push_back({static_cast<unsigned>(i), *finder});
      patterns.emplace_back();  // keeps `patterns` indexed by rule; not compiled
      reach.push_back({0, 0});
      continue;
    }
    if (!rule.anchor.empty()) {
      patterns.push_back(BytewisePattern(rule.anchor));
      reach.push_back({rule.anchor_before, rule.anchor_after});
      continue;
    }
    patterns.push_back(BytewisePattern(rule.pattern));
    hs_expr_info_t* info = nullptr;
    hs_compile_error_t* error = nullptr;
    if (hs_expression_info(patterns.back().c_str(), 0, &info, &error) != HS_SUCCESS) {
      std::string message = error ? error->message : "unknown error";
      hs_free_compile_error(error);
      return Internal("policy: Hyperscan rejects rule " + std::string(rule.id) + ": " + message);
    }
    // A match ending at `to` starts at or after to - max_width (unbounded: anywhere before).
    reach.push_back({info->max_width == UINT_MAX ? kUnbounded : info->max_width, 0});
    std::free(info);
  }
  // The shared database, then one per rule that asks for its own.
  std::vector<std::vector<std::size_t>> groups(1);
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (HandRuleFor(rules[i]->id)) continue;
    if (rules[i]->own_database)
      groups.push_back({i});
    else
      groups.front().push_back(i);
  }
  if (groups.front().empty()) groups.erase(groups.begin());
  std::vector<hs_database_t*> dbs;
  for (const auto& group : groups) {
    std::vector<const char*> expressions;
    std::vector<unsigned> group_flags, group_ids;
    for (std::size_t i : group) {
      expressions.push_back(patterns[i].c_str());
      group_flags.push_back(flags[i]);
      group_ids.push_back(ids[i]);
    }
    hs_database_t* db = nullptr;
    hs_compile_error_t* error = nullptr;
    if (hs_compile_multi(expressions.data(), group_flags.data(), group_ids.data(),
                         static_cast<unsigned>(expressions.size()), HS_MODE_BLOCK, nullptr, &db,
                         &error) != HS_SUCCESS) {
      std::string message = error ? error->message : "unknown error";
      int at = error ? error->expression : -1;
      hs_free_compile_error(error);
      for (hs_database_t* done : dbs) hs_free_database(done);
      return Internal("policy: Hyperscan database: " + message +
                      (at >= 0 ? " (rule " + std::string(rules[group[at]]->id) + ")" : ""));
    }
    dbs.push_back(db);
  }
  return std::unique_ptr<Prefilter>(
      new HyperscanPrefilter(std::move(dbs), std::move(reach), std::move(hand)));
#endif
}

}  // namespace airlock::policy::internal
