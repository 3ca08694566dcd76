// Helpers for the sign tests: building the model_signing conftest models, copying fixture
// folders into writable temp folders, reading and writing files.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "sign/bundle.h"
#include "test_util.h"

namespace airlock::sign::testing {

inline void WriteText(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

inline std::string ReadText(const std::filesystem::path& p) {
  return ::airlock::testing::ReadFileText(p);
}

// Copies a (read-only) fixture folder and makes the copy writable.
inline void CopyWritable(const std::filesystem::path& from, const std::filesystem::path& to) {
  namespace fs = std::filesystem;
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  fs::permissions(to, fs::perms::owner_all, fs::perm_options::add);
  for (const auto& e : fs::recursive_directory_iterator(to))
    fs::permissions(e.path(),
                    fs::perms::owner_read | fs::perms::owner_write |
                        (e.is_directory() ? fs::perms::owner_exec : fs::perms::none),
                    fs::perm_options::add);
}

// The statement inside a bundle file, parsed.
inline Statement StatementOf(const std::filesystem::path& bundle_path) {
  auto b = ParseBundle(ReadText(bundle_path));
  if (!b.has_value()) return {};
  auto st = ParseStatement(b->payload);
  return st.has_value() ? *st : Statement{};
}

}  // namespace airlock::sign::testing
