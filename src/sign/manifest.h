// Model serialization exactly as OpenSSF model_signing 1.x does it: walk a model (a file or a
// folder), hash every regular file ("files" method) or every fixed-size shard of every file
// ("shards" method) with SHA-256, name each resource by its relative POSIX path ("." for a
// single-file model; "path:start:end" for shards), sort them canonically, and fold the raw digests
// into the root digest that becomes the in-toto subject. Hashing runs on a thread pool, reads in
// bounded 1 MiB chunks and can draw a progress bar. Thread-safety: free functions; a Manifest is a
// value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace airlock::sign {

enum class SerializationMethod { kFiles, kShards };

// model_signing's default shard size (hashing.py): 1,000,000,000 bytes.
inline constexpr std::uint64_t kDefaultShardSize = 1'000'000'000;

// The git paths model_signing ignores by default (hashing.Config.hash).
inline constexpr const char* kGitIgnorePaths[] = {".git", ".gitattributes", ".github",
                                                  ".gitignore"};

struct SerializationOptions {
  SerializationMethod method = SerializationMethod::kFiles;
  std::uint64_t shard_size = kDefaultShardSize;  // shards only; must be > 0
  bool allow_symlinks = false;
  // Relative POSIX paths inside the model (no "..", no leading '/'); a folder ignores everything
  // below it. Recorded in the predicate as "ignore_paths" (sorted) when non-empty.
  std::vector<std::string> ignore_paths;
  // Not recorded: how to hash.
  int threads = 0;        // 0 = one per hardware thread
  bool progress = false;  // draw a bar on stderr when it is a terminal
  // A single-file model already open (core::PinnedFile): its bytes are read from this descriptor
  // and the path only names it, so the caller can load exactly what was hashed. -1: open the path.
  int model_fd = -1;
};

struct Resource {
  std::string name;        // "d0/f00", ".", "model.gguf:0:1000000000"
  std::string algorithm;   // "sha256" or "sha256-sharded-<shard_size>"
  std::string digest_hex;  // lowercase
};

struct Manifest {
  std::string model_name;  // final component of the model path (informative only)
  SerializationOptions serialization;
  std::vector<Resource> resources;  // canonical order (see SortResources)
};

// The manifest of the model at `model_path`. Errors: kNotFound (no such path), kInvalidArgument
// (a symlink while !allow_symlinks, a special file, an invalid ignore path, shard_size 0), kIo.
Result<Manifest> HashModel(const std::string& model_path, const SerializationOptions& options);

// Sorts resources as model_signing does: by path components, then shard start and end.
void SortResources(std::vector<Resource>& resources);

// SHA-256 over the concatenated raw digests, in the listed order, as lowercase hex. Errors:
// kCorrupt when a digest is not hex.
Result<std::string> RootDigest(const std::vector<Resource>& resources);

// The subject name model_signing records: the final path component, or the resolved folder's name
// when the path ends in "." or "..".
std::string ModelName(const std::string& model_path);

// Turns user-given ignore paths (absolute, relative to the working directory, or relative to the
// model) into model-relative POSIX paths; paths outside the model are dropped, like model_signing
// does. Adds the git paths when `ignore_git_paths`.
std::vector<std::string> ResolveIgnorePaths(const std::string& model_path,
                                            const std::vector<std::string>& paths,
                                            bool ignore_git_paths);

// Differences between a signed manifest and the model on disk, by file.
struct ManifestDiff {
  std::vector<std::string> extra_files;     // on disk, not signed
  std::vector<std::string> missing_files;   // signed, not on disk
  std::vector<std::string> modified_files;  // both, different digest / algorithm / shards
  bool empty() const {
    return extra_files.empty() && missing_files.empty() && modified_files.empty();
  }
};
ManifestDiff CompareManifests(const std::vector<Resource>& expected,
                              const std::vector<Resource>& actual);

}  // namespace airlock::sign
