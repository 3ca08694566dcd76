// Policy fuzz target: arbitrary bytes go through the detectors (which must return in-bounds,
// sorted, disjoint matches), the pseudonymizer round trip and stream restorer, the <think>
// splitter (the same split for any chunking, with and without a model's own markers), and the
// TOML policy parser (which must fail cleanly, never crash).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "policy/detectors.h"
#include "policy/policy.h"
#include "policy/transform.h"

namespace {
const airlock::policy::DetectorSet& Detectors() {
  static std::unique_ptr<airlock::policy::DetectorSet> set =
      std::move(airlock::policy::DetectorSet::Create().value());
  return *set;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace airlock::policy;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto matches = Detectors().Scan(text);
  std::size_t last_end = 0;
  for (const Match& m : matches) {
    if (m.begin < last_end || m.end > size || m.begin >= m.end) std::abort();
    last_end = m.end;
  }
  // Pseudonymize every class, then restore: the original text must come back exactly when the
  // input held no text that looks like our placeholders.
  std::map<DataClass, Action> actions;
  for (int i = 0; i < kDataClassCount; ++i)
    actions[static_cast<DataClass>(i)] = Action::kPseudonymize;
  Pseudonymizer p;
  std::string masked = p.Apply(text, matches, actions);
  if (text.find('[') == std::string_view::npos && p.Restore(masked) != text) std::abort();
  // Streamed restore must equal one-shot restore for any chunking (chunk size from the data).
  std::size_t step = size ? (data[0] % 7) + 1 : 1;
  StreamRestorer r(p);
  std::string streamed;
  for (std::size_t i = 0; i < masked.size(); i += step) streamed += r.Feed(masked.substr(i, step));
  streamed += r.Flush();
  if (streamed != p.Restore(masked)) std::abort();
  // The reasoning split is the same for any chunking, at every marker family (upstreams) and
  // at a model's own exact markers, nested blocks and a lone closing marker included.
  for (const ThinkMarkers& markers : {ThinkMarkers{}, ThinkMarkers{"<think>", "</think>"},
                                      ThinkMarkers{"<|begin_of_thought|>", "<|end_of_thought|>"}}) {
    ThinkSplitter whole(markers), chunked(markers);
    ThinkSplitter::Piece one = whole.Feed(text), rest = whole.Flush();
    std::string visible, reasoning;
    bool released = false;  // held text released at kMaxUndecided: chunked may differ (reported)
    for (std::size_t i = 0; i < size; i += step) {
      ThinkSplitter::Piece p = chunked.Feed(text.substr(i, step));
      visible += p.visible;
      reasoning += p.reasoning;
      released |= p.reasoning_released;
    }
    ThinkSplitter::Piece last = chunked.Flush();
    if (one.reasoning_released) std::abort();  // one Feed decides the whole text
    if (released) continue;
    if (visible + last.visible != one.visible + rest.visible ||
        reasoning + last.reasoning != one.reasoning + rest.reasoning)
      std::abort();
  }
  auto policy = ParsePolicy(text, "fuzz.toml");
  (void)policy;
  return 0;
}
