// How much memory this process can still take. One reader for every check that must refuse a
// large allocation up front (a sealed copy of a model file, a KV cache) instead of running the
// machine or its container into swap or the OOM killer.
#pragma once

#include <cstdint>

namespace airlock::core {

// Bytes of memory this process can still take without pushing the machine or its cgroup into
// swap or the OOM killer: /proc/meminfo's MemAvailable, lowered to the cgroup v2 limit's
// headroom (memory.max - memory.current) when there is one. Unknown (no /proc) counts as
// unlimited (UINT64_MAX): the allocation then fails, if it must, on its own.
std::uint64_t AvailableMemoryBytes();

}  // namespace airlock::core
