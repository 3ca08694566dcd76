#include "formats/gguf_writer.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

namespace airlock::formats::gguf {

namespace {

template <typename T>
void Put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(b, sizeof(T));
}

void PutString(std::string& out, std::string_view s) {
  Put<std::uint64_t>(out, s.size());
  out.append(s);
}

std::uint64_t Pad(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

template <typename T>
std::string EncodeArray(ValueType elem, const std::vector<T>& v) {
  std::string e;
  Put<std::uint32_t>(e, static_cast<std::uint32_t>(elem));
  Put<std::uint64_t>(e, v.size());
  for (const T& x : v) Put<T>(e, x);
  return e;
}

}  // namespace

void Writer::AddKv(std::string_view key, std::uint32_t type, std::string encoded) {
  if (key == "general.alignment") has_alignment_key_ = true;
  std::string e;
  Put<std::uint32_t>(e, type);
  e += encoded;
  kvs_.emplace_back(std::string(key), std::move(e));
}

#define AIRLOCK_GGUF_SCALAR(Name, T, VT)                                 \
  void Writer::Name(std::string_view key, T v) {                         \
    std::string e;                                                       \
    Put<T>(e, v);                                                        \
    AddKv(key, static_cast<std::uint32_t>(ValueType::VT), std::move(e)); \
  }
AIRLOCK_GGUF_SCALAR(AddUint8, std::uint8_t, kUint8)
AIRLOCK_GGUF_SCALAR(AddInt8, std::int8_t, kInt8)
AIRLOCK_GGUF_SCALAR(AddUint16, std::uint16_t, kUint16)
AIRLOCK_GGUF_SCALAR(AddInt16, std::int16_t, kInt16)
AIRLOCK_GGUF_SCALAR(AddUint32, std::uint32_t, kUint32)
AIRLOCK_GGUF_SCALAR(AddInt32, std::int32_t, kInt32)
AIRLOCK_GGUF_SCALAR(AddUint64, std::uint64_t, kUint64)
AIRLOCK_GGUF_SCALAR(AddInt64, std::int64_t, kInt64)
AIRLOCK_GGUF_SCALAR(AddFloat32, float, kFloat32)
AIRLOCK_GGUF_SCALAR(AddFloat64, double, kFloat64)
#undef AIRLOCK_GGUF_SCALAR

void Writer::AddBool(std::string_view key, bool v) {
  AddKv(key, static_cast<std::uint32_t>(ValueType::kBool), std::string(1, v ? '\1' : '\0'));
}

void Writer::AddString(std::string_view key, std::string_view v) {
  std::string e;
  PutString(e, v);
  AddKv(key, static_cast<std::uint32_t>(ValueType::kString), std::move(e));
}

void Writer::AddStringArray(std::string_view key, const std::vector<std::string>& v) {
  std::string e;
  Put<std::uint32_t>(e, static_cast<std::uint32_t>(ValueType::kString));
  Put<std::uint64_t>(e, v.size());
  for (const auto& s : v) PutString(e, s);
  AddKv(key, static_cast<std::uint32_t>(ValueType::kArray), std::move(e));
}
void Writer::AddFloat32Array(std::string_view key, const std::vector<float>& v) {
  AddKv(key, static_cast<std::uint32_t>(ValueType::kArray), EncodeArray(ValueType::kFloat32, v));
}
void Writer::AddInt32Array(std::string_view key, const std::vector<std::int32_t>& v) {
  AddKv(key, static_cast<std::uint32_t>(ValueType::kArray), EncodeArray(ValueType::kInt32, v));
}
void Writer::AddUint32Array(std::string_view key, const std::vector<std::uint32_t>& v) {
  AddKv(key, static_cast<std::uint32_t>(ValueType::kArray), EncodeArray(ValueType::kUint32, v));
}
void Writer::AddRawKv(std::string_view key, std::uint32_t type_id, std::string encoded_value) {
  AddKv(key, type_id, std::move(encoded_value));
}

std::uint64_t Writer::TensorBytes(GgmlType type, const std::vector<std::uint64_t>& ne) {
  const TypeTraits* tt = GetTypeTraits(type);
  if (tt == nullptr || ne.empty() || ne[0] % tt->block_size != 0) return 0;
  std::uint64_t n = 1;
  for (auto d : ne) n *= d;
  return n / tt->block_size * tt->type_size;
}

void Writer::AddTensor(std::string_view name, GgmlType type, std::vector<std::uint64_t> ne,
                       std::span<const std::byte> data) {
  Tensor t;
  t.name = std::string(name);
  t.type = static_cast<std::uint32_t>(type);
  t.ne = std::move(ne);
  t.n_bytes = data.size();
  t.data.assign(data.begin(), data.end());
  tensors_.push_back(std::move(t));
}

void Writer::AddTensorGenerated(std::string_view name, GgmlType type, std::vector<std::uint64_t> ne,
                                FillFn fill) {
  Tensor t;
  t.name = std::string(name);
  t.type = static_cast<std::uint32_t>(type);
  t.n_bytes = TensorBytes(type, ne);
  t.ne = std::move(ne);
  t.fill = std::move(fill);
  tensors_.push_back(std::move(t));
}

void Writer::OverrideTensorType(std::size_t index, std::uint32_t type_id) {
  if (index < tensors_.size()) tensors_[index].type = type_id;
}
void Writer::OverrideTensorOffset(std::size_t index, std::uint64_t offset) {
  if (index < tensors_.size()) tensors_[index].offset_override = offset;
}

std::string Writer::Header() const {
  std::string out = "GGUF";
  Put<std::uint32_t>(out, version_);
  bool add_align = alignment_ != kDefaultAlignment && !has_alignment_key_;
  Put<std::uint64_t>(out, tensors_.size());
  Put<std::uint64_t>(out, kvs_.size() + (add_align ? 1 : 0));
  if (add_align) {
    PutString(out, "general.alignment");
    Put<std::uint32_t>(out, static_cast<std::uint32_t>(ValueType::kUint32));
    Put<std::uint32_t>(out, alignment_);
  }
  for (const auto& [key, value] : kvs_) {
    PutString(out, key);
    out += value;
  }
  std::uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(out, t.name);
    Put<std::uint32_t>(out, static_cast<std::uint32_t>(t.ne.size()));
    for (auto d : t.ne) Put<std::uint64_t>(out, d);
    Put<std::uint32_t>(out, t.type);
    Put<std::uint64_t>(out, t.offset_override.value_or(offset));
    offset += Pad(t.n_bytes, alignment_);
  }
  if (!tensors_.empty()) out.resize(Pad(out.size(), alignment_), '\0');
  return out;
}

template <typename Sink>
void Writer::WriteData(Sink& sink) const {
  std::vector<std::byte> chunk;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    if (!t.fill) {
      sink(std::span<const std::byte>(t.data));
    } else {
      constexpr std::uint64_t kChunk = 4u << 20;
      chunk.resize(kChunk);
      for (std::uint64_t done = 0; done < t.n_bytes;) {
        std::uint64_t n = std::min<std::uint64_t>(kChunk, t.n_bytes - done);
        std::span<std::byte> out(chunk.data(), static_cast<std::size_t>(n));
        std::fill(out.begin(), out.end(), std::byte{0});
        t.fill(done, out);
        sink(std::span<const std::byte>(out));
        done += n;
      }
    }
    bool last = i + 1 == tensors_.size();
    if (!last || pad_tail_) {
      std::vector<std::byte> pad(Pad(t.n_bytes, alignment_) - t.n_bytes, std::byte{0});
      sink(std::span<const std::byte>(pad));
    }
  }
}

std::string Writer::Build() const {
  std::string out = Header();
  auto sink = [&out](std::span<const std::byte> b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  };
  WriteData(sink);
  return out;
}

Status Writer::WriteFile(const std::string& path) const {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return IoError("gguf: cannot create " + tmp);
  bool ok = true;
  std::string header = Header();
  ok &= std::fwrite(header.data(), 1, header.size(), f) == header.size();
  auto sink = [&](std::span<const std::byte> b) {
    if (ok && !b.empty()) ok &= std::fwrite(b.data(), 1, b.size(), f) == b.size();
  };
  WriteData(sink);
  ok &= std::fclose(f) == 0;
  std::error_code ec;
  if (ok) std::filesystem::rename(tmp, path, ec);
  if (!ok || ec) {
    std::filesystem::remove(tmp, ec);
    return IoError("gguf: writing " + path + " failed");
  }
  return Status::Ok();
}

}  // namespace airlock::formats::gguf
