#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the template analyzer lands: fails closed.
void AnalyzeTemplateSource(Scanner& s, const Target& t, std::string_view source,
                           std::optional<std::uint64_t> offset) {
  s.Incomplete(t, "scan.unsupported", "chat template analysis is not implemented yet", offset);
}

}  // namespace airlock::scan::internal
