// formats/zip reader and the zip analyzer: one crafted archive per anomaly class, PyTorch /
// TorchScript / npz layouts, zip bombs and deep nesting.
#include "formats/zip.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "container_builders.h"
#include "core/file.h"
#include "status_matchers.h"

using ::airlock::testing::IsOk;
using ::testing::Not;

namespace airlock {
namespace {

using formats::zip::AnomalyKind;
using scan::Severity;
using scan::Verdict;
using testing::CountMember;
using testing::Describe;
using testing::HasRule;
using testing::kMarker;
using testing::Scan;
using testing::WriteZip;
using testing::ZipMember;
using testing::ZipOptions;

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

bool HasAnomaly(const formats::zip::Archive& a, AnomalyKind kind) {
  return std::any_of(a.anomalies.begin(), a.anomalies.end(),
                     [&](const auto& an) { return an.kind == kind; });
}

TEST(ZipReaderTest, ReadsStoredAndDeflatedMembersWithoutAnomalies) {
  std::string big(100000, 'x');
  std::string z = WriteZip({{.name = "a/stored.txt", .data = "hello"},
                            {.name = "a/deflated.txt", .data = big, .deflate = true}});
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(a->anomalies.empty()) << a->anomalies.front().detail;
  ASSERT_EQ(a->entries.size(), 2u);
  auto stored = formats::zip::Extract(Bytes(z), a->entries[0], {});
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(core::AsStringView(stored->data), "hello");
  // Stored members are views into the input, not copies.
  EXPECT_GE(reinterpret_cast<const char*>(stored->data.data()), z.data());
  EXPECT_LT(reinterpret_cast<const char*>(stored->data.data()), z.data() + z.size());
  EXPECT_TRUE(stored->owned.empty());
  auto deflated = formats::zip::Extract(Bytes(z), a->entries[1], {});
  ASSERT_THAT(deflated, IsOk());
  EXPECT_EQ(core::AsStringView(deflated->data), big);
  EXPECT_TRUE(deflated->crc_ok);
  EXPECT_TRUE(deflated->size_ok);
}

TEST(ZipReaderTest, NoEndRecordIsAnError) {
  EXPECT_THAT(formats::zip::Parse(Bytes("PK\x03\x04 not really a zip")), Not(IsOk()));
  EXPECT_THAT(formats::zip::Parse(Bytes("")), Not(IsOk()));
}

TEST(ZipReaderTest, Zip64RecordsAndExtraFields) {
  std::string z = WriteZip({{.name = "m/a.txt", .data = "zip64 member"}}, {.zip64 = true});
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(a->zip64);
  EXPECT_TRUE(a->anomalies.empty()) << a->anomalies.front().detail;
  ASSERT_EQ(a->entries.size(), 1u);
  EXPECT_EQ(a->entries[0].uncompressed_size, 12u);
  auto m = formats::zip::Extract(Bytes(z), a->entries[0], {});
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(core::AsStringView(m->data), "zip64 member");
}

TEST(ZipReaderTest, DataDescriptorsLikePyTorchWritesAreNotAnomalies) {
  std::string z =
      WriteZip({{.name = "archive/version", .data = "3\n", .data_descriptor = true},
                {.name = "archive/byteorder", .data = "little", .data_descriptor = true}});
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(a->anomalies.empty()) << a->anomalies.front().detail;
}

TEST(ZipReaderTest, DataDescriptorWithPartialLocalValuesIsNotAMismatch) {
  // Some writers put the CRC in the local header and leave the sizes zero.
  std::string z = WriteZip({{.name = "a.txt", .data = "text\n", .data_descriptor = true}});
  std::uint32_t crc = testing::Crc("text\n");
  for (int i = 0; i < 4; ++i) z[14 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(a->anomalies.empty()) << a->anomalies.front().detail;
  // A present but wrong value still is one.
  z[14] = static_cast<char>(z[14] ^ 0x55);
  auto b = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(b, IsOk());
  EXPECT_TRUE(HasAnomaly(*b, AnomalyKind::kHeaderMismatch));
}

TEST(ZipReaderTest, TraversalNames) {
  EXPECT_TRUE(formats::zip::IsTraversalName("../etc/passwd"));
  EXPECT_TRUE(formats::zip::IsTraversalName("a/../../b"));
  EXPECT_TRUE(formats::zip::IsTraversalName("/etc/passwd"));
  EXPECT_TRUE(formats::zip::IsTraversalName("C:\\x"));
  EXPECT_TRUE(formats::zip::IsTraversalName("a\\..\\..\\b"));
  EXPECT_FALSE(formats::zip::IsTraversalName("archive/data.pkl"));
  EXPECT_FALSE(formats::zip::IsTraversalName("a/..b/c.."));
}

TEST(ZipAnalyzerTest, CleanZipIsClean) {
  auto r = Scan(WriteZip({{.name = "README.txt", .data = "just text\n"},
                          {.name = "notes.txt", .data = "more text\n", .deflate = true}}),
                "plain.zip");
  EXPECT_EQ(r.verdict, Verdict::kClean) << Describe(r);
  EXPECT_EQ(r.format, "zip");
}

TEST(ZipAnalyzerTest, MembersAreDetectedByContentNotName) {
  auto r = Scan(WriteZip({{.name = "data.txt", .data = kMarker}}), "x.zip");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Describe(r);
  EXPECT_EQ(CountMember(r, "data.txt"), 1);
}

TEST(ZipAnalyzerTest, DuplicateNamesAreHighAndBothCopiesScanned) {
  std::string z = WriteZip({{.name = "archive/data.pkl", .data = "benign text\n"},
                            {.name = "archive/data.pkl", .data = kMarker}});
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(HasAnomaly(*a, AnomalyKind::kDuplicateName));
  auto r = Scan(z, "dup.pt");
  const auto* f = testing::FindRule(r, "zip.duplicate-name");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->severity, Severity::kHigh);
  EXPECT_TRUE(HasRule(r, "code.executable")) << "the second copy was not scanned: " << Describe(r);
}

TEST(ZipAnalyzerTest, LocalCentralNameMismatch) {
  auto r =
      Scan(WriteZip({{.name = "data.pkl", .data = "text\n", .local_name = "datap.kl"}}), "m.zip");
  const auto* f = testing::FindRule(r, "zip.name-mismatch");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->severity, Severity::kHigh);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ZipAnalyzerTest, LocalCentralHeaderMismatch) {
  auto r = Scan(WriteZip({{.name = "a.txt", .data = "text\n", .local_crc = 0x12345678}}), "m.zip");
  EXPECT_TRUE(HasRule(r, "zip.header-mismatch")) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ZipAnalyzerTest, MethodMismatchBetweenHeaders) {
  // Central directory says stored, local header says deflate.
  std::string z = WriteZip({{.name = "a.txt", .data = "text\n"}});
  std::size_t local_method = 8;  // offset of the method field in the first local header
  z[local_method] = 8;
  auto r = Scan(z, "m.zip");
  EXPECT_TRUE(HasRule(r, "zip.header-mismatch")) << Describe(r);
}

TEST(ZipAnalyzerTest, EncryptionFlagOnPlaintextIsATrick) {
  auto r = Scan(WriteZip({{.name = "model/config.pkl", .data = kMarker, .flags = 0x1}}), "f.zip");
  const auto* f = testing::FindRule(r, "zip.flag-bits");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->severity, Severity::kHigh);
  EXPECT_TRUE(HasRule(r, "code.executable")) << "plaintext member was not scanned";
}

TEST(ZipAnalyzerTest, ReallyEncryptedMemberIsInconclusive) {
  // Ciphertext: 12-byte encryption header plus scrambled data; the CRC is the plaintext's.
  std::string cipher = "\x13\x57\x9b\xdf\x24\x68\xac\xe0\x11\x22\x33\x44garbled-bytes";
  auto r = Scan(
      WriteZip({{.name = "secret.txt", .data = "plaintext", .flags = 0x1, .stored_bytes = cipher}}),
      "enc.zip");
  const auto* f = testing::FindRule(r, "zip.encrypted");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_TRUE(f->incomplete);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Describe(r);
  EXPECT_EQ(CountMember(r, "secret.txt"), 0) << "ciphertext must not be scanned as content";
}

TEST(ZipAnalyzerTest, PatchedDataFlag) {
  auto r = Scan(WriteZip({{.name = "a.txt", .data = "text\n", .flags = 0x20}}), "f.zip");
  EXPECT_TRUE(HasRule(r, "zip.flag-bits")) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ZipAnalyzerTest, UnusualFlagBitsAreLowOnly) {
  auto r = Scan(WriteZip({{.name = "a.txt", .data = "text\n", .flags = 0x4000}}), "f.zip");
  const auto* f = testing::FindRule(r, "zip.unusual-flags");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->severity, Severity::kLow);
  EXPECT_EQ(r.verdict, Verdict::kClean) << Describe(r);
}

TEST(ZipAnalyzerTest, BadCrcIsReportedAndContentStillScanned) {
  auto r = Scan(WriteZip({{.name = "data.pkl", .data = kMarker, .crc = 0xdeadbeef}}), "crc.zip");
  EXPECT_TRUE(HasRule(r, "zip.bad-crc")) << Describe(r);
  EXPECT_TRUE(HasRule(r, "code.executable")) << Describe(r);
}

TEST(ZipAnalyzerTest, OverlappingEntries) {
  // Two central entries pointing at the same local header.
  std::string z = WriteZip({{.name = "a.txt", .data = "text\n"},
                            {.name = "a.txt", .data = "text\n", .local_offset = 0}});
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(HasAnomaly(*a, AnomalyKind::kOverlap));
  auto r = Scan(z, "o.zip");
  EXPECT_TRUE(HasRule(r, "zip.overlap")) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ZipAnalyzerTest, UnclaimedBytesBetweenMembers) {
  std::string z = WriteZip({{.name = "a.txt", .data = "text\n"}});
  // Move the central directory 16 bytes later without updating nothing else but its offset.
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  std::size_t cd = a->central_directory_offset;
  z.insert(cd, std::string(16, '\0'));
  std::size_t eocd = z.size() - 22;
  std::uint32_t new_cd = static_cast<std::uint32_t>(cd + 16);
  for (int i = 0; i < 4; ++i) z[eocd + 16 + i] = static_cast<char>((new_cd >> (8 * i)) & 0xff);
  auto r = Scan(z, "gap.zip");
  EXPECT_TRUE(HasRule(r, "zip.unaccounted-data")) << Describe(r);
  EXPECT_NE(r.verdict, Verdict::kClean);
}

TEST(ZipAnalyzerTest, LocalRecordsMissingFromTheCentralDirectoryAreScanned) {
  std::string listed = WriteZip({{.name = "a.txt", .data = "text\n"}});
  std::string unlisted = WriteZip({{.name = "hidden.txt", .data = kMarker}});
  auto la = formats::zip::Parse(Bytes(listed));
  auto lb = formats::zip::Parse(Bytes(unlisted));
  ASSERT_TRUE(la.has_value() && lb.has_value());
  std::size_t cd = la->central_directory_offset;
  std::string hidden_record = unlisted.substr(0, lb->central_directory_offset);
  std::string z = listed.substr(0, cd) + hidden_record + listed.substr(cd);
  std::uint32_t new_cd = static_cast<std::uint32_t>(cd + hidden_record.size());
  std::size_t eocd = z.size() - 22;
  for (int i = 0; i < 4; ++i) z[eocd + 16 + i] = static_cast<char>((new_cd >> (8 * i)) & 0xff);
  auto r = Scan(z, "hidden.zip");
  EXPECT_TRUE(HasRule(r, "zip.hidden-entry")) << Describe(r);
  EXPECT_EQ(CountMember(r, "hidden.txt"), 1) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ZipAnalyzerTest, TrailingDataAfterTheArchive) {
  auto r =
      Scan(WriteZip({{.name = "a.txt", .data = "text\n"}}, {.trailing = "EXTRA BYTES"}), "t.zip");
  EXPECT_TRUE(HasRule(r, "zip.trailing-data")) << Describe(r);
  EXPECT_NE(r.verdict, Verdict::kClean);
}

TEST(ZipAnalyzerTest, PrependedDataWithRelativeOffsets) {
  // `cat stub archive.zip`: offsets inside the zip are relative to its own start.
  std::string inner = WriteZip({{.name = "a.txt", .data = "text\n"}});
  std::string z = "PK\x03\x04" + std::string(60, 'J') + inner;
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(HasAnomaly(*a, AnomalyKind::kOffsetShift));
  ASSERT_EQ(a->entries.size(), 1u);
  EXPECT_TRUE(a->entries[0].readable);
  auto r = Scan(z, "shift.zip");
  EXPECT_TRUE(HasRule(r, "zip.offset-shift")) << Describe(r);
}

TEST(ZipAnalyzerTest, PathTraversalIsHigh) {
  auto r = Scan(WriteZip({{.name = "../../../etc/evil.txt", .data = "x\n"}}), "slip.zip");
  const auto* f = testing::FindRule(r, "zip.path-traversal");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ZipAnalyzerTest, SymlinkEntry) {
  auto r = Scan(WriteZip({{.name = "link",
                           .data = "/etc/passwd",
                           .version_made_by = 0x0314,
                           .external_attributes = 0xa1ffu << 16}}),
                "l.zip");
  EXPECT_TRUE(HasRule(r, "zip.symlink")) << Describe(r);
}

TEST(ZipAnalyzerTest, UnsupportedMethodIsInconclusive) {
  auto r = Scan(WriteZip({{.name = "a.bin", .data = "whatever", .method = 12}}), "bz.zip");
  const auto* f = testing::FindRule(r, "zip.unsupported-method");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_TRUE(f->incomplete);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
}

TEST(ZipAnalyzerTest, EntryCountMismatchHidesMembers) {
  auto r = Scan(WriteZip({{.name = "a.txt", .data = "a\n"}, {.name = "b.txt", .data = kMarker}},
                         {.count = 1}),
                "count.zip");
  EXPECT_TRUE(HasRule(r, "zip.entry-count-mismatch")) << Describe(r);
  EXPECT_EQ(CountMember(r, "b.txt"), 1) << "the member beyond the declared count was not scanned";
}

TEST(ZipAnalyzerTest, TruncatedArchiveIsInconclusive) {
  std::string z = WriteZip({{.name = "a.txt", .data = std::string(1000, 'a')}});
  z = z.substr(0, 200) + z.substr(z.size() - 100);  // cut the member's data short
  auto r = Scan(z, "cut.zip");
  EXPECT_EQ(r.verdict == Verdict::kClean, false) << Describe(r);
}

TEST(ZipAnalyzerTest, ZipBombByDeclaredRatioIsInconclusive) {
  std::string zeros(50u << 20, '\0');
  auto r = Scan(WriteZip({{.name = "bomb.bin", .data = zeros, .deflate = true}}), "bomb.zip");
  const auto* f = testing::FindRule(r, "archive.limit");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_TRUE(f->incomplete);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
}

TEST(ZipAnalyzerTest, LyingSizeNeverInflatesMoreThanDeclared) {
  // Declares 64 bytes, inflates to 10 MB: only the declared bytes are produced.
  std::string zeros(10u << 20, '\0');
  std::string z =
      WriteZip({{.name = "x.bin", .data = zeros, .deflate = true, .declared_size = 64}});
  auto a = formats::zip::Parse(Bytes(z));
  ASSERT_THAT(a, IsOk());
  formats::zip::ExtractOptions opt;
  opt.verify_crc = false;
  auto m = formats::zip::Extract(Bytes(z), a->entries[0], opt);
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->data.size(), 64u);
  EXPECT_FALSE(m->size_ok);
}

TEST(ZipAnalyzerTest, DecompressionBudgetIsEnforced) {
  scan::ScanOptions options;
  options.limits.max_decompressed_bytes = 1000;
  std::string text(5000, 'y');
  auto r = Scan(WriteZip({{.name = "a.txt", .data = text, .deflate = true},
                          {.name = "b.txt", .data = text, .deflate = true}}),
                "budget.zip", options);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Describe(r);
  EXPECT_TRUE(HasRule(r, "scan.limit.decompressed")) << Describe(r);
}

TEST(ZipAnalyzerTest, OverlappingEntryBombHitsTheArchiveCap) {
  // 300 central entries share one deflated record of 1,000,000 zeros: each member alone is
  // under the per-member caps, together they would inflate 300 MB from a few KB.
  std::string zeros(1000000, '\0');
  std::vector<ZipMember> members = {{.name = "a0", .data = zeros, .deflate = true}};
  for (int i = 1; i < 300; ++i) {
    members.push_back({.name = "a" + std::to_string(i),
                       .data = zeros,
                       .deflate = true,
                       .local_offset = 0,
                       .omit_local = true});
  }
  auto r = Scan(WriteZip(members), "overlap-bomb.zip");
  EXPECT_TRUE(HasRule(r, "zip.overlap")) << Describe(r);
  EXPECT_TRUE(HasRule(r, "archive.limit")) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

TEST(ZipAnalyzerTest, DeepNestingIsInconclusive) {
  std::string z = WriteZip({{.name = "core.txt", .data = "text\n"}});
  for (int i = 0; i < 12; ++i)
    z = WriteZip({{.name = "level" + std::to_string(i) + ".zip", .data = z}});
  auto r = Scan(z, "deep.zip");
  EXPECT_TRUE(HasRule(r, "scan.limit.depth")) << Describe(r);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
}

TEST(ZipAnalyzerTest, NestedArchiveMembersAreScanned) {
  std::string inner = WriteZip({{.name = "payload.txt", .data = kMarker}});
  auto r = Scan(WriteZip({{.name = "inner.zip", .data = inner, .deflate = true}}), "outer.zip");
  EXPECT_EQ(CountMember(r, "inner.zip!/payload.txt"), 1) << Describe(r);
}

TEST(ZipAnalyzerTest, PyTorchCheckpointLayout) {
  std::string storage = "\x01\x02\x03\x04\xff\xfe\x00\x00" + kMarker;  // raw tensor bytes
  auto r = Scan(WriteZip({{.name = "archive/data.pkl", .data = kMarker, .data_descriptor = true},
                          {.name = "archive/byteorder", .data = "little", .data_descriptor = true},
                          {.name = "archive/data/0", .data = storage, .data_descriptor = true},
                          {.name = "archive/version", .data = "3\n", .data_descriptor = true},
                          {.name = "archive/.data/serialization_id", .data = "1234567890\n"}}),
                "model.pt");
  EXPECT_EQ(r.format, "pytorch-zip");
  // data.pkl is scanned as what it looks like (a script) and as the pickle torch.load reads.
  EXPECT_TRUE(HasRule(r, "code.executable")) << "data.pkl not scanned: " << Describe(r);
  EXPECT_EQ(CountMember(r, "archive/data.pkl"), 2) << Describe(r);
  // Storages are raw bytes torch never interprets: not scanned, no unknown-format noise.
  EXPECT_EQ(CountMember(r, "archive/data/0"), 0) << Describe(r);
  EXPECT_EQ(CountMember(r, "archive/version"), 0) << Describe(r);
}

TEST(ZipAnalyzerTest, TorchScriptCodeIsFlagged) {
  auto r =
      Scan(WriteZip({{.name = "m/data.pkl", .data = "text\n"},
                     {.name = "m/constants.pkl", .data = "text\n"},
                     {.name = "m/code/__torch__/model.py", .data = "def forward(self):\n  pass\n"},
                     {.name = "m/constants/0", .data = std::string("\x00\x01\x02", 3)}}),
           "script.pt");
  EXPECT_EQ(r.format, "torchscript");
  const auto* f = testing::FindRule(r, "torchscript.code");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->severity, Severity::kMedium);
  EXPECT_EQ(CountMember(r, "m/constants/0"), 0) << Describe(r);
}

TEST(ZipAnalyzerTest, FilesWithoutAFolderAreNotTreatedAsPyTorch) {
  // torch.load refuses such archives, so nothing is skipped as a storage.
  auto r =
      Scan(WriteZip({{.name = "data.pkl", .data = "text\n"}, {.name = "data/0", .data = kMarker}}),
           "flat.zip");
  EXPECT_EQ(r.format, "zip");
  EXPECT_EQ(CountMember(r, "data/0"), 1) << Describe(r);
}

}  // namespace
}  // namespace airlock
