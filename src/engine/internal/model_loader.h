// Internal to the engine: typed, range-checked access to a GGUF file's hyperparameters and
// tensors while a model loads, by the names of engine/arch.h (the architecture files name keys
// and tensors by enum, never by string). Every value is range-checked and every shape and byte
// size is checked against the file before a view into its mapping is handed out. The loader
// fills one ModelConfig and one ModelWeights.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/status.h"
#include "engine/arch.h"
#include "engine/internal/weights.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "formats/gguf.h"

namespace airlock::engine::internal {

namespace gguf = formats::gguf;

inline constexpr std::int64_t kMaxDim = 1 << 17;  // any width or count beyond this is not a model
inline constexpr std::int64_t kMaxLayers = 512;   // llama.cpp's LLAMA_MAX_LAYERS

inline Status Err(StatusCode code, const std::string& path, const std::string& detail) {
  return Status(code, "engine: cannot load model at " + path + ": " + detail);
}

class ModelLoader {
 public:
  ModelLoader(const gguf::File& f, const std::string& path, Arch arch, ModelConfig* config,
              ModelWeights* weights)
      : f_(f), path_(path), arch_(arch), c_(*config), w_(*weights) {}

  Arch arch() const { return arch_; }
  ModelConfig& config() { return c_; }
  ModelWeights& weights() { return w_; }
  Status Fail(StatusCode code, const std::string& detail) const { return Err(code, path_, detail); }

  bool Has(Key k) const { return f_.Find(KeyName(arch_, k)) != nullptr; }
  std::optional<std::string_view> String(Key k) const { return f_.GetString(KeyName(arch_, k)); }
  bool HasTensor(Tensor t, int layer = -1) const {
    return f_.FindTensor(TensorName(t, layer)) != nullptr;
  }
  const gguf::TensorInfo* FindTensor(Tensor t, int layer = -1) const {
    return f_.FindTensor(TensorName(t, layer));
  }

  // An integer key in [min_value, max_value]; `fallback` when absent (nullopt: required). An
  // array must hold one value for every layer.
  Result<std::int64_t> Int(Key k, std::optional<std::int64_t> fallback, std::int64_t min_value = 1,
                           std::int64_t max_value = kMaxDim) {
    const std::string key = KeyName(arch_, k);
    const gguf::KeyValue* kv = f_.Find(key);
    std::optional<std::int64_t> v;
    if (kv == nullptr) {
      if (!fallback) return Err(StatusCode::kCorrupt, path_, "required key " + key + " is missing");
      v = fallback;
    } else if (auto arr = kv->value.AsArray()) {
      if (arr->empty()) return Err(StatusCode::kCorrupt, path_, key + " is an empty array");
      v = arr->IntAt(0);
      for (std::uint64_t i = 1; v && i < arr->size(); ++i) {
        if (arr->IntAt(i) != v)
          return Err(StatusCode::kUnsupported, path_, key + " differs between layers");
      }
    } else {
      v = kv->value.AsInt();
      if (!v) {
        if (auto b = kv->value.AsBool()) v = *b ? 1 : 0;
      }
    }
    if (!v || *v < min_value || *v > max_value) {
      return Err(StatusCode::kCorrupt, path_,
                 key + " must be an integer in [" + std::to_string(min_value) + ", " +
                     std::to_string(max_value) + "]");
    }
    return *v;
  }

  // A finite float key; `fallback` when absent (nullopt: required).
  Result<double> Float(Key k, std::optional<double> fallback) {
    const std::string key = KeyName(arch_, k);
    const gguf::KeyValue* kv = f_.Find(key);
    if (kv == nullptr) {
      if (!fallback) return Err(StatusCode::kCorrupt, path_, "required key " + key + " is missing");
      return *fallback;
    }
    auto v = kv->value.AsFloat();
    if (!v || !std::isfinite(*v))
      return Err(StatusCode::kCorrupt, path_, key + " must be a finite float");
    return *v;
  }

  Result<bool> Bool(Key k, bool fallback) {
    const std::string key = KeyName(arch_, k);
    const gguf::KeyValue* kv = f_.Find(key);
    if (kv == nullptr) return fallback;
    if (auto b = kv->value.AsBool()) return *b;
    if (auto i = kv->value.AsInt()) return *i != 0;
    return Err(StatusCode::kCorrupt, path_, key + " must be a boolean");
  }

  // `count` matrices {cols, rows} (count 1: a 2-D tensor); invalid when optional and absent.
  Result<StackedMatrices> Stacked(Tensor tensor, int layer, std::int64_t cols, std::int64_t rows,
                                  std::int64_t count, bool optional = false) {
    const std::string name = TensorName(tensor, layer);
    const gguf::TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) {
      if (optional) return StackedMatrices{};
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " is missing");
    }
    const TensorTypeInfo* info = GetTensorTypeInfo(t->type);
    if (info == nullptr) {
      return Err(StatusCode::kUnsupported, path_,
                 "tensor " + name + " has type " + gguf::GgmlTypeName(t->type) +
                     ", which the engine does not support (supported: F32, F16, BF16, Q4_0, Q4_1, "
                     "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
    }
    const std::uint32_t dims = count == 1 ? 2 : 3;
    if (t->n_dims != dims || static_cast<std::int64_t>(t->ne[0]) != cols ||
        static_cast<std::int64_t>(t->ne[1]) != rows ||
        static_cast<std::int64_t>(t->ne[2]) != count) {
      return Err(StatusCode::kCorrupt, path_,
                 "tensor " + name + " has shape [" + std::to_string(t->ne[0]) + ", " +
                     std::to_string(t->ne[1]) + ", " + std::to_string(t->ne[2]) + "], expected [" +
                     std::to_string(cols) + ", " + std::to_string(rows) +
                     (count == 1 ? "" : ", " + std::to_string(count)) + "]");
    }
    if (cols % info->block_elems != 0)
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " rows are not whole blocks");
    StackedMatrices s;
    s.type = static_cast<TensorType>(t->type);
    s.count = static_cast<int>(count);
    s.rows = rows;
    s.cols = cols;
    s.row_bytes = static_cast<std::size_t>(cols / info->block_elems) * info->block_bytes;
    const auto data = f_.TensorData(*t);
    if (data.size() < s.matrix_bytes() * static_cast<std::size_t>(count))
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " data is shorter than its shape");
    s.data = reinterpret_cast<const std::uint8_t*>(data.data());
    weight_bytes_ += s.matrix_bytes() * count;
    ++type_counts_[gguf::GgmlTypeName(t->type)];
    return s;
  }

  // A matrix {cols, rows}: `rows` output features of `cols` inputs.
  Result<WeightMatrix> Matrix(Tensor tensor, int layer, std::int64_t cols, std::int64_t rows,
                              bool optional = false) {
    AIRLOCK_ASSIGN_OR_RETURN(StackedMatrices s, Stacked(tensor, layer, cols, rows, 1, optional));
    if (!s.valid()) return WeightMatrix{};
    return s.Slice(0);
  }

  // A 1-D F32/F16/BF16 tensor of `n` finite values, converted to float; empty when optional and
  // absent.
  Result<std::vector<float>> Vector(Tensor tensor, int layer, std::int64_t n,
                                    bool optional = false) {
    const std::string name = TensorName(tensor, layer);
    const gguf::TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) {
      if (optional) return std::vector<float>{};
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " is missing");
    }
    const auto type = static_cast<TensorType>(t->type);
    if (type != TensorType::kF32 && type != TensorType::kF16 && type != TensorType::kBF16) {
      return Err(StatusCode::kUnsupported, path_,
                 "tensor " + name + " has type " + gguf::GgmlTypeName(t->type) +
                     ", expected F32/F16/BF16 for a 1-D tensor");
    }
    if (t->n_elements != static_cast<std::uint64_t>(n) ||
        t->ne[0] != static_cast<std::uint64_t>(n)) {
      return Err(StatusCode::kCorrupt, path_,
                 "tensor " + name + " has " + std::to_string(t->n_elements) +
                     " elements, expected " + std::to_string(n));
    }
    const auto data = f_.TensorData(*t);
    const std::size_t elem = type == TensorType::kF32 ? 4 : 2;
    if (data.size() < elem * n)
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " is truncated");
    std::vector<float> out(n);
    DequantizeRow(type, data.data(), out.data(), n);
    for (float v : out) {
      if (!std::isfinite(v))
        return Err(StatusCode::kCorrupt, path_, "tensor " + name + " has non-finite values");
    }
    weight_bytes_ += data.size();
    ++type_counts_[gguf::GgmlTypeName(t->type)];
    return out;
  }

  std::uint64_t weight_bytes() const { return weight_bytes_; }
  const std::map<std::string, int>& type_counts() const { return type_counts_; }

 private:
  const gguf::File& f_;
  const std::string& path_;
  Arch arch_;
  ModelConfig& c_;
  ModelWeights& w_;
  std::uint64_t weight_bytes_ = 0;
  std::map<std::string, int> type_counts_;
};

}  // namespace airlock::engine::internal
