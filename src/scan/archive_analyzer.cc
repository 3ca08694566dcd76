#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the archive analyzer lands: fails closed.
void AnalyzeArchive(Scanner& s, const Target& t, Format f) {
  s.Incomplete(t, "scan.unsupported", std::string(FormatName(f)) + " analysis is not implemented yet", 0);
}

}  // namespace airlock::scan::internal
