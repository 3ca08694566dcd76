// A minimal C2SP tlog-witness (c2sp.org/tlog-witness): `airlock audit witness` runs it on a second
// machine so that the latest checkpoint of each audit log lives where the gateway's owner cannot
// rewrite it. For each configured log (origin + Ed25519 public key) it keeps the latest checkpoint
// it accepted, accepts a new one only with a valid log signature and an RFC 6962 consistency proof
// from that checkpoint, persists it (write, fsync, rename) before answering, and answers with an
// Ed25519 cosignature/v1 line. The stored note (`<state>/<hex SHA-256 of origin>.checkpoint`, also
// served at GET /checkpoint?origin=...) is what `airlock audit verify --trusted-checkpoint` takes.
// Requests are hostile input: parsing is bounded (64 KiB bodies, at most 63 proof lines) and errors
// become HTTP statuses, never exceptions.
// Thread-safety: AddCheckpoint() may be called from any thread (check-and-store is atomic).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "audit/note.h"
#include "core/status.h"

namespace airlock::audit {

constexpr std::size_t kMaxWitnessRequestBytes = 64 << 10;

struct WitnessOptions {
  std::string state_dir;               // created if absent
  std::vector<NoteVerifier> logs;      // trusted log keys; name = the log's origin
  std::shared_ptr<NoteSigner> signer;  // the witness key; its name is the witness name
};

struct WitnessReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class Witness {
 public:
  // Errors: kInvalidArgument (no logs, no signer), kIo (state folder).
  static Result<std::unique_ptr<Witness>> Open(WitnessOptions options);
  ~Witness();
  Witness(const Witness&) = delete;
  Witness& operator=(const Witness&) = delete;
  // Handles an add-checkpoint request body (tlog-witness): 200 with cosignature lines, 400
  // malformed, 403 no valid log signature, 404 unknown origin, 409 old size mismatch (body: the
  // size it holds, content type text/x.tlog.size) or same size with another root, 422 bad proof,
  // 500 state not written.
  WitnessReply AddCheckpoint(std::string_view request);
  // The latest accepted checkpoint note of `origin` with its cosignature (empty when none).
  std::string Latest(const std::string& origin);

 private:
  explicit Witness(WitnessOptions options);
  struct State;
  WitnessOptions options_;
  std::unique_ptr<State> state_;
};

// Serves `witness` over HTTP (POST <prefix>/add-checkpoint, GET /checkpoint?origin=...) on
// host:port until `stop` is set; calls `on_listening(port)` once bound (port 0 picks one).
// Errors: kIo (cannot bind).
Status ServeWitness(Witness& witness, const std::string& host, int port,
                    const std::function<void(int)>& on_listening, const std::atomic<bool>& stop);

}  // namespace airlock::audit
