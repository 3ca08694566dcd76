// A small GGUF v3 writer for tests, fuzz seeds, the demo generator and benchmark models. It
// writes exactly what it is told (including deliberately malformed values via AddRawKv and the
// tensor overrides), so it is a crafting tool, not a validator: parse the output with
// gguf::File::Parse to check it. Tensor data is either copied in (small tensors) or produced by a
// callback while writing (large generated models stream to disk without being held in memory).
// Thread-safety: none; one writer per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "formats/gguf.h"

namespace airlock::formats::gguf {

class Writer {
 public:
  // `alignment` pads the tensor data; when it is not 32 a general.alignment key is emitted
  // automatically (unless one was added explicitly).
  explicit Writer(std::uint32_t alignment = kDefaultAlignment) : alignment_(alignment) {}

  void set_version(std::uint32_t v) { version_ = v; }
  // Pads the last tensor to the alignment too (what llama.cpp's writer does). Default true.
  void set_pad_tail(bool pad) { pad_tail_ = pad; }

  void AddUint8(std::string_view key, std::uint8_t v);
  void AddInt8(std::string_view key, std::int8_t v);
  void AddUint16(std::string_view key, std::uint16_t v);
  void AddInt16(std::string_view key, std::int16_t v);
  void AddUint32(std::string_view key, std::uint32_t v);
  void AddInt32(std::string_view key, std::int32_t v);
  void AddUint64(std::string_view key, std::uint64_t v);
  void AddInt64(std::string_view key, std::int64_t v);
  void AddFloat32(std::string_view key, float v);
  void AddFloat64(std::string_view key, double v);
  void AddBool(std::string_view key, bool v);
  void AddString(std::string_view key, std::string_view v);
  void AddStringArray(std::string_view key, const std::vector<std::string>& v);
  void AddFloat32Array(std::string_view key, const std::vector<float>& v);
  void AddInt32Array(std::string_view key, const std::vector<std::int32_t>& v);
  void AddUint32Array(std::string_view key, const std::vector<std::uint32_t>& v);
  // A KV whose type id and encoded value bytes are given verbatim (for crafting bad files).
  void AddRawKv(std::string_view key, std::uint32_t type_id, std::string encoded_value);

  // Adds a tensor whose data is copied from `data` (its size should be the tensor's byte size;
  // it is written as given either way). `ne` fastest-varying first.
  void AddTensor(std::string_view name, GgmlType type, std::vector<std::uint64_t> ne,
                 std::span<const std::byte> data);
  // Adds a tensor whose `n_bytes` bytes are produced by `fill` at write time, in chunks: fill is
  // called with consecutive buffers until n_bytes are written.
  using FillFn = std::function<void(std::uint64_t offset, std::span<std::byte> out)>;
  void AddTensorGenerated(std::string_view name, GgmlType type, std::vector<std::uint64_t> ne,
                          FillFn fill);
  // Crafting hooks: the raw type id, and an offset written instead of the computed one.
  void OverrideTensorType(std::size_t index, std::uint32_t type_id);
  void OverrideTensorOffset(std::size_t index, std::uint64_t offset);

  // Byte size of a tensor of `type` and shape `ne` (0 when the type is unknown or ne[0] is not a
  // multiple of the block size).
  static std::uint64_t TensorBytes(GgmlType type, const std::vector<std::uint64_t>& ne);

  // The whole file in memory (for tests and small samples).
  std::string Build() const;
  // Streams the file to `path` (atomically: temp file + rename). Errors: kIo.
  Status WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::uint32_t type;
    std::vector<std::uint64_t> ne;
    std::uint64_t n_bytes;
    std::vector<std::byte> data;  // when not generated
    FillFn fill;
    std::optional<std::uint64_t> offset_override;
  };
  void AddKv(std::string_view key, std::uint32_t type, std::string encoded);
  std::string Header() const;  // everything before the tensor data, padded
  template <typename Sink>
  void WriteData(Sink& sink) const;

  std::uint32_t alignment_;
  std::uint32_t version_ = 3;
  bool pad_tail_ = true;
  bool has_alignment_key_ = false;
  std::vector<std::pair<std::string, std::string>> kvs_;  // key, type + value encoded
  std::vector<Tensor> tensors_;
};

}  // namespace airlock::formats::gguf
