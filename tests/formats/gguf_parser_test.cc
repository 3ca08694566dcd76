// Parser round trips with the writer, and every real GGUF fixture parses.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "status_matchers.h"
#include "test_util.h"

using ::airlock::testing::IsOk;

namespace airlock::formats::gguf {
namespace {

std::span<const std::byte> B(const std::string& s) { return core::AsBytes(s); }

std::vector<std::byte> Zeros(std::size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

TEST(GgufParse, RoundTripsMetadataAndTensors) {
  Writer w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 2);
  w.AddInt32("neg", -5);
  w.AddFloat32("llama.rope.freq_base", 10000.0f);
  w.AddFloat64("f64", 0.25);
  w.AddBool("flag", true);
  w.AddUint64("big", 1ull << 40);
  w.AddStringArray("tokenizer.ggml.tokens", {"a", "bc", ""});
  w.AddFloat32Array("tokenizer.ggml.scores", {1.5f, -2.0f, 0.0f});
  w.AddInt32Array("tokenizer.ggml.token_type", {1, 2, 3});
  auto f32 = Zeros(4 * 8 * 2);
  w.AddTensor("a.weight", GgmlType::kF32, {8, 2}, f32);
  auto q8 = Zeros(34 * 2);
  w.AddTensor("b.weight", GgmlType::kQ8_0, {64}, q8);
  std::string bytes = w.Build();

  auto file = File::Parse(B(bytes));
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->architecture(), "llama");
  EXPECT_EQ(file->GetUint("llama.block_count"), 2u);
  EXPECT_EQ(file->GetInt("neg"), -5);
  EXPECT_FALSE(file->GetUint("neg").has_value());
  EXPECT_EQ(file->GetFloat("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(file->GetFloat("f64"), 0.25);
  EXPECT_EQ(file->GetBool("flag"), true);
  EXPECT_EQ(file->GetUint("big"), 1ull << 40);
  EXPECT_FALSE(file->GetString("missing").has_value());
  EXPECT_FALSE(file->GetString("llama.block_count").has_value());
  auto tokens = file->GetArray("tokenizer.ggml.tokens");
  ASSERT_THAT(tokens, IsOk());
  EXPECT_EQ(tokens->size(), 3u);
  EXPECT_EQ(tokens->StringAt(1), "bc");
  EXPECT_EQ(tokens->StringAt(2), "");
  EXPECT_FALSE(tokens->StringAt(3).has_value());
  EXPECT_FALSE(tokens->At<float>(0).has_value());
  auto scores = file->GetArray("tokenizer.ggml.scores");
  ASSERT_THAT(scores, IsOk());
  EXPECT_EQ(scores->At<float>(1), -2.0f);
  EXPECT_EQ(scores->FloatAt(0), 1.5);
  EXPECT_FALSE(scores->At<float>(3).has_value());
  EXPECT_FALSE(scores->At<std::int32_t>(0).has_value());
  auto types = file->GetArray("tokenizer.ggml.token_type");
  EXPECT_EQ(types->At<std::int32_t>(2), 3);
  EXPECT_EQ(types->UintAt(2), 3u);
  ASSERT_EQ(file->tensors().size(), 2u);
  const TensorInfo* a = file->FindTensor("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->n_dims, 2u);
  EXPECT_EQ(a->ne[0], 8u);
  EXPECT_EQ(a->ne[1], 2u);
  EXPECT_EQ(a->n_bytes, 64u);
  const TensorInfo* b = file->FindTensor("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->ggml_type(), GgmlType::kQ8_0);
  EXPECT_EQ(b->n_bytes, 68u);
  EXPECT_EQ(b->offset, 64u);
  EXPECT_EQ(file->TensorData(*b).size(), 68u);
  EXPECT_EQ(file->data_offset() % 32, 0u);
  EXPECT_TRUE(file->issues().empty()) << file->issues()[0].code;
}

TEST(GgufWriter, StreamsGeneratedTensorsToDisk) {
  testing::TempDir tmp("writer");
  Writer w(64);
  w.AddString("general.architecture", "llama");
  auto fill = [](std::uint64_t off, std::span<std::byte> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((off + i) % 251);
  };
  // Large enough to need several 4 MiB chunks.
  w.AddTensorGenerated("big", GgmlType::kQ8_0, {4096, 1100}, fill);
  w.AddTensorGenerated("small", GgmlType::kF16, {3}, fill);
  std::string path = (tmp.path() / "m.gguf").string();
  ASSERT_TRUE(w.WriteFile(path).ok());
  auto m = core::MappedFile::Open(path);
  ASSERT_THAT(m, IsOk());
  auto f = File::Parse(m->bytes());
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_TRUE(f->issues().empty());
  const TensorInfo* big = f->FindTensor("big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->n_bytes, 4096u / 32 * 34 * 1100);
  EXPECT_EQ(big->n_bytes, Writer::TensorBytes(GgmlType::kQ8_0, {4096, 1100}));
  auto data = f->TensorData(*big);
  ASSERT_EQ(data.size(), big->n_bytes);
  for (std::size_t i : {std::size_t{0}, std::size_t{4} << 20, data.size() - 1}) {
    EXPECT_EQ(data[i], static_cast<std::byte>(i % 251)) << i;
  }
  auto small = f->TensorData(*f->FindTensor("small"));
  ASSERT_EQ(small.size(), 6u);
  EXPECT_EQ(small[5], std::byte{5});
  EXPECT_EQ(f->FindTensor("small")->offset % 64, 0u);
}

TEST(GgufTypes, TraitsTable) {
  EXPECT_EQ(GetTypeTraits(GgmlType::kQ4_K)->type_size, 144u);
  EXPECT_EQ(GetTypeTraits(GgmlType::kQ6_K)->type_size, 210u);
  EXPECT_EQ(GetTypeTraits(GgmlType::kBF16)->name, "BF16");
  EXPECT_EQ(GetTypeTraits(GgmlType::kIQ4_XS)->block_size, 256u);
  EXPECT_EQ(GetTypeTraits(4u), nullptr);   // Q4_2 removed
  EXPECT_EQ(GetTypeTraits(31u), nullptr);  // Q4_0_4_4 removed
  EXPECT_EQ(GetTypeTraits(999u), nullptr);
  EXPECT_EQ(GgmlTypeName(999), "type-999");
}

TEST(GgufFixtures, VocabFilesParseToExactEof) {
  AIRLOCK_FIXTURES_OR_SKIP(dir, "llama-vocab");
  int parsed = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".gguf") continue;
    auto m = core::MappedFile::Open(e.path().string());
    ASSERT_THAT(m, IsOk());
    auto f = File::Parse(m->bytes());
    ASSERT_THAT(f, IsOk()) << e.path();
    EXPECT_TRUE(f->GetArray("tokenizer.ggml.tokens").has_value()) << e.path();
    for (const Issue& i : f->issues())
      ADD_FAILURE() << e.path() << ": " << i.code << " " << i.message;
    ++parsed;
  }
  EXPECT_GE(parsed, 10);
}

TEST(GgufFixtures, ModelsParse) {
  AIRLOCK_FIXTURES_OR_SKIP(dir, "engine-reference");
  int parsed = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir / "models")) {
    auto m = core::MappedFile::Open(e.path().string());
    ASSERT_THAT(m, IsOk());
    auto f = File::Parse(m->bytes());
    ASSERT_THAT(f, IsOk()) << e.path();
    EXPECT_FALSE(f->tensors().empty());
    for (const Issue& i : f->issues())
      ADD_FAILURE() << e.path() << ": " << i.code << " " << i.message;
    ++parsed;
  }
  EXPECT_GE(parsed, 20);
  auto stories = dir / ".." / "gguf-models" / "stories260K.gguf";
  if (std::filesystem::exists(stories)) {
    auto m = core::MappedFile::Open(stories.string());
    ASSERT_THAT(m, IsOk());
    auto f = File::Parse(m->bytes());
    ASSERT_THAT(f, IsOk());
    EXPECT_EQ(f->architecture(), "llama");
    for (const Issue& i : f->issues())
      ADD_FAILURE() << "stories260K: " << i.code << " " << i.message;
  }
}

}  // namespace
}  // namespace airlock::formats::gguf
