// Fuzz target for the GGUF-to-model loading path of every architecture (engine/arch.h registry,
// engine/models/<arch>.cc). Structure-aware: the input picks an architecture and then, key by key
// and tensor by tensor, either the value a small valid model of that architecture has or a
// hostile one (missing, zero, huge, negative, the wrong type, an array, a NaN; a tensor missing,
// with a dimension changed, of another ggml type, or truncated). The file is written with the
// GGUF writer, parsed, and loaded; a load must succeed or fail with a message, never crash or
// allocate what the header claims. When it loads, a session with a small context runs two tokens
// (the accepted shapes must be safe to run).
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/arch.h"
#include "engine/model.h"
#include "engine/session.h"
#include "formats/gguf_writer.h"

namespace {

namespace gguf = airlock::formats::gguf;
using airlock::engine::Arch;
using airlock::engine::Key;
using airlock::engine::KeyName;
using airlock::engine::Tensor;
using airlock::engine::TensorName;

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  std::uint8_t Byte() { return p_ < end_ ? *p_++ : 0; }
  std::uint32_t U32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | Byte();
    return v;
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

// A small valid model's dimensions (MLA: head 16 nope + 16 rope, latent 32; experts 4 of 32).
constexpr int kEmbd = 64, kHead = 2, kHeadKv = 1, kHeadDim = 32, kFf = 64, kLayers = 2, kVocab = 16;
constexpr int kExperts = 4, kUsed = 2, kFfExp = 32, kKvLora = 32, kNope = 16, kRot = 16,
              kVHead = 32;

// Writes integer key `k` = `valid`, or a hostile variant chosen by the input.
void IntKey(gguf::Writer& w, Input& in, Arch a, Key k, std::int64_t valid) {
  const std::string name = KeyName(a, k);
  switch (in.Byte() % 16) {  // 0 (also an exhausted input): the valid value
    case 8:
      return;  // missing
    case 1:
      w.AddUint32(name, 0);
      return;
    case 2:
      w.AddUint32(name, in.U32());
      return;
    case 3:
      w.AddInt32(name, -static_cast<std::int32_t>(in.U32() & 0xffff));
      return;
    case 4:
      w.AddString(name, "64");
      return;
    case 5:
      w.AddUint32Array(name, {static_cast<std::uint32_t>(valid), in.U32() & 0xff});
      return;
    case 6:
      w.AddFloat32(name, static_cast<float>(valid));
      return;
    case 7:
      w.AddUint64(name, std::uint64_t{1} << 40);
      return;
    default:
      w.AddUint32(name, static_cast<std::uint32_t>(valid));
  }
}

void FloatKey(gguf::Writer& w, Input& in, Arch a, Key k, float valid) {
  const std::string name = KeyName(a, k);
  switch (in.Byte() % 12) {
    case 5:
      return;  // missing
    case 1:
      w.AddFloat32(name, NAN);
      return;
    case 2:
      w.AddFloat32(name, -valid);
      return;
    case 3:
      w.AddFloat32(name, 1e30f);
      return;
    case 4:
      w.AddUint32(name, 7);
      return;
    default:
      w.AddFloat32(name, valid);
  }
}

// Adds tensor `t` (layer `il`) of shape `ne`, or a hostile variant.
void AddTensor(gguf::Writer& w, Input& in, Tensor t, int il, std::vector<std::uint64_t> ne) {
  gguf::GgmlType type = gguf::GgmlType::kF32;
  switch (in.Byte() % 24) {
    case 8:
      return;  // missing
    case 1:
      ne[in.Byte() % ne.size()] += 1 + in.Byte() % 40;
      break;
    case 2:
      ne[in.Byte() % ne.size()] = 0;
      break;
    case 3:
      ne.push_back(2);
      break;
    case 4:
      type = gguf::GgmlType::kF16;
      break;
    case 5:
      type = gguf::GgmlType::kQ8_0;
      break;
    case 6:
      type = gguf::GgmlType::kQ4_K;
      break;
    case 7:
      type = gguf::GgmlType::kI16;
      break;
    default:  // 0 (also an exhausted input): the valid shape and type
      break;
  }
  std::uint64_t bytes = gguf::Writer::TensorBytes(type, ne);
  if (bytes > (std::uint64_t{1} << 22)) return;       // keep inputs small
  if (in.Byte() % 16 == 15 && bytes > 0) bytes /= 2;  // truncated data
  // Small finite values (an F32 or F16 1.0 for norms keeps the forward pass finite).
  std::vector<std::byte> data(bytes, std::byte{0});
  if (type == gguf::GgmlType::kF32) {
    const float one = 0.01f * (1 + in.Byte() % 100);
    for (std::size_t i = 0; i + 4 <= data.size(); i += 4) std::memcpy(&data[i], &one, 4);
  }
  w.AddTensor(TensorName(t, il), type, ne, data);
}

void WriteModel(gguf::Writer& w, Input& in, Arch a) {
  const bool moe = a == Arch::kQwen2Moe || a == Arch::kQwen3Moe || a == Arch::kDeepseek2;
  const bool mla = a == Arch::kDeepseek2;
  w.AddString("general.architecture", std::string(airlock::engine::ArchName(a)));
  IntKey(w, in, a, Key::kEmbeddingLength, kEmbd);
  IntKey(w, in, a, Key::kBlockCount, kLayers);
  IntKey(w, in, a, Key::kHeadCount, kHead);
  IntKey(w, in, a, Key::kHeadCountKv, mla ? 1 : kHeadKv);
  IntKey(w, in, a, Key::kFeedForwardLength, kFf);
  IntKey(w, in, a, Key::kContextLength, 64);
  FloatKey(w, in, a, Key::kRmsEpsilon, 1e-5f);
  FloatKey(w, in, a, Key::kRopeFreqBase, 10000.0f);
  if (in.Byte() % 4 == 0) IntKey(w, in, a, Key::kKeyLength, kHeadDim);
  if (!mla && in.Byte() % 4 == 0) IntKey(w, in, a, Key::kRopeDimensionCount, kHeadDim);
  if (in.Byte() % 3 == 0) {
    const char* types[] = {"yarn", "linear", "llama3", "none", "ntk"};
    w.AddString(KeyName(a, Key::kRopeScalingType), types[in.Byte() % 5]);
    FloatKey(w, in, a, Key::kRopeScalingFactor, 4.0f);
    IntKey(w, in, a, Key::kRopeScalingOrigCtx, 32);
    FloatKey(w, in, a, Key::kRopeScalingYarnLogMul, 0.1f);
  }
  if (moe) {
    IntKey(w, in, a, Key::kExpertCount, kExperts);
    IntKey(w, in, a, Key::kExpertUsedCount, kUsed);
    IntKey(w, in, a, Key::kExpertFeedForwardLength, kFfExp);
    IntKey(w, in, a, Key::kExpertSharedFeedForwardLength, kFfExp);
    if (in.Byte() % 4 == 0) IntKey(w, in, a, Key::kExpertGroupCount, 2);
    if (in.Byte() % 4 == 0) IntKey(w, in, a, Key::kExpertGroupUsedCount, 1);
  }
  if (mla) {
    IntKey(w, in, a, Key::kLeadingDenseBlockCount, 1);
    IntKey(w, in, a, Key::kExpertSharedCount, 1);
    IntKey(w, in, a, Key::kKvLoraRank, kKvLora);
    IntKey(w, in, a, Key::kQLoraRank, 0);
    IntKey(w, in, a, Key::kKeyLengthMla, kNope + kRot);
    IntKey(w, in, a, Key::kValueLengthMla, kVHead);
    IntKey(w, in, a, Key::kRopeDimensionCount, kRot);
    IntKey(w, in, a, Key::kExpertGatingFunc, 2);
    FloatKey(w, in, a, Key::kExpertWeightsScale, 2.5f);
  }
  using U = std::uint64_t;
  const U d = kEmbd, q_dim = kHead * kHeadDim, kv_dim = kHeadKv * kHeadDim;
  AddTensor(w, in, Tensor::kTokenEmbd, -1, {d, kVocab});
  AddTensor(w, in, Tensor::kOutput, -1, {d, kVocab});
  AddTensor(w, in, Tensor::kOutputNorm, -1, {d});
  for (int il = 0; il < kLayers; ++il) {
    AddTensor(w, in, Tensor::kAttnNorm, il, {d});
    AddTensor(w, in, Tensor::kFfnNorm, il, {d});
    if (mla) {
      const U hq = kNope + kRot;
      AddTensor(w, in, Tensor::kAttnQ, il, {d, kHead * hq});
      AddTensor(w, in, Tensor::kAttnKvAMqa, il, {d, kKvLora + kRot});
      AddTensor(w, in, Tensor::kAttnKvANorm, il, {kKvLora});
      AddTensor(w, in, Tensor::kAttnKB, il, {kNope, kKvLora, kHead});
      AddTensor(w, in, Tensor::kAttnVB, il, {kKvLora, kVHead, kHead});
      AddTensor(w, in, Tensor::kAttnOutput, il, {kHead * kVHead, d});
    } else {
      AddTensor(w, in, Tensor::kAttnQ, il, {d, q_dim});
      AddTensor(w, in, Tensor::kAttnK, il, {d, kv_dim});
      AddTensor(w, in, Tensor::kAttnV, il, {d, kv_dim});
      AddTensor(w, in, Tensor::kAttnOutput, il, {q_dim, d});
      if (a == Arch::kQwen2 || a == Arch::kQwen2Moe) {
        AddTensor(w, in, Tensor::kAttnQBias, il, {q_dim});
        AddTensor(w, in, Tensor::kAttnKBias, il, {kv_dim});
        AddTensor(w, in, Tensor::kAttnVBias, il, {kv_dim});
      }
      if (a == Arch::kQwen3 || a == Arch::kQwen3Moe) {
        AddTensor(w, in, Tensor::kAttnQNorm, il, {kHeadDim});
        AddTensor(w, in, Tensor::kAttnKNorm, il, {kHeadDim});
      }
    }
    if (!moe || (mla && il == 0)) {
      AddTensor(w, in, Tensor::kFfnGate, il, {d, kFf});
      AddTensor(w, in, Tensor::kFfnUp, il, {d, kFf});
      AddTensor(w, in, Tensor::kFfnDown, il, {kFf, d});
      continue;
    }
    AddTensor(w, in, Tensor::kFfnGateInp, il, {d, kExperts});
    if (mla) AddTensor(w, in, Tensor::kExpProbsBias, il, {kExperts});
    AddTensor(w, in, Tensor::kFfnGateExps, il, {d, kFfExp, kExperts});
    AddTensor(w, in, Tensor::kFfnUpExps, il, {d, kFfExp, kExperts});
    AddTensor(w, in, Tensor::kFfnDownExps, il, {kFfExp, d, kExperts});
    if (a != Arch::kQwen3Moe) {
      AddTensor(w, in, Tensor::kFfnGateShexp, il, {d, kFfExp});
      AddTensor(w, in, Tensor::kFfnUpShexp, il, {d, kFfExp});
      AddTensor(w, in, Tensor::kFfnDownShexp, il, {kFfExp, d});
    }
    if (a == Arch::kQwen2Moe) AddTensor(w, in, Tensor::kFfnGateInpShexp, il, {d});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  constexpr Arch kArchs[] = {Arch::kLlama,    Arch::kQwen2,    Arch::kQwen3,
                             Arch::kQwen2Moe, Arch::kQwen3Moe, Arch::kDeepseek2};
  const Arch arch = kArchs[in.Byte() % 6];
  gguf::Writer w;
  WriteModel(w, in, arch);
  static const std::string path =
      "/tmp/airlock-model-load-fuzz-" + std::to_string(getpid()) + ".gguf";
  if (!w.WriteFile(path).ok()) return 0;
  auto model = airlock::engine::Model::Load(path);
  if (!model.ok()) {
    if (model.error().message().empty()) __builtin_trap();  // errors must say what is wrong
    return 0;
  }
  airlock::engine::SessionOptions so;
  so.n_ctx = 8;
  so.n_threads = 1;
  so.max_batch = 4;
  so.kv_type =
      (in.Byte() & 1) ? airlock::engine::KvCacheType::kQ8_0 : airlock::engine::KvCacheType::kF16;
  auto session = airlock::engine::Session::Create(**model, so);
  if (!session.ok()) return 0;
  const std::int32_t tokens[2] = {1, static_cast<std::int32_t>(in.Byte() % kVocab)};
  auto logits = (*session)->Eval(tokens);
  if (!logits.ok() || logits->empty()) __builtin_trap();
  return 0;
}
