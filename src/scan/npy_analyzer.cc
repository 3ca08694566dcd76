#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the npy analyzer lands: fails closed.
void AnalyzeNpy(Scanner& s, const Target& t) {
  s.Incomplete(t, "scan.unsupported", "npy analysis is not implemented yet", 0);
}

}  // namespace airlock::scan::internal
