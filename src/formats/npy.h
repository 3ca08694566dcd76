// NumPy .npy header parser. The header is a Python dict literal ({'descr': ..., 'fortran_order':
// ..., 'shape': (...)}) that NumPy reads with ast.literal_eval; this parses it strictly with a
// small literal grammar (strings, ints, bools, None, tuples, lists, dicts; no evaluation, bounded
// depth and length) and computes the item size and expected payload size in checked arithmetic.
// Arrays whose dtype holds Python objects ('O', also inside structured dtypes) store a pickle
// right after the header: np.load(allow_pickle=True) unpickles it. Values only; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace airlock::formats::npy {

inline constexpr std::uint64_t kNumpyMaxHeaderSize = 10000;  // numpy refuses larger headers

struct Header {
  int major = 0;
  int minor = 0;
  std::string descr;  // the dtype as written: a typestr like "<f4", or "structured"
  bool fortran_order = false;
  std::vector<std::uint64_t> shape;
  bool has_object = false;                  // payload is a pickle
  std::uint64_t item_size = 0;              // bytes per element (0 for object arrays)
  std::uint64_t data_offset = 0;            // where the payload starts
  std::optional<std::uint64_t> data_bytes;  // expected payload size (nullopt: object array)
  std::uint64_t header_len = 0;             // declared length of the dict text
};

// Parses the magic, version, and header dict of an .npy file. Errors: kCorrupt (bad magic,
// truncated header, header text that is not the expected literal, sizes that overflow),
// kUnsupported (unknown version or dtype string).
Result<Header> ParseHeader(std::span<const std::byte> data);

}  // namespace airlock::formats::npy
