#include "audit/witness.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "audit/merkle.h"
#include "core/hash.h"

namespace airlock::audit {
namespace {

WitnessReply Reply(int status, std::string body) {
  WitnessReply r;
  r.status = status;
  r.body = std::move(body) + "\n";
  return r;
}

Result<std::uint64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0'))
    return Corrupt("malformed decimal");
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return Corrupt("malformed decimal");
    std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return Corrupt("decimal overflows");
    v = v * 10 + d;
  }
  return v;
}

std::string StateFile(const std::string& dir, const std::string& origin) {
  return dir + "/" + core::ToHex(core::Sha256Of(origin)) + ".checkpoint";
}

std::string ReadFileOrEmpty(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string data;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && data.size() < kMaxNoteBytes)
    data.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return data;
}

// Replaces `path` atomically and durably: write a temporary file, fsync, rename, fsync the folder.
bool WriteAtomically(const std::string& dir, const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return false;
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

}  // namespace

struct Witness::State {
  std::mutex mu;  // makes check-then-store atomic (see the race in tlog-witness)
};

Witness::Witness(WitnessOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {}

Witness::~Witness() = default;

Result<std::unique_ptr<Witness>> Witness::Open(WitnessOptions options) {
  if (options.logs.empty()) return InvalidArgument("witness: no log keys configured");
  if (!options.signer) return InvalidArgument("witness: no witness signing key");
  for (const auto& l : options.logs)
    if (l.name.empty() || l.type != 0x01)
      return InvalidArgument("witness: log keys must be note verifier keys (origin+id+key)");
  if (options.state_dir.empty()) return InvalidArgument("witness: no state folder");
  if (::mkdir(options.state_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return IoError("witness: cannot create " + options.state_dir);
  return std::unique_ptr<Witness>(new Witness(std::move(options)));
}

std::string Witness::Latest(const std::string& origin) {
  std::lock_guard<std::mutex> lock(state_->mu);
  return ReadFileOrEmpty(StateFile(options_.state_dir, origin));
}

WitnessReply Witness::AddCheckpoint(std::string_view request) {
  if (request.size() > kMaxWitnessRequestBytes) return Reply(400, "request too large");
  // "old N\n", up to 63 base64 proof lines, an empty line, then the checkpoint note.
  std::size_t nl = request.find('\n');
  if (nl == std::string_view::npos || request.substr(0, 4) != "old ")
    return Reply(400, "first line must be 'old <size>'");
  auto old_size = ParseDecimal(request.substr(4, nl - 4));
  if (!old_size) return Reply(400, "malformed old size");
  std::size_t pos = nl + 1;
  std::vector<Digest256> proof;
  while (true) {
    nl = request.find('\n', pos);
    if (nl == std::string_view::npos) return Reply(400, "no empty line before the checkpoint");
    std::string_view line = request.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty()) break;
    if (proof.size() == 63) return Reply(400, "more than 63 consistency proof lines");
    auto h = Base64Decode(line);
    if (!h || h->size() != 32) return Reply(400, "proof line is not base64 of 32 bytes");
    Digest256 d;
    std::memcpy(d.data(), h->data(), 32);
    proof.push_back(d);
  }
  auto note = ParseNote(request.substr(pos));
  if (!note) return Reply(400, note.error().message());
  auto cp = ParseCheckpointBody(note->body);
  if (!cp) return Reply(400, cp.error().message());
  const NoteVerifier* log_key = nullptr;
  bool known_origin = false;
  for (const auto& k : options_.logs) {
    if (k.name != cp->origin) continue;
    known_origin = true;
    if (FindValidSignature(*note, k)) log_key = &k;
  }
  if (!known_origin) return Reply(404, "unknown log origin");
  if (!log_key) return Reply(403, "no valid signature from a trusted key of this log");
  if (*old_size > cp->size) return Reply(400, "old size is larger than the checkpoint size");

  std::lock_guard<std::mutex> lock(state_->mu);
  const std::string path = StateFile(options_.state_dir, cp->origin);
  std::string stored_text = ReadFileOrEmpty(path);
  std::uint64_t stored_size = 0;
  Digest256 stored_root{};
  if (!stored_text.empty()) {
    // Our own state: a parse failure means the state folder was damaged; refuse to cosign.
    auto stored_note = ParseNote(stored_text);
    auto stored = stored_note ? ParseCheckpointBody(stored_note->body)
                              : Result<Checkpoint>(stored_note.error());
    if (!stored) return Reply(500, "witness state for this origin is unreadable");
    stored_size = stored->size;
    stored_root = stored->root;
  }
  const bool first = stored_text.empty();  // never cosigned this origin: any size is welcome
  if (*old_size != stored_size) {
    WitnessReply r = Reply(409, std::to_string(stored_size));
    r.content_type = "text/x.tlog.size";
    return r;
  }
  if (first) {
    if (!proof.empty()) return Reply(422, "a proof from size 0 must be empty");
  } else if (stored_size == cp->size) {
    if (stored_root != cp->root) return Reply(409, "same size, different root hash");
  } else if (stored_size > 0 &&
             !VerifyConsistency(stored_size, cp->size, stored_root, cp->root, proof)) {
    return Reply(422, "consistency proof does not verify");
  } else if (stored_size == 0 && !proof.empty()) {
    return Reply(422, "a proof from size 0 must be empty");
  }
  const auto now =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  auto cosig = options_.signer->Cosign(note->body, now);
  if (!cosig) return Reply(500, "cannot cosign");
  // Keep only the log's valid signature and our cosignature beside the body.
  Note kept;
  kept.body = note->body;
  kept.signatures.push_back(*FindValidSignature(*note, *log_key));
  kept.signatures.push_back(*cosig);
  if (!WriteAtomically(options_.state_dir, path, FormatNote(kept)))
    return Reply(500, "cannot persist the checkpoint");
  Note answer;
  answer.signatures.push_back(*cosig);
  std::string text = FormatNote(answer);  // "\n— name sig\n": drop the empty body's blank line
  WitnessReply r;
  r.body = text.substr(1);
  return r;
}

Status ServeWitness(Witness& witness, const std::string& host, int port,
                    const std::function<void(int)>& on_listening, const std::atomic<bool>& stop) {
  httplib::Server http;
  http.set_payload_max_length(kMaxWitnessRequestBytes);
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);
  http.Post(R"(/(?:.*/)?add-checkpoint)",
            [&witness](const httplib::Request& req, httplib::Response& res) {
              WitnessReply r = witness.AddCheckpoint(req.body);
              res.status = r.status;
              res.set_content(r.body, r.content_type);
            });
  http.Get("/checkpoint", [&witness](const httplib::Request& req, httplib::Response& res) {
    std::string note = witness.Latest(req.get_param_value("origin"));
    res.status = note.empty() ? 404 : 200;
    res.set_content(note.empty() ? "no checkpoint for this origin\n" : note, "text/plain");
  });
  int bound = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  if (bound < 0) return IoError("witness: cannot listen on " + host + ":" + std::to_string(port));
  std::thread stopper([&] {
    while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    http.stop();
  });
  if (on_listening) on_listening(bound);
  http.listen_after_bind();
  stopper.join();
  return Status::Ok();
}

}  // namespace airlock::audit
