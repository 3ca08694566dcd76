#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the gguf analyzer lands: fails closed.
void AnalyzeGguf(Scanner& s, const Target& t) {
  s.Incomplete(t, "scan.unsupported", "gguf analysis is not implemented yet", 0);
}

}  // namespace airlock::scan::internal
