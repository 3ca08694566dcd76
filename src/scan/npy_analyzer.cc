// NumPy .npy arrays (also the members of .npz archives). Plain arrays carry no code: the header
// is validated and the payload size checked against shape x item size. Object arrays store a
// pickle after the header that np.load(allow_pickle=True) unpickles, so it goes to the pickle
// analyzer, whatever its first bytes look like.
#include <string>

#include "formats/npy.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

void AnalyzeNpy(Scanner& s, const Target& t) {
  namespace npy = formats::npy;
  auto parsed = npy::ParseHeader(t.data);
  if (!parsed.has_value()) {
    s.Incomplete(t, "npy.bad-header", parsed.error().message() + ": the array could not be vetted",
                 0);
    return;
  }
  const npy::Header& h = *parsed;
  if (h.header_len > npy::kNumpyMaxHeaderSize) {
    s.Add(t, "npy.large-header", Severity::kLow,
          "header of " + std::to_string(h.header_len) + " bytes: numpy refuses headers over " +
              std::to_string(npy::kNumpyMaxHeaderSize) + " bytes unless told otherwise",
          8);
  }
  std::uint64_t payload = t.data.size() - h.data_offset;
  if (h.has_object) {
    s.Add(t, "npy.object-array", Severity::kInfo,
          "object array (dtype " + h.descr +
              "): the data is a pickle that np.load(allow_pickle=True) executes; it is analyzed "
              "as a pickle",
          h.data_offset);
    if (t.depth + 1 > s.limits().max_depth) {
      s.Incomplete(t, "scan.limit.depth",
                   "nesting deeper than " + std::to_string(s.limits().max_depth) + " levels");
      return;
    }
    // Analyzed as a pickle whatever DetectFormat would make of it: numpy calls pickle.load.
    Target child;
    child.data = t.data.subspan(static_cast<std::size_t>(h.data_offset));
    child.name = "object-array.pkl";
    child.depth = t.depth + 1;
    child.member = t.member.empty() ? std::string("[object array pickle]")
                                    : t.member + "!/[object array pickle]";
    if (child.data.empty()) {
      s.Incomplete(t, "npy.truncated", "object array without pickle data", h.data_offset);
      return;
    }
    AnalyzePickle(s, child);
    return;
  }
  if (payload < *h.data_bytes) {
    s.Incomplete(t, "npy.truncated",
                 "array needs " + std::to_string(*h.data_bytes) + " bytes of data but only " +
                     std::to_string(payload) + " follow the header",
                 h.data_offset);
  } else if (payload > *h.data_bytes) {
    // np.load reads exactly the array's bytes and ignores the rest; nothing loads the excess.
    s.Add(t, "npy.trailing-data", Severity::kLow,
          std::to_string(payload - *h.data_bytes) + " bytes after the array data",
          h.data_offset + *h.data_bytes);
  }
}

}  // namespace airlock::scan::internal
