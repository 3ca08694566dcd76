// Differential fuzz target for the detectors: on arbitrary bytes the Hyperscan and RE2::Set
// engines give the same findings (where Hyperscan is built), findings are in bounds, sorted and
// disjoint, and the StreamScanner fed the same bytes in chunks (sizes taken from the input)
// reports exactly the findings of one pass. The decoded shadow text (policy/internal/decode.h)
// is never longer than its input per round, and maps every byte back inside the input, in order.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "policy/detectors.h"
#include "policy/internal/decode.h"
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
