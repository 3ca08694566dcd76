// The wire between the gateway and its model worker process (server/worker_backend.h): a
// socketpair carrying length-prefixed frames. The gateway treats everything the worker sends as
// untrusted (the worker parses hostile model files): frames are bounded before any byte of them
// is buffered, JSON is parsed with the gateway's size and depth limits, and every field is
// type- and range-checked here, in one place, before the gateway acts on it.
//
// Frame: a 4-byte big-endian payload length (1 .. the reader's limit), then the payload, whose
// first byte is its kind:
//   'J' a JSON object (control messages; see WorkerMessage and the gateway's requests below);
//   'T' a text piece: an 8-byte big-endian request id, then the raw bytes (no JSON on the per-token
//       path, and no UTF-8 requirement: a piece may end inside a multi-byte character).
// Gateway -> worker JSON: {"op":"generate","id":N,"request":<ToWire(GenerateRequest)>},
// {"op":"cancel","id":N}, {"op":"count","id":N,"text":S}.
// Worker -> gateway JSON: {"op":"hello","protocol":1,"tool_syntax":S,"think_open":S,
// "think_close":S,"kv_cache_bytes":N,"kv_type":S} once loaded (the think markers optional, both
// or neither; the cache fields optional), or
// {"op":"fatal","message":S} before exiting; per request
// {"op":"done","id":N,"result":<ToWire(GenerateResult)>},
// {"op":"error","id":N,"code":"invalid_argument"|"cancelled"|"internal","message":S},
// {"op":"count","id":N,"tokens":K}.
//
// Adding a field to GenerateRequest or GenerateResult: add one line to its ToWire and one to its
// FromWire below (FromWire checks the type and range; an absent field keeps the struct's default).
// GenerateResultFromWire accepts only the finish reasons a backend produces ("stop", "length",
// "cancelled"): a backend that gains another (e.g. "tool_calls") adds it there too.
// Thread-safety: pure functions; a FrameDecoder belongs to one reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "server/model_backend.h"

namespace airlock::server::internal {

inline constexpr int kWorkerProtocolVersion = 1;
// Largest frame the gateway accepts from a worker: text pieces and control messages are small.
inline constexpr std::size_t kMaxWorkerFrameBytes = 1u << 20;
// Largest frame a worker accepts from the gateway (a request's messages; bodies are capped lower
// by [server] max_body_bytes).
inline constexpr std::size_t kMaxGatewayFrameBytes = 64u << 20;
// Longest error message from a worker that the gateway passes on (the rest is cut).
inline constexpr std::size_t kMaxWorkerErrorMessage = 1024;

std::string EncodeJsonFrame(const nlohmann::json& message);
std::string EncodeTextFrame(std::uint64_t id, std::string_view text);

struct Frame {
  char kind = 0;         // 'J' or 'T'
  std::uint64_t id = 0;  // 'T'
  std::string text;      // 'T': the piece
  nlohmann::json json;   // 'J': an object
};

// Splits a byte stream into frames. A header announcing more than `max_frame` is an error as soon
// as its 4 bytes arrive, so a claimed length is never allocated; memory grows only with bytes that
// actually arrived, and Next() should be called after each Feed().
class FrameDecoder {
 public:
  explicit FrameDecoder(std::size_t max_frame) : max_frame_(max_frame) {}
  void Feed(const char* data, std::size_t size) { buffer_.append(data, size); }
  // The next complete frame, std::nullopt when more bytes are needed. Errors (the stream is
  // unusable afterwards): kLimitExceeded (length 0 or above the limit), kInvalidArgument (unknown
  // kind, short text frame, JSON that is not an object or fails the bounded parse).
  Result<std::optional<Frame>> Next();
  std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::size_t max_frame_;
  std::string buffer_;
  std::size_t consumed_ = 0;
};

// The one pair of functions per struct that crosses the wire (see the header comment).
nlohmann::json ToWire(const GenerateRequest& request);
Result<GenerateRequest> GenerateRequestFromWire(const nlohmann::json& wire);
nlohmann::json ToWire(const GenerateResult& result);
Result<GenerateResult> GenerateResultFromWire(const nlohmann::json& wire);

// A worker -> gateway message, validated.
struct WorkerMessage {
  enum class Op { kHello, kFatal, kText, kDone, kError, kCount };
  Op op = Op::kHello;
  std::uint64_t id = 0;
  std::string text;       // kText: the piece; kFatal, kError: the message (cut to the limit)
  GenerateResult result;  // kDone
  StatusCode code = StatusCode::kInternal;  // kError: kInvalidArgument, kCancelled or kInternal
  std::int64_t tokens = 0;                  // kCount
  // kHello: the tool-call syntax of the model's chat template ("tool_syntax": "none", "qwen",
  // "deepseek", "llama3"), which the gateway needs to read tool calls out of replies.
  engine::ToolCallSyntax tool_syntax = engine::ToolCallSyntax::kNone;
  // kHello: the markers of the model's reasoning ("think_open", "think_close"; both or neither,
  // each at most kMaxThinkMarker bytes), where the gateway splits reasoning off replies.
  engine::ReasoningMarkers think_markers;
  // kHello: the KV cache the worker allocated ("kv_cache_bytes", at most 2^50; "kv_type": "f32",
  // "f16" or "q8_0"; both optional), reported on /metrics.
  KvCacheInfo kv_cache;
};
inline constexpr std::size_t kMaxThinkMarker = 64;
// Errors: kInvalidArgument naming what is wrong (unknown op, missing or mistyped field, value
// out of range, protocol version mismatch).
Result<WorkerMessage> ParseWorkerMessage(Frame frame);

}  // namespace airlock::server::internal
