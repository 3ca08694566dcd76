#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the pickle analyzer lands: fails closed.
void AnalyzePickle(Scanner& s, const Target& t) {
  s.Incomplete(t, "scan.unsupported", "pickle analysis is not implemented yet", 0);
}

}  // namespace airlock::scan::internal
