#include "sign/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "core/hash.h"
#include "core/progress.h"
#include "sign/internal/encoding.h"

namespace airlock::sign {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kChunkSize = 1 << 20;  // model_signing reads 1 MiB at a time too
constexpr int kMaxDepth = 256;

struct ResourceKey {
  std::vector<std::string> parts;
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::string path;  // the file part of the name
};

bool IsShardAlgorithm(const std::string& algorithm) {
  return algorithm.find("-sharded-") != std::string::npos;
}

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    if (slash > pos) parts.push_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return parts;
}

bool ParseUint(const std::string& s, std::uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    std::uint64_t next = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (next / 10 != v) return false;
    v = next;
  }
  *out = v;
  return true;
}

ResourceKey KeyOf(const Resource& r) {
  ResourceKey key;
  key.path = r.name;
  if (IsShardAlgorithm(r.algorithm)) {
    std::size_t c2 = r.name.rfind(':');
    std::size_t c1 =
        c2 == std::string::npos || c2 == 0 ? std::string::npos : r.name.rfind(':', c2 - 1);
    if (c1 != std::string::npos && ParseUint(r.name.substr(c1 + 1, c2 - c1 - 1), &key.start) &&
        ParseUint(r.name.substr(c2 + 1), &key.end)) {
      key.path = r.name.substr(0, c1);
    }
  }
  key.parts = SplitPath(key.path);
  return key;
}

std::string NormalizeRelative(std::string p) {
  std::vector<std::string> parts;
  for (const auto& part : SplitPath(p)) {
    if (part == ".") continue;
    parts.push_back(part);
  }
  std::string out;
  for (const auto& part : parts) {
    if (!out.empty()) out.push_back('/');
    out += part;
  }
  return out;
}

bool ShouldIgnore(const std::string& rel, const std::vector<std::string>& ignore) {
  for (const auto& ig : ignore) {
    if (ig.empty()) continue;
    if (rel == ig) return true;
    if (rel.size() > ig.size() && rel.compare(0, ig.size(), ig) == 0 && rel[ig.size()] == '/')
      return true;
  }
  return false;
}

struct FileEntry {
  std::string abs_path;
  std::string rel_name;  // "." for a single-file model
  std::uint64_t size = 0;
  int fd = -1;  // already open (SerializationOptions::model_fd): read through it, never closed
};

struct WalkState {
  const SerializationOptions* options;
  std::vector<std::string> ignore;
  std::vector<FileEntry> files;
  std::set<std::pair<dev_t, ino_t>> dir_stack;
};

Status WalkDir(WalkState& st, const fs::path& dir, const std::string& rel_dir, int depth) {
  if (depth > kMaxDepth)
    return LimitExceeded("sign: model folder nested too deep at " + dir.string());
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return IoError("sign: cannot list folder at " + dir.string() + ": " + ec.message());
  std::vector<fs::path> children;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return IoError("sign: cannot list folder at " + dir.string() + ": " + ec.message());
    children.push_back(it->path());
  }
  std::sort(children.begin(), children.end());
  for (const auto& child : children) {
    std::string name = child.filename().string();
    std::string rel = rel_dir.empty() ? name : rel_dir + "/" + name;
    if (ShouldIgnore(rel, st.ignore)) continue;
    struct stat lst {};
    if (::lstat(child.c_str(), &lst) != 0)
      return IoError("sign: cannot stat " + child.string() + ": " + std::strerror(errno));
    struct stat target = lst;
    if (S_ISLNK(lst.st_mode)) {
      if (!st.options->allow_symlinks)
        return InvalidArgument("sign: symbolic link at " + child.string() +
                               ": refused (use --allow-symlinks to follow links)");
      if (::stat(child.c_str(), &target) != 0)
        return InvalidArgument("sign: broken symbolic link at " + child.string());
    }
    if (S_ISDIR(target.st_mode)) {
      auto id = std::make_pair(target.st_dev, target.st_ino);
      if (st.dir_stack.count(id))
        return InvalidArgument("sign: symbolic link loop at " + child.string());
      st.dir_stack.insert(id);
      AIRLOCK_TRY(WalkDir(st, child, rel, depth + 1));
      st.dir_stack.erase(id);
    } else if (S_ISREG(target.st_mode)) {
      st.files.push_back({child.string(), rel, static_cast<std::uint64_t>(target.st_size)});
    } else {
      return InvalidArgument("sign: not a regular file or folder at " + child.string() +
                             " (special files cannot be signed)");
    }
  }
  return Status::Ok();
}

struct WorkItem {
  std::size_t file = 0;
  std::uint64_t start = 0;
  std::uint64_t end = 0;  // files method: the size seen at walk time (read to EOF anyway)
  bool whole_file = true;
};

// Hashes one item with pread in bounded chunks. `buf` is the worker's buffer.
Result<core::Digest256> HashItem(const FileEntry& f, const WorkItem& item,
                                 std::vector<std::byte>& buf, core::Progress& progress,
                                 const std::atomic<bool>& stop) {
  const bool own_fd = f.fd < 0;
  int fd = own_fd ? ::open(f.abs_path.c_str(), O_RDONLY | O_CLOEXEC) : f.fd;
  if (fd < 0) return IoError("sign: cannot open " + f.abs_path + ": " + std::strerror(errno));
  auto close_own = [&] {
    if (own_fd) ::close(fd);
  };
  ::posix_fadvise(fd, static_cast<off_t>(item.start),
                  item.whole_file ? 0 : static_cast<off_t>(item.end - item.start),
                  POSIX_FADV_SEQUENTIAL);
  core::Sha256 h;
  std::uint64_t off = item.start;
  for (;;) {
    if (stop.load(std::memory_order_relaxed)) {
      close_own();
      return Status(StatusCode::kCancelled, "sign: cancelled");
    }
    std::size_t want = buf.size();
    if (!item.whole_file) {
      if (off >= item.end) break;
      want = static_cast<std::size_t>(std::min<std::uint64_t>(want, item.end - off));
    }
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close_own();
      return IoError("sign: cannot read " + f.abs_path + ": " + std::strerror(err));
    }
    if (n == 0) {
      if (!item.whole_file) {
        close_own();
        return IoError("sign: file shrank while hashing at " + f.abs_path);
      }
      break;
    }
    h.Update(std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)));
    off += static_cast<std::uint64_t>(n);
    progress.Add(static_cast<std::uint64_t>(n));
  }
  close_own();
  return h.Finish();
}

}  // namespace

void SortResources(std::vector<Resource>& resources) {
  std::vector<std::pair<ResourceKey, Resource>> keyed;
  keyed.reserve(resources.size());
  for (auto& r : resources) keyed.emplace_back(KeyOf(r), std::move(r));
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    if (a.first.parts != b.first.parts) return a.first.parts < b.first.parts;
    if (a.first.start != b.first.start) return a.first.start < b.first.start;
    return a.first.end < b.first.end;
  });
  resources.clear();
  for (auto& [k, r] : keyed) resources.push_back(std::move(r));
}

Result<std::string> RootDigest(const std::vector<Resource>& resources) {
  core::Sha256 h;
  for (const auto& r : resources) {
    auto raw = internal::HexDecode(r.digest_hex);
    if (!raw) return Corrupt("sign: resource digest is not hex at " + r.name);
    h.Update(*raw);
  }
  return core::ToHex(h.Finish());
}

std::string ModelName(const std::string& model_path) {
  std::string p = model_path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::string name = fs::path(p).filename().string();
  if (name.empty() || name == "." || name == "..") {
    std::error_code ec;
    fs::path resolved = fs::weakly_canonical(fs::absolute(p, ec), ec);
    name = resolved.filename().string();
  }
  return name;
}

std::vector<std::string> ResolveIgnorePaths(const std::string& model_path,
                                            const std::vector<std::string>& paths,
                                            bool ignore_git_paths) {
  std::set<std::string> out;
  std::error_code ec;
  fs::path root = fs::weakly_canonical(fs::absolute(model_path, ec), ec);
  auto relative_inside = [&](const fs::path& candidate) -> std::optional<std::string> {
    std::error_code ec2;
    fs::path c = fs::weakly_canonical(candidate, ec2);
    if (ec2) return std::nullopt;
    fs::path rel = c.lexically_relative(root);
    if (rel.empty()) return std::nullopt;
    std::string s = rel.generic_string();
    if (s == "." || s == ".." || s.rfind("../", 0) == 0) return std::nullopt;
    return NormalizeRelative(s);
  };
  for (const auto& p : paths) {
    if (p.empty()) continue;
    auto r = relative_inside(fs::absolute(p, ec));
    if (!r && fs::path(p).is_relative()) r = relative_inside(root / p);
    if (r && !r->empty()) out.insert(*r);
  }
  if (ignore_git_paths)
    for (const char* g : kGitIgnorePaths) out.insert(g);
  return {out.begin(), out.end()};
}

Result<Manifest> HashModel(const std::string& model_path, const SerializationOptions& options) {
  if (options.method == SerializationMethod::kShards && options.shard_size == 0)
    return InvalidArgument("sign: shard size must be positive");
  WalkState st;
  st.options = &options;
  for (const auto& ig : options.ignore_paths) {
    std::string n = NormalizeRelative(ig);
    if (!ig.empty() && ig[0] == '/')
      return InvalidArgument("sign: ignore path must be relative to the model at " + ig);
    for (const auto& part : SplitPath(n))
      if (part == "..")
        return InvalidArgument("sign: ignore path must stay inside the model at " + ig);
    st.ignore.push_back(n);
  }

  if (options.model_fd >= 0) {
    // The caller opened the file once and loads it from the same descriptor.
    struct stat fst {};
    if (::fstat(options.model_fd, &fst) != 0 || !S_ISREG(fst.st_mode))
      return InvalidArgument("sign: the model open as " + model_path +
                             " is not a readable regular file");
    st.files.push_back(
        {model_path, ".", static_cast<std::uint64_t>(fst.st_size), options.model_fd});
  } else {
    struct stat lst {};
    if (::lstat(model_path.c_str(), &lst) != 0) {
      if (errno == ENOENT) return NotFound("sign: no such model at " + model_path);
      return IoError("sign: cannot stat " + model_path + ": " + std::strerror(errno));
    }
    struct stat target = lst;
    if (S_ISLNK(lst.st_mode)) {
      if (!options.allow_symlinks)
        return InvalidArgument("sign: the model path " + model_path +
                               " is a symbolic link: refused (use --allow-symlinks)");
      if (::stat(model_path.c_str(), &target) != 0)
        return InvalidArgument("sign: broken symbolic link at " + model_path);
    }
    if (S_ISREG(target.st_mode)) {
      st.files.push_back({model_path, ".", static_cast<std::uint64_t>(target.st_size)});
    } else if (S_ISDIR(target.st_mode)) {
      st.dir_stack.insert({target.st_dev, target.st_ino});
      AIRLOCK_TRY(WalkDir(st, fs::path(model_path), "", 0));
    } else {
      return InvalidArgument("sign: model path is neither a file nor a folder at " + model_path);
    }
  }

  // Work items: one per file, or one per non-empty shard.
  std::vector<WorkItem> items;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < st.files.size(); ++i) {
    const auto& f = st.files[i];
    total += f.size;
    if (options.method == SerializationMethod::kFiles) {
      items.push_back({i, 0, f.size, true});
    } else {
      for (std::uint64_t start = 0; start < f.size; start += options.shard_size) {
        std::uint64_t end = std::min<std::uint64_t>(f.size, start + options.shard_size);
        items.push_back({i, start, end, false});
        if (end == f.size) break;
      }
    }
  }
  // Largest first so that one big file does not end up alone at the tail.
  std::vector<std::size_t> order(items.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return items[a].end - items[a].start > items[b].end - items[b].start;
  });

  std::vector<core::Digest256> digests(items.size());
  core::Progress progress("hashing", total, options.progress);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex error_mu;
  Status first_error;
  auto worker = [&] {
    std::vector<std::byte> buf(kChunkSize);
    for (;;) {
      std::size_t k = next.fetch_add(1);
      if (k >= order.size() || stop.load()) return;
      const WorkItem& item = items[order[k]];
      auto d = HashItem(st.files[item.file], item, buf, progress, stop);
      if (!d.has_value()) {
        std::lock_guard lock(error_mu);
        if (first_error.ok() && d.error().code() != StatusCode::kCancelled) first_error = d.error();
        stop = true;
        return;
      }
      digests[order[k]] = *d;
    }
  };
  int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (threads < 1) threads = 1;
  threads =
      static_cast<int>(std::min<std::size_t>(threads, std::max<std::size_t>(items.size(), 1)));
  if (threads == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
  }
  progress.Finish();
  if (!first_error.ok()) return first_error;

  Manifest m;
  m.model_name = ModelName(model_path);
  m.serialization = options;
  m.serialization.ignore_paths = st.ignore;
  std::sort(m.serialization.ignore_paths.begin(), m.serialization.ignore_paths.end());
  m.serialization.ignore_paths.erase(
      std::unique(m.serialization.ignore_paths.begin(), m.serialization.ignore_paths.end()),
      m.serialization.ignore_paths.end());
  std::string shard_algorithm = "sha256-sharded-" + std::to_string(options.shard_size);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    const auto& f = st.files[item.file];
    Resource r;
    if (options.method == SerializationMethod::kFiles) {
      r.name = f.rel_name;
      r.algorithm = "sha256";
    } else {
      r.name = f.rel_name + ":" + std::to_string(item.start) + ":" + std::to_string(item.end);
      r.algorithm = shard_algorithm;
    }
    r.digest_hex = core::ToHex(digests[i]);
    m.resources.push_back(std::move(r));
  }
  SortResources(m.resources);
  return m;
}

ManifestDiff CompareManifests(const std::vector<Resource>& expected,
                              const std::vector<Resource>& actual) {
  // file path -> set of (name, algorithm, digest)
  using Items = std::set<std::tuple<std::string, std::string, std::string>>;
  std::map<std::string, Items> want, have;
  for (const auto& r : expected) want[KeyOf(r).path].insert({r.name, r.algorithm, r.digest_hex});
  for (const auto& r : actual) have[KeyOf(r).path].insert({r.name, r.algorithm, r.digest_hex});
  ManifestDiff diff;
  for (const auto& [path, items] : have)
    if (!want.count(path)) diff.extra_files.push_back(path);
  for (const auto& [path, items] : want) {
    auto it = have.find(path);
    if (it == have.end()) {
      diff.missing_files.push_back(path);
    } else if (it->second != items) {
      diff.modified_files.push_back(path);
    }
  }
  return diff;
}

}  // namespace airlock::sign
