// Serialization against model_signing's golden statements and manifests
// (tests/_signing/testdata/signing/TestPayload, tests/_serialization/testdata): the models of
// model_signing's tests/conftest.py are rebuilt here and must serialize to the same bytes.
#include <gtest/gtest.h>

#include <filesystem>

#include "sign/bundle.h"
#include "sign/manifest.h"
#include "sign_test_util.h"
#include "test_util.h"

namespace airlock::sign {
namespace {

namespace fs = std::filesystem;
using sign::testing::ReadText;
using sign::testing::WriteText;

// Builds the conftest model `name` under `root`; returns its path.
fs::path BuildModel(const fs::path& root, const std::string& name) {
  if (name == "sample_model_file") {
    WriteText(root / "file_model", "This is a simple model");
    return root / "file_model";
  }
  if (name == "empty_model_file") {
    WriteText(root / "empty_file_model", "");
    return root / "empty_file_model";
  }
  if (name == "sample_model_folder") {
    fs::path m = root / "sample_model";
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        std::string f = "f" + std::to_string(i) + std::to_string(j);
        WriteText(m / ("d" + std::to_string(i)) / f,
                  "This is file " + f + " in d" + std::to_string(i) + ".");
      }
    for (int i = 0; i < 4; ++i)
      WriteText(m / ("f" + std::to_string(i)), "This is file f" + std::to_string(i) + " in root.");
    return m;
  }
  if (name == "empty_model_folder") {
    fs::create_directories(root / "empty_folder_model");
    return root / "empty_folder_model";
  }
  if (name == "model_folder_with_empty_file") {
    WriteText(root / "empty_file_inside_model" / "empty_file", "");
    return root / "empty_file_inside_model";
  }
  if (name == "deep_model_folder") {
    fs::path m = root / "deep_model";
    for (int i = 0; i < 4; ++i)
      WriteText(m / "d0/d1/d2/d3/d4" / ("f" + std::to_string(i)),
                "This is file f" + std::to_string(i) + ".");
    return m;
  }
  if (name == "symlink_model_folder") {
    WriteText(root / "external" / "file", "This is a simple model");
    fs::path m = root / "symlink_model";
    fs::create_directories(m);
    fs::create_symlink(root / "external" / "file", m / "symlink_file");
    return m;
  }
  return {};
}

struct GoldenCase {
  std::string model;
  std::string suffix;  // "", "_shard", "_small_shards"
};

class GoldenPayloadTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenPayloadTest, StatementBytesMatchModelSigning) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "model-signing");
  const auto& c = GetParam();
  airlock::testing::TempDir tmp("golden");
  fs::path model = BuildModel(tmp.path(), c.model);
  ASSERT_FALSE(model.empty());
  SerializationOptions o;
  o.allow_symlinks = true;  // as signing_test.py does
  if (c.suffix == "_shard") {
    o.method = SerializationMethod::kShards;
  } else if (c.suffix == "_small_shards") {
    o.method = SerializationMethod::kShards;
    o.shard_size = 8;
  }
  auto m = HashModel(model.string(), o);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  auto statement = StatementForManifest(*m);
  ASSERT_TRUE(statement.has_value()) << statement.error().message();
  std::string golden =
      ReadText(fixtures / "tests/_signing/testdata/signing/TestPayload" / (c.model + c.suffix));
  ASSERT_FALSE(golden.empty());
  while (!golden.empty() && golden.back() == '\n') golden.pop_back();
  EXPECT_EQ(*statement, golden);

  // The parser reads it back to the same manifest.
  auto parsed = ParseStatement(*statement);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  auto back = ManifestFromStatement(*parsed);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  ASSERT_EQ(back->manifest.resources.size(), m->resources.size());
  for (std::size_t i = 0; i < m->resources.size(); ++i) {
    EXPECT_EQ(back->manifest.resources[i].name, m->resources[i].name);
    EXPECT_EQ(back->manifest.resources[i].digest_hex, m->resources[i].digest_hex);
  }
}

std::vector<GoldenCase> AllGoldenCases() {
  std::vector<GoldenCase> cases;
  for (const char* model :
       {"sample_model_file", "empty_model_file", "sample_model_folder", "empty_model_folder",
        "model_folder_with_empty_file", "deep_model_folder", "symlink_model_folder"})
    for (const char* suffix : {"", "_shard", "_small_shards"}) cases.push_back({model, suffix});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ModelSigning, GoldenPayloadTest, ::testing::ValuesIn(AllGoldenCases()),
                         [](const auto& info) {
                           return info.param.model + (info.param.suffix.empty()
                                                          ? std::string("_files")
                                                          : info.param.suffix);
                         });

// The golden "name:digest" manifests of tests/_serialization/testdata, line by line.
TEST(GoldenManifestTest, SerializerManifestsMatch) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "model-signing");
  int compared = 0;
  for (const char* kind : {"file", "file_shard"}) {
    fs::path dir = fixtures / "tests/_serialization/testdata" / kind / "TestSerializer";
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::string name = entry.path().filename().string();
      bool small = name.size() > 13 && name.ends_with("_small_shards");
      std::string model_name = small ? name.substr(0, name.size() - 13) : name;
      airlock::testing::TempDir tmp("manifest");
      fs::path model = BuildModel(tmp.path(), model_name);
      ASSERT_FALSE(model.empty()) << name;
      SerializationOptions o;
      o.allow_symlinks = true;
      if (std::string(kind) == "file_shard") o.method = SerializationMethod::kShards;
      if (small) o.shard_size = 8;
      auto m = HashModel(model.string(), o);
      ASSERT_TRUE(m.has_value()) << m.error().message();
      std::string got;
      for (const auto& r : m->resources) got += r.name + ":" + r.digest_hex + "\n";
      std::string want = ReadText(entry.path());
      if (!want.empty() && want.back() != '\n') want += "\n";
      EXPECT_EQ(got, want) << kind << "/" << name;
      ++compared;
    }
  }
  EXPECT_GE(compared, 20);
}

TEST(SerializationTest, ParallelAndSingleThreadedAgree) {
  airlock::testing::TempDir tmp("threads");
  fs::path m = tmp.path() / "model";
  std::string big(3 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  WriteText(m / "weights.bin", big);
  for (int i = 0; i < 20; ++i) WriteText(m / "cfg" / ("f" + std::to_string(i)), std::to_string(i));
  for (auto method : {SerializationMethod::kFiles, SerializationMethod::kShards}) {
    SerializationOptions one;
    one.method = method;
    one.shard_size = 1 << 20;
    one.threads = 1;
    SerializationOptions many = one;
    many.threads = 8;
    auto a = HashModel(m.string(), one);
    auto b = HashModel(m.string(), many);
    ASSERT_TRUE(a.has_value() && b.has_value());
    ASSERT_EQ(a->resources.size(), b->resources.size());
    for (std::size_t i = 0; i < a->resources.size(); ++i) {
      EXPECT_EQ(a->resources[i].name, b->resources[i].name);
      EXPECT_EQ(a->resources[i].digest_hex, b->resources[i].digest_hex);
    }
    EXPECT_EQ(*RootDigest(a->resources), *RootDigest(b->resources));
  }
}

TEST(SerializationTest, SortsByPathComponentsLikePurePosixPath) {
  // "a/b" < "a.b" component-wise ("a" < "a.b"), although '/' > '.' bytewise.
  std::vector<Resource> r = {{"a.b", "sha256", ""}, {"a/b", "sha256", ""}, {"a-c", "sha256", ""}};
  SortResources(r);
  EXPECT_EQ(r[0].name, "a/b");
  EXPECT_EQ(r[1].name, "a-c");
  EXPECT_EQ(r[2].name, "a.b");
  std::vector<Resource> shards = {{"f:16:20", "sha256-sharded-8", ""},
                                  {"f:8:16", "sha256-sharded-8", ""},
                                  {"f:0:8", "sha256-sharded-8", ""}};
  SortResources(shards);
  EXPECT_EQ(shards[0].name, "f:0:8");
  EXPECT_EQ(shards[1].name, "f:8:16");
  EXPECT_EQ(shards[2].name, "f:16:20");
}

TEST(SerializationTest, SymlinksRefusedUnlessAllowed) {
  airlock::testing::TempDir tmp("symlink");
  BuildModel(tmp.path(), "symlink_model_folder");
  SerializationOptions o;
  auto refused = HashModel((tmp.path() / "symlink_model").string(), o);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message().find("symbolic link"), std::string::npos);
  o.allow_symlinks = true;
  EXPECT_TRUE(HashModel((tmp.path() / "symlink_model").string(), o).has_value());
}

TEST(SerializationTest, IgnorePathsSkipFilesAndFolders) {
  airlock::testing::TempDir tmp("ignore");
  fs::path m = tmp.path() / "m";
  WriteText(m / "keep", "1");
  WriteText(m / "skip", "2");
  WriteText(m / "sub" / "x", "3");
  WriteText(m / ".git" / "HEAD", "4");
  WriteText(m / "subx", "5");
  auto ignore = ResolveIgnorePaths(m.string(), {(m / "skip").string(), "sub"}, true);
  SerializationOptions o;
  o.ignore_paths = ignore;
  auto r = HashModel(m.string(), o);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  std::vector<std::string> names;
  for (const auto& res : r->resources) names.push_back(res.name);
  EXPECT_EQ(names, (std::vector<std::string>{"keep", "subx"}));
  EXPECT_EQ(
      r->serialization.ignore_paths,
      (std::vector<std::string>{".git", ".gitattributes", ".github", ".gitignore", "skip", "sub"}));
}

TEST(SerializationTest, ModelNameIsTheFinalComponent) {
  EXPECT_EQ(ModelName("/a/b/model/"), "model");
  EXPECT_EQ(ModelName("model.gguf"), "model.gguf");
  EXPECT_FALSE(ModelName(".").empty());
  EXPECT_NE(ModelName("."), ".");
}

}  // namespace
}  // namespace airlock::sign
