#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the safetensors analyzer lands: fails closed.
void AnalyzeSafetensors(Scanner& s, const Target& t) {
  s.Incomplete(t, "scan.unsupported", "safetensors analysis is not implemented yet", 0);
}

}  // namespace airlock::scan::internal
