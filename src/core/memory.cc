#include "core/memory.h"

#include <algorithm>
#include <cstdio>

namespace airlock::core {

std::uint64_t AvailableMemoryBytes() {
  std::uint64_t available = UINT64_MAX;
  if (std::FILE* f = std::fopen("/proc/meminfo", "re")) {
    char line[256];
    unsigned long long kib = 0;
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
        available = static_cast<std::uint64_t>(kib) * 1024;
        break;
      }
    }
    std::fclose(f);
  }
  auto read_number = [](const char* path) -> std::uint64_t {
    std::uint64_t value = UINT64_MAX;
    if (std::FILE* f = std::fopen(path, "re")) {
      unsigned long long v = 0;
      if (std::fscanf(f, "%llu", &v) == 1) value = v;  // "max" reads as no limit
      std::fclose(f);
    }
    return value;
  };
  const std::uint64_t limit = read_number("/sys/fs/cgroup/memory.max");
  const std::uint64_t used = read_number("/sys/fs/cgroup/memory.current");
  if (limit != UINT64_MAX && used != UINT64_MAX)
    available = std::min(available, limit > used ? limit - used : 0);
  return available;
}

}  // namespace airlock::core
