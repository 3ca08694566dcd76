// Differential fuzz target for the detectors: on arbitrary bytes the Hyperscan and RE2::Set
// engines give the same findings (where Hyperscan is built), findings are in bounds, sorted and
// disjoint, and the StreamScanner fed the same bytes in chunks (sizes taken from the input)
// reports exactly the findings of one pass. The decoded shadow text (policy/internal/decode.h)
// is never longer than its input per round, and maps every byte back inside the input, in order.
// Every hand-written confirmer (policy/internal/confirm.h) gives RE2's match for its rule, on the
// whole input and on bounds taken from it. Every hand-written candidate finder
// (policy/internal/anchor_scan.h) covers every match of its rule's pattern (payment-card: of its
// anchor), wherever the match starts, with a region that starts by then.
#include <re2/re2.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "policy/detectors.h"
#include "policy/internal/anchor_scan.h"
#include "policy/internal/confirm.h"
#include "policy/internal/decode.h"
#include "policy/internal/rules.h"
#include "policy/stream_scanner.h"

namespace {
using airlock::policy::DetectorEngine;
using airlock::policy::DetectorSet;
using airlock::policy::Match;

std::unique_ptr<DetectorSet> Make(DetectorEngine engine) {
  if (!airlock::policy::DetectorEngineAvailable(engine)) return nullptr;
  auto set = DetectorSet::Create({.enabled = {}, .engine = engine});
  if (!set.ok()) std::abort();
  return std::move(*set);
}

struct Checked {
  airlock::policy::internal::Confirmer confirmer;
  std::unique_ptr<RE2> re;
};

std::vector<Checked> MakeChecked() {
  std::vector<Checked> out;
  for (const auto& rule : airlock::policy::internal::BuiltinRules()) {
    auto confirmer = airlock::policy::internal::ConfirmerFor(rule.id);
    if (!confirmer) continue;
    RE2::Options options;
    options.set_log_errors(false);
    out.push_back(
        {confirmer, std::make_unique<RE2>(
                        re2::StringPiece(rule.pattern.data(), rule.pattern.size()), options)});
  }
  return out;
}

void CheckConfirmer(const Checked& c, std::string_view text, std::size_t from, std::size_t limit) {
  using airlock::policy::internal::ConfirmResult;
  airlock::policy::internal::ConfirmedMatch got{};
  ConfirmResult r = c.confirmer(text, from, limit, &got);
  if (r == ConfirmResult::kUnsure) return;
  re2::StringPiece g[2];
  bool want =
      c.re->Match(re2::StringPiece(text.data(), text.size()), from, limit, RE2::UNANCHORED, g, 2);
  if (want != (r == ConfirmResult::kMatch)) std::abort();
  if (!want) return;
  auto at = [&](const re2::StringPiece& p) {
    return static_cast<std::size_t>(p.data() - text.data());
  };
  if (got.whole_begin != at(g[0]) || got.whole_end != at(g[0]) + g[0].size() ||
      got.begin != at(g[1]) || got.end != at(g[1]) + g[1].size())
    std::abort();
}

struct Finder {
  airlock::policy::internal::HandRule rule;
  std::unique_ptr<RE2> re;  // the rule's pattern, or payment-card's anchor
};

std::vector<Finder> MakeFinders() {
  std::vector<Finder> out;
  for (const auto& rule : airlock::policy::internal::BuiltinRules()) {
    auto hand = airlock::policy::internal::HandRuleFor(rule.id);
    if (!hand) continue;
    std::string_view pattern = rule.id == "payment-card" ? rule.anchor : rule.pattern;
    RE2::Options options;
    options.set_log_errors(false);
    out.push_back(
        {*hand, std::make_unique<RE2>(re2::StringPiece(pattern.data(), pattern.size()), options)});
  }
  return out;
}

void CheckFinders(std::string_view text) {
  static const std::vector<Finder> finders = MakeFinders();
  unsigned all = 0;
  for (const Finder& f : finders) all |= 1u << static_cast<int>(f.rule);
  airlock::policy::internal::HandRegions regions;
  airlock::policy::internal::FindHandAnchors(text, all, &regions);
  re2::StringPiece piece(text.data(), text.size());
  for (const Finder& f : finders) {
    const auto& mine = regions[static_cast<int>(f.rule)];
    for (std::size_t i = 0; i < mine.size(); ++i)
      if (mine[i].end > text.size() || mine[i].begin > mine[i].starts_by ||
          (i > 0 && mine[i - 1].begin > mine[i].begin))
        std::abort();
    for (std::size_t p = 0; p < text.size(); ++p) {
      re2::StringPiece whole;
      if (!f.re->Match(piece, p, text.size(), RE2::ANCHOR_START, &whole, 1)) continue;
      std::size_t begin = static_cast<std::size_t>(whole.data() - text.data());
      std::size_t end = begin + whole.size();
      bool covered = false;
      for (const auto& r : mine)
        covered = covered || (r.begin <= begin && end <= r.end && begin <= r.starts_by);
      if (!covered) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::unique_ptr<DetectorSet> re2 = Make(DetectorEngine::kRe2Set);
  static const std::unique_ptr<DetectorSet> hs = Make(DetectorEngine::kHyperscan);
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<Match> whole = re2->Scan(text);
  std::size_t last_end = 0;
  for (const Match& m : whole) {
    if (m.begin < last_end || m.begin >= m.end || m.end > size) std::abort();
    last_end = m.end;
  }
  if (hs && whole != hs->Scan(text)) std::abort();
  CheckFinders(text);
  static const std::vector<Checked> checked = MakeChecked();
  for (const Checked& c : checked) {
    CheckConfirmer(c, text, 0, size);
    if (size >= 2) {
      std::size_t from = data[0] % size, limit = from + data[1] % (size - from + 1);
      CheckConfirmer(c, text, from, limit);
    }
  }
  for (auto family : {airlock::policy::internal::DecodeFamily::kWeb,
                      airlock::policy::internal::DecodeFamily::kQuotedPrintable}) {
    airlock::policy::internal::DecodedText decoded;
    if (!decoded.Assign(text, family)) continue;
    const std::string& shadow = decoded.text();
    if (shadow.size() > size) std::abort();
    std::size_t previous_end = 0;
    for (std::size_t i = 0; i < shadow.size(); ++i) {
      std::size_t b = decoded.OriginalBegin(i), e = decoded.OriginalEnd(i + 1);
      if (b >= e || e > size || e < previous_end) std::abort();
      previous_end = e;
    }
  }
  // Chunked: small windows so that they slide over fuzz-sized inputs; chunk sizes from the data.
  airlock::policy::StreamScanner scanner(
      *re2, {.hold_back = 700, .context = 1400, .min_scan = 1, .max_window = 1 << 20});
  std::vector<Match> streamed;
  std::size_t released = 0;
  auto take = [&](std::vector<Match> found) {
    for (Match& m : found) {
      if (m.begin < released || m.end > scanner.total()) std::abort();
      streamed.push_back(std::move(m));
    }
    if (scanner.safe_to_release() < released) std::abort();
    released = scanner.safe_to_release();
  };
  for (std::size_t i = 0, k = 0; i < size; ++k) {
    std::size_t step = 1 + data[k % size] % 97;
    take(scanner.Feed(text.substr(i, step)));
    i += step;
  }
  take(scanner.Finish());
  if (whole != streamed) std::abort();
  return 0;
}
