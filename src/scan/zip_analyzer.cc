#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the zip analyzer lands: fails closed.
void AnalyzeZip(Scanner& s, const Target& t) {
  s.Incomplete(t, "scan.unsupported", "zip analysis is not implemented yet", 0);
}

}  // namespace airlock::scan::internal
