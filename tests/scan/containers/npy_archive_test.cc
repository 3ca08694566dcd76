// formats/npy header parsing, the npy analyzer (plain and object arrays, npz), and the libarchive
// analyzer (tar, tar.gz, bare gz, 7z, bombs, links, legacy PyTorch tar).
#include <gtest/gtest.h>

#include "container_builders.h"
#include "formats/npy.h"
#include "status_matchers.h"

using ::airlock::testing::IsOk;
using ::testing::Not;

namespace airlock {
namespace {

using scan::Verdict;
using testing::ArchiveMember;
using testing::CountMember;
using testing::Describe;
using testing::HasRule;
using testing::kMarker;
using testing::Scan;
using testing::WriteArchive;
using testing::WriteNpy;
using testing::WriteZip;

Result<formats::npy::Header> ParseNpy(const std::string& s) {
  return formats::npy::ParseHeader({reinterpret_cast<const std::byte*>(s.data()), s.size()});
}

TEST(NpyHeaderTest, PlainArrayVersions) {
  for (int major : {1, 2, 3}) {
    auto h = ParseNpy(WriteNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
                               std::string(48, '\0'), major));
    ASSERT_THAT(h, IsOk()) << major;
    EXPECT_EQ(h->major, major);
    EXPECT_EQ(h->descr, "<f4");
    EXPECT_EQ(h->shape, (std::vector<std::uint64_t>{3, 4}));
    EXPECT_FALSE(h->has_object);
    EXPECT_EQ(h->item_size, 4u);
    ASSERT_TRUE(h->data_bytes.has_value());
    EXPECT_EQ(*h->data_bytes, 48u);
    EXPECT_EQ(h->data_offset % 64, 0u);
  }
}

TEST(NpyHeaderTest, ScalarsOneTuplesAndPython2Longs) {
  auto scalar =
      ParseNpy(WriteNpy("{'descr': '<i8', 'fortran_order': False, 'shape': ()}", "12345678"));
  ASSERT_THAT(scalar, IsOk());
  EXPECT_EQ(*scalar->data_bytes, 8u);
  auto one =
      ParseNpy(WriteNpy("{\"descr\": \"|u1\", \"fortran_order\": True, \"shape\": (5,)}", "abcde"));
  ASSERT_THAT(one, IsOk());
  EXPECT_TRUE(one->fortran_order);
  EXPECT_EQ(one->shape, (std::vector<std::uint64_t>{5}));
  auto longs =
      ParseNpy(WriteNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }", ""));
  ASSERT_THAT(longs, IsOk());
  EXPECT_EQ(*longs->data_bytes, 48u);
}

TEST(NpyHeaderTest, StructuredAndObjectDtypes) {
  auto rec =
      ParseNpy(WriteNpy("{'descr': [('a', '<i4'), ('b', '<f8', (2,)), ('', '|V4')], "
                        "'fortran_order': False, 'shape': (2,), }",
                        ""));
  ASSERT_THAT(rec, IsOk());
  EXPECT_EQ(rec->item_size, 4u + 16u + 4u);
  EXPECT_FALSE(rec->has_object);
  auto obj =
      ParseNpy(WriteNpy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", "\x80\x03."));
  ASSERT_THAT(obj, IsOk());
  EXPECT_TRUE(obj->has_object);
  EXPECT_FALSE(obj->data_bytes.has_value());
  auto nested = ParseNpy(
      WriteNpy("{'descr': [('x', [('y', '|O')])], 'fortran_order': False, 'shape': (1,), }", ""));
  ASSERT_THAT(nested, IsOk());
  EXPECT_TRUE(nested->has_object);
  auto dt = ParseNpy(
      WriteNpy("{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (1,), }", "12345678"));
  ASSERT_THAT(dt, IsOk());
  EXPECT_EQ(dt->item_size, 8u);
}

TEST(NpyHeaderTest, RejectsAnythingButTheLiteralDict) {
  for (const char* bad : {
           "__import__('os').system('x')",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
           "{'descr': '<f4', 'fortran_order': False}",
           "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} junk",
           "{'descr': 'float32x', 'fortran_order': False, 'shape': (3,)}",
           "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, "
           "99999999999)}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': [3]}",
           "{'descr': '<f4', 'fortran_order': False, 'shape': "
           "((((((((((((((((((1,),),),),),),),),),),),),),),),),),),)}",
       }) {
    EXPECT_FALSE(ParseNpy(WriteNpy(bad, "")).has_value()) << bad;
  }
  EXPECT_THAT(ParseNpy("\x93NUMPY"), Not(IsOk()));
  EXPECT_THAT(ParseNpy(std::string("\x93NUMPY\x01\x00\xff\x00{", 11)), Not(IsOk()));  // truncated
  EXPECT_FALSE(
      ParseNpy(std::string("\x93NUMPY\x09\x00\x10\x00", 10) + std::string(16, ' ')).has_value());
}

TEST(NpyAnalyzerTest, PlainArrayIsCleanAndSizesAreChecked) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
  auto ok = Scan(WriteNpy(dict, std::string(16, '\1')), "a.npy");
  EXPECT_EQ(ok.verdict, Verdict::kClean) << Describe(ok);
  EXPECT_EQ(ok.format, "npy");
  auto shortr = Scan(WriteNpy(dict, std::string(10, '\1')), "a.npy");
  EXPECT_TRUE(HasRule(shortr, "npy.truncated")) << Describe(shortr);
  EXPECT_EQ(shortr.verdict, Verdict::kInconclusive);
  auto longr = Scan(WriteNpy(dict, std::string(20, '\1')), "a.npy");
  EXPECT_TRUE(HasRule(longr, "npy.trailing-data")) << Describe(longr);
  auto bad = Scan(WriteNpy("{'descr': '<f4', 'shape': (2,)}", ""), "a.npy");
  EXPECT_TRUE(HasRule(bad, "npy.bad-header")) << Describe(bad);
  EXPECT_EQ(bad.verdict, Verdict::kInconclusive);
}

TEST(NpyAnalyzerTest, ObjectArrayPayloadGoesToThePickleAnalyzer) {
  // Whatever the payload looks like, it is analyzed as a pickle (numpy calls pickle.load).
  std::string payload = "\x80\x03]q\x00(K\x01K\x02e.";
  auto r =
      Scan(WriteNpy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", payload), "o.npy");
  EXPECT_TRUE(HasRule(r, "npy.object-array")) << Describe(r);
  // The pickle analyzer reports under this member (placeholder or real engine alike may add
  // findings; the member chain is what shows the payload was handed over).
  for (const auto& f : r.findings) {
    if (f.rule_id != "npy.object-array") {
      EXPECT_EQ(f.member, "[object array pickle]") << f.rule_id;
    }
  }
}

// Issue #12 class 2: dtype.hasobject as numpy computes it, for npy and npz too: an object
// sub-array inside a structured field, or an object field nested in a sub-structure, makes the
// payload a pickle that np.load(allow_pickle=True) runs (here a protocol 0 os.system: no header).
TEST(NpyAnalyzerTest, GadgetClass2StructuredObjectFieldsMakeThePayloadAPickle) {
  const std::string payload = "cos\nsystem\n(S'id'\ntR.";
  for (const char* descr :
       {"[('a', '<i4'), ('b', '|O', (2,))]", "[('x', [('y', '<f8'), ('z', 'O')])]",
        "[('s', [('t', '|O', (1, 2))], (3,))]"}) {
    std::string header =
        std::string("{'descr': ") + descr + ", 'fortran_order': False, 'shape': (1,), }";
    auto npy = Scan(WriteNpy(header, payload), "a.npy");
    EXPECT_EQ(npy.verdict, Verdict::kMalicious) << descr << Describe(npy);
    auto npz = Scan(WriteZip({{.name = "a.npy", .data = WriteNpy(header, payload)}}), "a.npz");
    EXPECT_EQ(npz.verdict, Verdict::kMalicious) << descr << Describe(npz);
  }
  // The same layout without objects is raw data.
  auto plain = Scan(WriteNpy("{'descr': [('a', '<i4'), ('b', '<f8', (2,))], 'fortran_order': "
                             "False, 'shape': (1,), }",
                             std::string(20, '\x01')),
                    "p.npy");
  EXPECT_EQ(plain.verdict, Verdict::kClean) << Describe(plain);
}

TEST(NpzTest, PlainArraysCleanStoredAndCompressed) {
  std::string a =
      WriteNpy("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", std::string(24, '\2'));
  for (bool deflate : {false, true}) {
    auto r = Scan(WriteZip({{.name = "a.npy", .data = a, .deflate = deflate},
                            {.name = "b.npy", .data = a, .deflate = deflate}}),
                  "arrays.npz");
    EXPECT_EQ(r.verdict, Verdict::kClean) << Describe(r);
    EXPECT_EQ(r.format, "npz");
  }
}

TEST(NpzTest, ObjectArraysInsideNpzReachThePickleAnalyzer) {
  std::string o =
      WriteNpy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "\x80\x03K\x01.");
  auto r = Scan(WriteZip({{.name = "x.npy", .data = o}}), "obj.npz");
  EXPECT_TRUE(HasRule(r, "npy.object-array")) << Describe(r);
  const auto* f = testing::FindRule(r, "npy.object-array");
  EXPECT_EQ(f->member, "x.npy");
}

TEST(ArchiveTest, TarMembersAreScanned) {
  std::string tar = WriteArchive({{"model/readme.txt", "hello\n"}, {"model/run.txt", kMarker}},
                                 ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE);
  auto r = Scan(tar, "m.tar");
  EXPECT_EQ(r.format, "tar");
  EXPECT_EQ(CountMember(r, "model/run.txt"), 1) << Describe(r);
  EXPECT_EQ(CountMember(r, "model/readme.txt"), 0) << Describe(r);
  auto clean = Scan(
      WriteArchive({{"a.txt", "text\n"}}, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE),
      "c.tar");
  EXPECT_EQ(clean.verdict, Verdict::kClean) << Describe(clean);
}

TEST(ArchiveTest, CompressedTarsAndBareStreams) {
  for (int filter : {ARCHIVE_FILTER_GZIP, ARCHIVE_FILTER_XZ, ARCHIVE_FILTER_BZIP2}) {
    std::string tgz =
        WriteArchive({{"x/payload.txt", kMarker}}, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, filter);
    auto r = Scan(tgz, "m.tar.gz");
    EXPECT_EQ(CountMember(r, "x/payload.txt"), 1) << filter << ": " << Describe(r);
    std::string bare = WriteArchive({{"ignored", kMarker}}, 0, filter, /*raw=*/true);
    auto b = Scan(bare, "script.sh.gz");
    EXPECT_EQ(CountMember(b, "script.sh"), 1) << filter << ": " << Describe(b);
  }
}

TEST(ArchiveTest, SevenZip) {
  std::string z7 = WriteArchive({{"data.pkl", kMarker}, {"notes.txt", "text\n"}},
                                ARCHIVE_FORMAT_7ZIP, ARCHIVE_FILTER_NONE);
  auto r = Scan(z7, "m.7z");
  EXPECT_EQ(r.format, "7z");
  EXPECT_EQ(CountMember(r, "data.pkl"), 1) << Describe(r);
}

TEST(ArchiveTest, TraversalAndLinks) {
  auto r = Scan(WriteArchive({{"../../etc/cron.d/x", "text\n"}, {"ok/link", "", "/etc/passwd"}},
                             ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE),
                "slip.tar");
  EXPECT_TRUE(HasRule(r, "archive.path-traversal")) << Describe(r);
  EXPECT_TRUE(HasRule(r, "archive.link")) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ArchiveTest, DecompressionBombIsInconclusive) {
  std::string zeros(64u << 20, '\0');
  std::string bomb =
      WriteArchive({{"zeros.bin", zeros}}, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_GZIP);
  ASSERT_LT(bomb.size(), 1u << 20);
  auto r = Scan(bomb, "bomb.tar.gz");
  EXPECT_TRUE(HasRule(r, "archive.limit")) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
}

TEST(ArchiveTest, MemberCountCap) {
  scan::ScanOptions options;
  options.limits.max_members = 5;
  std::vector<ArchiveMember> many;
  for (int i = 0; i < 20; ++i) many.push_back({"f" + std::to_string(i) + ".txt", "t\n"});
  auto r = Scan(WriteArchive(many, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE),
                "many.tar", options);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Describe(r);
}

TEST(ArchiveTest, CorruptCompressedStreamIsInconclusive) {
  std::string tgz = WriteArchive({{"a.txt", std::string(5000, 'a')}},
                                 ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_GZIP);
  tgz = tgz.substr(0, tgz.size() / 2);
  auto r = Scan(tgz, "cut.tar.gz");
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Describe(r);
}

TEST(ArchiveTest, ZipInsideTarGz) {
  std::string z = WriteZip({{.name = "inner.txt", .data = kMarker}});
  auto r = Scan(
      WriteArchive({{"pack/m.zip", z}}, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_GZIP),
      "nested.tgz");
  EXPECT_EQ(CountMember(r, "pack/m.zip!/inner.txt"), 1) << Describe(r);
}

TEST(ArchiveTest, LegacyPyTorchTarRecordsAreWalked) {
  // torch.load's legacy tar: 'storages' = pickle(count), per storage pickle((key, location,
  // type)) + int64 count + raw elements, then pickle(views); 'tensors' = pickle(count), per
  // tensor pickle((key, storage_id, type)) + int32 ndim + pad + sizes + strides + offset.
  auto u64 = [](std::uint64_t v) {
    std::string s;
    testing::PutU64(s, v);
    return s;
  };
  std::string count1 = std::string("\x80\x02K\x01.", 5);
  std::string record = std::string("\x80\x02X\x01\x00\x00\x00", 8) + "0" +
                       std::string("X\x03\x00\x00\x00", 5) + "cpu" + "ctorch\nFloatStorage\n" +
                       std::string("\x87q\x00.", 4);
  // The records after raw storage bytes are where a payload would hide from a scanner that
  // stops at the first pickle.
  std::string hidden =
      "\x80\x02"
      "cposix\nsystem\n" +
      std::string("X\x02\x00\x00\x00", 5) + "id" + "\x85R.";
  std::string storages = count1 + record + u64(2) + std::string(8, '\x01') + hidden;
  std::string tensors = count1 + record + std::string("\x01\x00\x00\x00\x00\x00\x00\x00", 8) +
                        u64(2) + u64(1) + u64(0);
  auto r = Scan(
      WriteArchive(
          {{"sys_info", count1}, {"pickle", count1}, {"storages", storages}, {"tensors", tensors}},
          ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE),
      "legacy.pt");
  EXPECT_EQ(r.format, "pytorch-legacy-tar") << Describe(r);
  std::uint64_t hidden_at = count1.size() + record.size() + 16;
  EXPECT_GE(CountMember(r, "storages!/[pickle @" + std::to_string(hidden_at) + "]"), 1)
      << "the views pickle after the raw storage bytes was not analyzed: " << Describe(r);
  EXPECT_FALSE(HasRule(r, "torch.legacy-tar")) << Describe(r);
  EXPECT_NE(r.verdict, Verdict::kClean);

  // A layout that cannot be followed is reported and the member still scanned as a whole.
  std::string broken = count1 + record + u64(1ull << 60);
  auto b = Scan(WriteArchive({{"pickle", count1}, {"storages", broken}},
                             ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE),
                "legacy.pt");
  EXPECT_TRUE(HasRule(b, "torch.legacy-tar")) << Describe(b);
  EXPECT_EQ(b.verdict, Verdict::kInconclusive) << Describe(b);
}

}  // namespace
}  // namespace airlock
