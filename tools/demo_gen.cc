// Writes the demo sample set that `make demo` scans: for each format, benign files and files
// carrying a known attack. Everything is built from bytes here; nothing is downloaded.
//   usage: airlock-demo-gen OUT_DIR
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/file.h"

namespace {

namespace fs = std::filesystem;

bool Write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  auto s = airlock::core::WriteFileAtomic(path.string(), bytes);
  if (!s.ok()) std::fprintf(stderr, "demo-gen: %s\n", s.message().c_str());
  return s.ok();
}

// Protocol-2 pickle of collections.OrderedDict() with one int item: what a state_dict looks like.
std::string BenignPickle() {
  std::string p = "\x80\x02";
  p += "ccollections\nOrderedDict\nq\x00)Rq\x01";
  p += "X\x06\x00\x00\x00weightq\x02K\x07s.";
  return p;
}

// Protocol-2 pickle that calls os.system("echo pwned") when loaded.
std::string MaliciousPickle() {
  std::string p = "\x80\x02";
  p += "cposix\nsystem\nq\x00X\x0b\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: airlock-demo-gen OUT_DIR\n");
    return 2;
  }
  fs::path out = argv[1];
  bool ok = true;
  ok &= Write(out / "benign" / "state_dict.pkl", BenignPickle());
  ok &= Write(out / "malicious" / "os_system.pkl", MaliciousPickle());
  return ok ? 0 : 1;
}
