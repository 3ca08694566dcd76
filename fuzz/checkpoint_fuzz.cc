// Checkpoint fuzz target: arbitrary bytes go through everything in the audit module that reads
// text from outside: strict base64, signed notes (one, or several in an anchor file), checkpoint
// bodies, verifier keys, the witness's add-checkpoint request parser, and consistency-proof
// verification over attacker-chosen sizes and hashes. Parsers must fail cleanly, and what they
// accept must re-encode to the same bytes (canonical forms only).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "audit/merkle.h"
#include "audit/note.h"
#include "audit/witness.h"

namespace {

using namespace airlock::audit;

// A witness for the origin "fuzz.test/log" with fresh keys in a temporary folder (a request can
// only reach the state files with a valid signature, which the fuzzer cannot forge).
Witness& TheWitness() {
  static std::unique_ptr<Witness> witness = [] {
    std::string dir = std::filesystem::temp_directory_path() /
                      ("airlock-checkpoint-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::string log_key = dir + "/log.pem", witness_key = dir + "/w.pem";
    std::filesystem::remove(log_key);
    std::filesystem::remove(log_key + ".pub");
    std::filesystem::remove(witness_key);
    std::filesystem::remove(witness_key + ".pub");
    if (!GenerateEd25519Key(log_key).ok() || !GenerateEd25519Key(witness_key).ok()) std::abort();
    WitnessOptions o;
    o.state_dir = dir + "/state";
    o.logs.push_back((*NoteSigner::Load(log_key, "fuzz.test/log"))->Verifier());
    o.signer = *NoteSigner::Load(witness_key, "fuzz.test/witness");
    return std::move(*Witness::Open(std::move(o)));
  }();
  return *witness;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto decoded = Base64Decode(text); decoded && Base64Encode(*decoded) != text) std::abort();
  if (auto note = ParseNote(text); note.ok()) {
    if (FormatNote(*note) != text) std::abort();
    for (const auto& s : note->signatures)
      if (s.name.empty() || s.signature.empty()) std::abort();
  }
  if (auto notes = ParseNotes(text); notes.ok() && notes->empty()) std::abort();
  if (auto cp = ParseCheckpointBody(text); cp.ok() && CheckpointBody(*cp) != text) std::abort();
  if (auto key = ParseVerifierKey(text);
      key.ok() && ParseVerifierKey(key->VerifierKey()).ok() == false)
    std::abort();
  WitnessReply reply = TheWitness().AddCheckpoint(text);
  if (reply.status == 200) std::abort();  // nothing here is signed by the log's key
  // Sizes and a proof from the input: verification must terminate and never read out of bounds.
  if (size >= 16) {
    std::uint64_t old_size, new_size;
    std::memcpy(&old_size, data, 8);
    std::memcpy(&new_size, data + 8, 8);
    old_size %= 1u << 20;
    new_size %= 1u << 20;
    std::vector<Digest256> proof((size - 16) / 32);
    for (std::size_t i = 0; i < proof.size(); ++i)
      std::memcpy(proof[i].data(), data + 16 + 32 * i, 32);
    Digest256 a{}, b{};
    if (!proof.empty()) a = proof.front(), b = proof.back();
    VerifyConsistency(old_size, new_size, a, b, proof);
  }
  return 0;
}
