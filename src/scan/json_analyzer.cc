#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the json analyzer lands: fails closed.
void AnalyzeJson(Scanner& s, const Target& t) {
  s.Incomplete(t, "scan.unsupported", "json analysis is not implemented yet", 0);
}

}  // namespace airlock::scan::internal
