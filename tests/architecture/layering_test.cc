// The module layering of docs/ARCHITECTURE.md, checked on the sources. Every module's PUBLIC
// include folder is src/, so the compiler and the linker alone would accept a back-edge (a header
// of a later module included by an earlier one, or another module's internal/ header). This test
// reads each module's dependencies from its airlock_module(...) line in src/<module>/CMakeLists.txt
// and fails on any #include "<module>/..." in src/ that those dependencies do not allow.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "test_util.h"

namespace {

using airlock::testing::ReadFileText;

namespace fs = std::filesystem;

const fs::path kSrc = fs::path(AIRLOCK_SOURCE_DIR) / "src";

// module -> the modules its airlock_module(...) line links to.
std::map<std::string, std::set<std::string>> DirectDependencies() {
  std::map<std::string, std::set<std::string>> deps;
  const std::regex module_line(R"(airlock_module\((\w+)([^)]*)\))");
  const std::regex dep(R"(\bairlock_(\w+))");
  for (const auto& dir : fs::directory_iterator(kSrc)) {
    const fs::path cmake = dir.path() / "CMakeLists.txt";
    if (!dir.is_directory() || !fs::exists(cmake)) continue;
    const std::string text = ReadFileText(cmake);
    std::smatch m;
    if (!std::regex_search(text, m, module_line)) continue;
    auto& out = deps[m[1].str()];
    const std::string rest = m[2].str();
    for (std::sregex_iterator it(rest.begin(), rest.end(), dep), end; it != end; ++it)
      out.insert((*it)[1].str());
  }
  return deps;
}

std::set<std::string> Closure(const std::map<std::string, std::set<std::string>>& deps,
                              const std::string& module) {
  std::set<std::string> out;
  std::vector<std::string> todo = {module};
  while (!todo.empty()) {
    std::string m = todo.back();
    todo.pop_back();
    auto it = deps.find(m);
    if (it == deps.end()) continue;
    for (const std::string& d : it->second)
      if (out.insert(d).second) todo.push_back(d);
  }
  return out;
}

TEST(Layering, ModulesIncludeOnlyTheirDependencies) {
  const auto deps = DirectDependencies();
  ASSERT_GE(deps.size(), 5u) << "airlock_module lines not found under " << kSrc;
  ASSERT_TRUE(deps.contains("core") && deps.contains("scan") && deps.contains("cli"));
  EXPECT_TRUE(Closure(deps, "cli").contains("core"));  // the closure really follows edges
  const std::regex include(R"re(^\s*#\s*include\s+"([^"]+)")re", std::regex::multiline);
  int files_checked = 0;
  for (const auto& [module, direct] : deps) {
    std::set<std::string> allowed = Closure(deps, module);
    allowed.insert(module);
    for (const auto& e : fs::recursive_directory_iterator(kSrc / module)) {
      const std::string ext = e.path().extension().string();
      if (!e.is_regular_file() || (ext != ".h" && ext != ".cc" && ext != ".inc")) continue;
      ++files_checked;
      const std::string text = ReadFileText(e.path());
      for (std::sregex_iterator it(text.begin(), text.end(), include), end; it != end; ++it) {
        const std::string path = (*it)[1].str();
        const std::size_t slash = path.find('/');
        if (slash == std::string::npos) continue;
        const std::string target = path.substr(0, slash);
        if (!deps.contains(target)) continue;  // not a module (a generated or system path)
        const std::string where = fs::relative(e.path(), kSrc).string();
        EXPECT_TRUE(allowed.contains(target))
            << where << " includes \"" << path << "\": module " << module << " does not depend on "
            << target << " (a back-edge; see docs/ARCHITECTURE.md)";
        if (target != module) {
          EXPECT_EQ(path.find("/internal/"), std::string::npos)
              << where << " includes \"" << path << "\", private to module " << target;
        }
      }
    }
  }
  EXPECT_GT(files_checked, 50);
}

}  // namespace
