// Every GGUF malformation class (llama.cpp's test-gguf handcrafted cases and the parser CVEs):
// crafted with the writer, corrupted, and required to fail with the right code or issue.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "core/file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "status_matchers.h"
#include "test_util.h"

using ::airlock::testing::IsOk;

namespace airlock::formats::gguf {
namespace {

template <typename T>
std::string Enc(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));
  return s;
}

template <typename T>
void Patch(std::string& b, std::size_t at, T v) {
  ASSERT_LE(at + sizeof(T), b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}

std::string ParseCode(const std::string& bytes, const ParseOptions& o = {}) {
  ParseFailure failure;
  auto f = File::Parse(core::AsBytes(bytes), o, &failure);
  if (f.ok()) return "ok";
  EXPECT_FALSE(failure.code.empty());
  EXPECT_FALSE(f.error().message().empty());
  return failure.code;
}

std::vector<std::string> IssueCodes(const std::string& bytes) {
  auto f = File::Parse(core::AsBytes(bytes));
  EXPECT_THAT(f, IsOk());
  std::vector<std::string> codes;
  if (f.ok())
    for (const auto& i : f->issues()) codes.push_back(i.code);
  return codes;
}

bool Has(const std::vector<std::string>& v, std::string_view code) {
  return std::find(v.begin(), v.end(), code) != v.end();
}

std::vector<std::byte> Zeros(std::size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

Writer Base() {
  Writer w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 1);
  auto d = Zeros(64);
  w.AddTensor("a", GgmlType::kF32, {16}, d);
  w.AddTensor("b", GgmlType::kF32, {4, 4}, d);
  return w;
}

// A file with one tensor whose info record we patch: name "t", n_dims given, ne given.
std::string OneTensor(std::vector<std::uint64_t> ne, GgmlType type, std::size_t data_bytes) {
  Writer w;
  auto d = Zeros(data_bytes);
  w.AddTensor("t", type, std::move(ne), d);
  return w.Build();
}

TEST(GgufMalformed, Header) {
  std::string good = Base().Build();
  ASSERT_EQ(ParseCode(good), "ok");
  std::string b = good;
  b[0] = 'X';
  EXPECT_EQ(ParseCode(b), "bad-magic");
  for (std::uint32_t v : {0u, 1u, 4u, 0xFFFFFFFFu}) {
    b = good;
    Patch<std::uint32_t>(b, 4, v);
    EXPECT_EQ(ParseCode(b), v == 0xFFFFFFFFu ? "bad-version" : "bad-version") << v;
  }
  b = good;
  Patch<std::uint32_t>(b, 4, 0x00030000u);
  EXPECT_EQ(ParseCode(b), "big-endian");
  b = good;
  Patch<std::uint32_t>(b, 4, 2u);
  EXPECT_EQ(ParseCode(b), "ok");  // v2 has the same layout
  b = good;
  Patch<std::uint64_t>(b, 8, ~0ull);  // n_tensors = -1
  EXPECT_EQ(ParseCode(b), "bad-tensor-count");
  b = good;
  Patch<std::uint64_t>(b, 8, 1ull << 60);
  EXPECT_EQ(ParseCode(b), "bad-tensor-count");
  b = good;
  Patch<std::uint64_t>(b, 16, ~0ull);
  EXPECT_EQ(ParseCode(b), "bad-kv-count");
  b = good;
  Patch<std::uint64_t>(b, 16, 1ull << 40);
  EXPECT_EQ(ParseCode(b), "bad-kv-count");
  EXPECT_EQ(ParseCode(""), "truncated");
  EXPECT_EQ(ParseCode("GGUF"), "truncated");
}

TEST(GgufMalformed, EveryTruncationFails) {
  std::string good = Base().Build();
  auto f = File::Parse(core::AsBytes(good));
  ASSERT_THAT(f, IsOk());
  const TensorInfo& last = f->tensors().back();
  std::uint64_t needed = f->data_offset() + last.offset + last.n_bytes;
  for (std::size_t n = 0; n < good.size(); ++n) {
    std::string code = ParseCode(good.substr(0, n));
    if (n < needed) {
      EXPECT_NE(code, "ok") << "prefix " << n;
    } else {
      EXPECT_EQ(code, "ok") << "prefix " << n << " only cuts tail padding";
    }
  }
}

TEST(GgufMalformed, Strings) {
  // Key length far larger than the file (CVE-2024-23496 class) and beyond the 1 GiB cap.
  std::string b = Base().Build();
  Patch<std::uint64_t>(b, 24, ~0ull);
  EXPECT_EQ(ParseCode(b), "string-too-long");
  b = Base().Build();
  Patch<std::uint64_t>(b, 24, 1000000);
  EXPECT_EQ(ParseCode(b), "string-out-of-bounds");
  ParseOptions tight;
  tight.max_string_length = 4;
  EXPECT_EQ(ParseCode(Base().Build(), tight), "string-too-long");

  Writer w;
  w.AddString("", "x");
  EXPECT_EQ(ParseCode(w.Build()), "empty-key");

  Writer bad_utf8;
  bad_utf8.AddString("general.name", "\xff\xfe");
  EXPECT_TRUE(Has(IssueCodes(bad_utf8.Build()), "invalid-utf8"));

  Writer grammar;
  grammar.AddString("General.Name", "x");
  EXPECT_TRUE(Has(IssueCodes(grammar.Build()), "key-grammar"));
}

TEST(GgufMalformed, Values) {
  Writer w;
  w.AddRawKv("k", 13, Enc<std::uint32_t>(0));
  EXPECT_EQ(ParseCode(w.Build()), "bad-value-type");

  Writer dup;
  dup.AddUint32("k", 1);
  dup.AddUint32("k", 2);
  EXPECT_EQ(ParseCode(dup.Build()), "duplicate-key");

  Writer boolean;
  boolean.AddRawKv("k", static_cast<std::uint32_t>(ValueType::kBool), std::string(1, '\x02'));
  EXPECT_TRUE(Has(IssueCodes(boolean.Build()), "bool-not-0-1"));

  Writer trunc;
  trunc.AddRawKv("k", static_cast<std::uint32_t>(ValueType::kUint64), Enc<std::uint32_t>(7));
  EXPECT_EQ(ParseCode(trunc.Build()), "truncated");
}

TEST(GgufMalformed, Arrays) {
  // Huge element count with few bytes behind it (CVE-2024-21825 class).
  Writer w;
  w.AddRawKv("a", static_cast<std::uint32_t>(ValueType::kArray),
             Enc<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kUint32)) +
                 Enc<std::uint64_t>(1ull << 29) + Enc<std::uint32_t>(1));
  EXPECT_EQ(ParseCode(w.Build()), "array-out-of-bounds");
  Writer s;
  s.AddRawKv("a", static_cast<std::uint32_t>(ValueType::kArray),
             Enc<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kString)) +
                 Enc<std::uint64_t>(1ull << 29));
  EXPECT_EQ(ParseCode(s.Build()), "array-out-of-bounds");
  Writer cap;
  cap.AddRawKv("a", static_cast<std::uint32_t>(ValueType::kArray),
               Enc<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kUint8)) +
                   Enc<std::uint64_t>((1ull << 30) + 1));
  EXPECT_EQ(ParseCode(cap.Build()), "array-too-long");
  Writer et;
  et.AddRawKv("a", static_cast<std::uint32_t>(ValueType::kArray),
              Enc<std::uint32_t>(77) + Enc<std::uint64_t>(0));
  EXPECT_EQ(ParseCode(et.Build()), "bad-value-type");

  // Nested arrays parse (the spec allows them) but are reported; depth is capped.
  std::string inner = Enc<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kInt32)) +
                      Enc<std::uint64_t>(2) + Enc<std::int32_t>(7) + Enc<std::int32_t>(-8);
  Writer nested;
  nested.AddRawKv("a", static_cast<std::uint32_t>(ValueType::kArray),
                  Enc<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kArray)) +
                      Enc<std::uint64_t>(1) + inner);
  std::string nb = nested.Build();
  auto f = File::Parse(core::AsBytes(nb));
  ASSERT_THAT(f, IsOk());
  auto outer = f->GetArray("a");
  ASSERT_THAT(outer, IsOk());
  auto in = outer->ArrayAt(0);
  ASSERT_THAT(in, IsOk());
  EXPECT_EQ(in->At<std::int32_t>(1), -8);
  EXPECT_FALSE(outer->ArrayAt(1).has_value());
  EXPECT_TRUE(Has(IssueCodes(nb), "nested-array"));

  std::string deep = inner;
  for (int i = 0; i < 10; ++i) {
    deep = Enc<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kArray)) +
           Enc<std::uint64_t>(1) + deep;
  }
  Writer too_deep;
  too_deep.AddRawKv("a", static_cast<std::uint32_t>(ValueType::kArray), deep);
  EXPECT_EQ(ParseCode(too_deep.Build()), "array-too-deep");

  ParseOptions small_index;
  small_index.max_index_entries = 2;
  Writer many;
  many.AddStringArray("a", {"x", "y", "z"});
  EXPECT_EQ(ParseCode(many.Build(), small_index), "limit-index");
}

TEST(GgufMalformed, Alignment) {
  for (std::uint32_t a : {0u, 13u, 48u}) {
    Writer w;
    w.AddUint32("general.alignment", a);
    EXPECT_EQ(ParseCode(w.Build()), "bad-alignment") << a;
  }
  Writer wrong_type;
  wrong_type.AddInt32("general.alignment", 32);
  EXPECT_EQ(ParseCode(wrong_type.Build()), "bad-alignment");

  Writer w64(64);
  auto d = Zeros(40);
  w64.AddTensor("a", GgmlType::kF32, {10}, d);
  w64.AddTensor("b", GgmlType::kF32, {10}, d);
  std::string b = w64.Build();
  auto f = File::Parse(core::AsBytes(b));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->FindTensor("b")->offset, 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
}

TEST(GgufMalformed, TensorInfos) {
  std::string name64(64, 'n');
  {
    Writer w;
    auto d = Zeros(4);
    w.AddTensor(name64, GgmlType::kF32, {1}, d);
    EXPECT_EQ(ParseCode(w.Build()), "tensor-name-too-long");
  }
  {
    Writer w;
    auto d = Zeros(4);
    w.AddTensor("x", GgmlType::kF32, {1}, d);
    w.AddTensor("x", GgmlType::kF32, {1}, d);
    EXPECT_EQ(ParseCode(w.Build()), "duplicate-tensor-name");
  }
  EXPECT_EQ(ParseCode(OneTensor({1, 1, 1, 1, 1}, GgmlType::kF32, 4)), "bad-n-dims");
  EXPECT_EQ(ParseCode(OneTensor({~0ull}, GgmlType::kF32, 4)), "bad-shape");  // ne = -1
  // Element count not representable: the wrapped-product guard bypass (llama.cpp #27203).
  EXPECT_EQ(ParseCode(OneTensor({0x7FFFFFFFFFFFFFFFull, 2, 1, 1}, GgmlType::kI8, 4)), "bad-shape");
  EXPECT_EQ(ParseCode(OneTensor({1ull << 32, 1ull << 32}, GgmlType::kI8, 4)), "bad-shape");
  EXPECT_EQ(
      ParseCode(OneTensor({1ull << 62, 1ull << 62, 1ull << 62, 1ull << 62}, GgmlType::kI8, 4)),
      "bad-shape");
  // Byte size not representable although the element count is (CVE-2026-33298 class).
  EXPECT_EQ(ParseCode(OneTensor({1ull << 62}, GgmlType::kF32, 4)), "tensor-too-large");
  // Block-quantized nbytes that wrapped to 2 bytes in llama.cpp (PR #27200): here it is the true
  // size, which the file does not hold.
  EXPECT_EQ(ParseCode(OneTensor({5124095576030431008ull}, GgmlType::kQ4_0, 18)),
            "tensor-out-of-bounds");
  // DATA_MEM_SIZE_OVERFLOW: two I8 tensors of 0x7FFFFFFFFFFFFFC0 bytes.
  {
    Writer w;
    auto d = Zeros(64);
    w.AddTensor("a", GgmlType::kI8, {0x7FFFFFFFFFFFFFC0ull}, d);
    w.AddTensor("b", GgmlType::kI8, {0x7FFFFFFFFFFFFFC0ull}, d);
    w.OverrideTensorOffset(1, 0x7FFFFFFFFFFFFFC0ull);
    EXPECT_EQ(ParseCode(w.Build()), "tensor-out-of-bounds");
  }
  EXPECT_EQ(ParseCode(OneTensor({33}, GgmlType::kQ8_0, 34)), "bad-shape");  // not a block multiple
  {
    Writer w;
    auto d = Zeros(4);
    w.AddTensor("t", GgmlType::kF32, {1}, d);
    w.OverrideTensorType(0, 4);  // Q4_2, removed
    EXPECT_EQ(ParseCode(w.Build()), "bad-tensor-type");
    w.OverrideTensorType(0, 31);  // Q4_0_4_4, removed from files
    EXPECT_EQ(ParseCode(w.Build()), "bad-tensor-type");
    w.OverrideTensorType(0, 9999);
    EXPECT_EQ(ParseCode(w.Build()), "bad-tensor-type");
  }
  {
    std::string b = OneTensor({0, 4}, GgmlType::kF32, 0);
    auto codes = IssueCodes(b);
    EXPECT_TRUE(Has(codes, "zero-dim"));
  }
  {
    Writer w;
    auto d = Zeros(4);
    w.AddTensor("bad\x01name", GgmlType::kF32, {1}, d);
    EXPECT_TRUE(Has(IssueCodes(w.Build()), "tensor-name-charset"));
  }
}

TEST(GgufMalformed, Offsets) {
  {
    Writer w = Base();
    w.OverrideTensorOffset(1, 8);
    EXPECT_EQ(ParseCode(w.Build()), "misaligned-offset");
  }
  {
    Writer w = Base();
    w.OverrideTensorOffset(1, 0);
    EXPECT_EQ(ParseCode(w.Build()), "tensor-overlap");
  }
  {
    Writer w = Base();
    w.OverrideTensorOffset(1, 128);
    EXPECT_EQ(ParseCode(w.Build()), "tensor-gap");
  }
  {
    Writer w = Base();
    w.OverrideTensorOffset(0, 64);  // reordered: a after b
    w.OverrideTensorOffset(1, 0);
    EXPECT_EQ(ParseCode(w.Build()), "tensor-gap");
  }
  {
    Writer w = Base();
    w.OverrideTensorOffset(1, 1ull << 40);
    EXPECT_NE(ParseCode(w.Build()), "ok");
  }
  {
    // Data section start beyond EOF: tensor infos end right at EOF.
    Writer w;
    w.AddString("general.architecture", "llama");
    auto d = Zeros(0);
    w.AddTensor("e", GgmlType::kF32, {0}, d);
    std::string b = w.Build();
    auto f = File::Parse(core::AsBytes(b));
    ASSERT_THAT(f, IsOk());
    std::size_t infos_end = b.size();
    while (infos_end > 0 && b[infos_end - 1] == '\0' && infos_end % 32 != 0) --infos_end;
    // Cut inside the padding after the tensor infos.
    std::string cut = b.substr(0, f->data_offset() - 1);
    EXPECT_EQ(ParseCode(cut), "data-out-of-bounds");
  }
}

TEST(GgufMalformed, TrailingAndPadding) {
  std::string good = Base().Build();
  EXPECT_TRUE(IssueCodes(good).empty());
  EXPECT_TRUE(Has(IssueCodes(good + "PK\x03\x04payload"), "trailing-data"));
  auto f = File::Parse(core::AsBytes(good));
  ASSERT_THAT(f, IsOk());
  std::string b = good;
  b[f->data_offset() - 1] = 'x';  // padding before the data section
  auto codes = IssueCodes(b);
  // The writer may produce no padding before the data if the infos end aligned; only check when
  // there was a padding byte to corrupt.
  if (f->data_offset() > 0 && good[f->data_offset() - 1] == '\0') {
    EXPECT_TRUE(Has(codes, "nonzero-padding"));
  }
  // Padding after the first tensor (its 64 bytes are already aligned: use a 3-float tensor).
  Writer w;
  auto d12 = Zeros(12);
  w.AddTensor("a", GgmlType::kF32, {3}, d12);
  w.AddTensor("b", GgmlType::kF32, {3}, d12);
  std::string p = w.Build();
  auto pf = File::Parse(core::AsBytes(p));
  ASSERT_THAT(pf, IsOk());
  p[pf->data_offset() + 12] = 'Z';
  EXPECT_TRUE(Has(IssueCodes(p), "nonzero-padding"));
  // Zero-tensor files: trailing bytes after the metadata are reported too.
  Writer kv;
  kv.AddString("general.architecture", "llama");
  EXPECT_TRUE(IssueCodes(kv.Build()).empty());
  EXPECT_TRUE(Has(IssueCodes(kv.Build() + std::string(100, 'A')), "trailing-data"));
}

std::vector<std::string> ModelCodes(const std::string& bytes) {
  auto f = File::Parse(core::AsBytes(bytes));
  EXPECT_THAT(f, IsOk());
  std::vector<std::string> codes;
  if (f.ok())
    for (const auto& i : CheckModelMetadata(*f)) codes.push_back(i.code);
  return codes;
}

Writer Vocab() {
  Writer w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 2);
  w.AddUint32("llama.context_length", 128);
  w.AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<0x41>", "a"});
  w.AddFloat32Array("tokenizer.ggml.scores", {0, 0, 0, 0, -1});
  w.AddInt32Array("tokenizer.ggml.token_type", {2, 3, 3, 6, 1});
  return w;
}

TEST(GgufModelChecks, CleanVocabHasNoIssues) {
  Writer w = Vocab();
  w.AddUint32("tokenizer.ggml.bos_token_id", 1);
  w.AddUint32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);  // "none"
  w.AddInt32("tokenizer.ggml.sep_token_id", -1);
  EXPECT_TRUE(ModelCodes(w.Build()).empty());
}

TEST(GgufModelChecks, VocabMalformations) {
  {
    Writer w = Vocab();
    w.AddUint32("tokenizer.ggml.eos_token_id", 5);  // == n_vocab
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "special-token-out-of-range"));
  }
  {
    Writer w = Vocab();
    w.AddString("tokenizer.ggml.eos_token_id", "2");
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "special-token-type"));
  }
  {
    Writer w;
    w.AddString("general.architecture", "llama");
    w.AddStringArray("tokenizer.ggml.tokens", {"a", "b"});
    w.AddFloat32Array("tokenizer.ggml.scores", {0});
    w.AddFloat32Array("tokenizer.ggml.token_type", {1, 1});
    auto codes = ModelCodes(w.Build());
    EXPECT_TRUE(Has(codes, "vocab-length-mismatch"));
    EXPECT_TRUE(Has(codes, "vocab-type"));
  }
  {
    Writer w;
    w.AddString("general.architecture", "llama");
    w.AddStringArray("tokenizer.ggml.tokens", {"<0x-1>", "b"});
    w.AddInt32Array("tokenizer.ggml.token_type", {6, 1});
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "bad-byte-token"));
  }
  {
    Writer w;
    w.AddString("general.architecture", "llama");
    w.AddUint32Array("tokenizer.ggml.tokens", {1, 2});
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "vocab-type"));
  }
}

TEST(GgufModelChecks, Hyperparameters) {
  {
    Writer w;
    w.AddString("general.architecture", "llama");
    w.AddUint32("llama.block_count", 513);
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "hparam-block-count"));
  }
  {
    Writer w;
    w.AddString("general.architecture", "llama");
    w.AddUint32("llama.attention.head_count", 14);
    w.AddUint32("llama.attention.head_count_kv", 3);
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "hparam-heads"));
  }
  {
    Writer w;
    w.AddUint32("llama.block_count", 2);
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "missing-architecture"));
  }
  {
    Writer w = Vocab();
    w.AddUint32("llama.embedding_length", 32);
    auto d = Zeros(4 * 32 * 3);
    w.AddTensor("token_embd.weight", GgmlType::kF32, {32, 3}, d);  // 3 rows for 5 tokens
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "hparam-shape-mismatch"));
  }
  {
    Writer w;
    w.AddString("general.architecture", "llama");
    auto d = Zeros(34);
    w.AddTensor("q", GgmlType::kQ8_0, {32}, d);
    EXPECT_TRUE(Has(ModelCodes(w.Build()), "missing-quantization-version"));
    w.AddUint32("general.quantization_version", 2);
    EXPECT_FALSE(Has(ModelCodes(w.Build()), "missing-quantization-version"));
  }
}

TEST(GgufModelChecks, FixturesAreConsistent) {
  AIRLOCK_FIXTURES_OR_SKIP(dir, "llama-vocab");
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".gguf") files.push_back(e.path());
  auto models = dir / ".." / "engine-reference" / "models";
  if (std::filesystem::is_directory(models))
    for (const auto& e : std::filesystem::directory_iterator(models)) files.push_back(e.path());
  auto stories = dir / ".." / "gguf-models" / "stories260K.gguf";
  if (std::filesystem::exists(stories)) files.push_back(stories);
  for (const auto& p : files) {
    auto m = core::MappedFile::Open(p.string());
    ASSERT_THAT(m, IsOk());
    auto f = File::Parse(m->bytes());
    ASSERT_THAT(f, IsOk()) << p;
    for (const Issue& i : CheckModelMetadata(*f))
      ADD_FAILURE() << p.filename() << ": " << i.code << ": " << i.message;
  }
  EXPECT_GE(files.size(), 10u);
}

}  // namespace
}  // namespace airlock::formats::gguf

namespace airlock::formats::gguf {
namespace {

// Every byte of a small model's header set to a few boundary values: the parser must either
// succeed or fail with a code, and a successful parse must keep every tensor inside the buffer.
TEST(GgufMalformed, ByteMutationSweep) {
  Writer w = Vocab();
  w.AddString("tokenizer.chat_template", "{{ x }}");
  auto d = Zeros(64);
  w.AddTensor("a", GgmlType::kF32, {16}, d);
  w.AddTensor("b", GgmlType::kQ8_0, {32}, Zeros(34));
  std::string good = w.Build();
  auto f = File::Parse(core::AsBytes(good));
  ASSERT_THAT(f, IsOk());
  int failures = 0;
  for (std::size_t i = 0; i < f->data_offset(); ++i) {
    for (unsigned char v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
      std::string b = good;
      b[i] = static_cast<char>(v);
      ParseFailure failure;
      auto m = File::Parse(core::AsBytes(b), {}, &failure);
      if (!m.ok()) {
        ++failures;
        EXPECT_FALSE(failure.code.empty());
        continue;
      }
      for (const TensorInfo& t : m->tensors()) {
        EXPECT_LE(m->data_offset() + t.offset + t.n_bytes, b.size());
        EXPECT_EQ(m->TensorData(t).size(), t.n_bytes);
      }
      (void)CheckModelMetadata(*m);
    }
  }
  EXPECT_GT(failures, 100);
}

}  // namespace
}  // namespace airlock::formats::gguf
