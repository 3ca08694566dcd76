// safetensors header validation: the reference implementation's vectors plus our strict checks.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/file.h"
#include "formats/safetensors.h"
#include "status_matchers.h"
#include "test_util.h"

using ::airlock::testing::IsOk;

namespace airlock::formats::safetensors {
namespace {

std::string Le64(std::uint64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}

// A file with `header` (padded to 8 bytes with spaces) and `data_len` zero bytes of data.
std::string Make(std::string header, std::size_t data_len) {
  while (header.size() % 8 != 0) header += ' ';
  return Le64(header.size()) + header + std::string(data_len, '\0');
}

std::string CodeOf(const std::string& bytes) {
  ParseFailure failure;
  auto f = File::Parse(core::AsBytes(bytes), {}, &failure);
  if (f.ok()) return "ok";
  EXPECT_FALSE(failure.code.empty());
  return failure.code;
}

const char* kGood = R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})";

TEST(Safetensors, ParsesReferenceExample) {
  std::string bytes = Make(kGood, 16);
  auto f = File::Parse(core::AsBytes(bytes));
  ASSERT_THAT(f, IsOk());
  ASSERT_EQ(f->tensors().size(), 1u);
  const TensorInfo* t = f->FindTensor("test");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, "I32");
  EXPECT_EQ(t->n_elements, 4u);
  EXPECT_EQ(f->TensorData(*t).size(), 16u);
  EXPECT_TRUE(f->issues().empty());
}

TEST(Safetensors, MetadataAndEmptyAndScalarTensors) {
  std::string h =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[],"data_offsets":[0,2]},)"
      R"("e":{"dtype":"F32","shape":[0,4],"data_offsets":[2,2]},"f4":{"dtype":"F4","shape":[2],"data_offsets":[2,3]}})";
  auto bytes = Make(h, 3);
  auto f = File::Parse(core::AsBytes(bytes));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->GetMetadata("format"), "pt");
  EXPECT_EQ(f->tensors().size(), 3u);
}

TEST(Safetensors, ReferenceNegativeVectors) {
  EXPECT_EQ(CodeOf(Make(kGood, 16) + "extra_bogus_data_for_polyglot_file"), "trailing-data");
  EXPECT_EQ(CodeOf(Make(kGood, 14)), "tensor-out-of-bounds");
  EXPECT_EQ(CodeOf(Le64(0xffffff0000003cull) + "{}"), "header-too-large");
  EXPECT_EQ(CodeOf(""), "truncated");
  EXPECT_EQ(CodeOf(Le64(60)), "header-out-of-bounds");
  EXPECT_EQ(CodeOf(Le64(4) + std::string("\x01\xff\xfe\x00", 4)), "bad-header-start");
  EXPECT_EQ(CodeOf(Le64(8) + "{\"a\":\xff\xfe}"), "bad-json");
  EXPECT_EQ(CodeOf(Le64(1) + "{"), "bad-json");
}

TEST(Safetensors, StrictChecks) {
  // Duplicate keys: serde keeps the last, other parsers the first.
  EXPECT_EQ(
      CodeOf(Make(
          R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
          1)),
      "duplicate-key");
  EXPECT_EQ(
      CodeOf(Make(R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1)),
      "duplicate-key");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0.0,1]}})", 1)),
            "non-integer");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1)),
            "non-integer");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1e0]}})", 1)),
            "non-integer");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"X9","shape":[1],"data_offsets":[0,1]}})", 1)),
            "bad-dtype");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,1]}})", 1)),
            "tensor-size-mismatch");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", 1)),
            "misaligned-slice");
  EXPECT_EQ(CodeOf(Make(
                R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}})", 1)),
            "size-overflow");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2)),
            "tensor-gap");
  EXPECT_EQ(
      CodeOf(Make(
          R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
          3)),
      "tensor-overlap");
  EXPECT_EQ(CodeOf(Make(R"({"a":{"dtype":"U8","shape":[1]}})", 0)), "bad-tensor-entry");
  EXPECT_EQ(CodeOf(Make(R"({"a":[1]})", 0)), "bad-tensor-entry");
  EXPECT_EQ(CodeOf(Make(R"({"__metadata__":{"k":1}})", 0)), "bad-metadata");
  EXPECT_EQ(CodeOf(Make(R"({"__metadata__":{"k":{"x":"y"}}})", 0)), "bad-metadata");
  EXPECT_EQ(CodeOf(Make(R"( {})", 0)), "bad-header-start");
  std::string deep = "{\"a\":" + std::string(200, '[') + std::string(200, ']') + "}";
  EXPECT_EQ(CodeOf(Make(deep, 0)), "json-too-deep");
}

TEST(Safetensors, UnknownFieldsAndPaddingAreIssues) {
  auto bytes =
      Make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":{"x":[1,2]}}})", 1);
  auto f = File::Parse(core::AsBytes(bytes));
  ASSERT_THAT(f, IsOk());
  ASSERT_EQ(f->issues().size(), 1u);
  EXPECT_EQ(f->issues()[0].code, "unknown-field");

  std::string h = std::string(kGood) + "\n\t";
  auto padded = Le64(h.size()) + h + std::string(16, '\0');
  auto g = File::Parse(core::AsBytes(padded));
  ASSERT_THAT(g, IsOk());
  ASSERT_EQ(g->issues().size(), 1u);
  EXPECT_EQ(g->issues()[0].code, "header-padding");
}

TEST(Safetensors, ModelauditFixturesParse) {
  AIRLOCK_FIXTURES_OR_SKIP(dir, "modelaudit/samples/safetensors");
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    auto m = core::MappedFile::Open(e.path().string());
    ASSERT_THAT(m, IsOk());
    auto f = File::Parse(m->bytes());
    ASSERT_THAT(f, IsOk()) << e.path();
    EXPECT_EQ(f->tensors().size(), 3u);
    EXPECT_FALSE(f->metadata().empty());
    ++n;
  }
  EXPECT_EQ(n, 7);
}

}  // namespace
}  // namespace airlock::formats::safetensors
