#include "server/internal/worker_protocol.h"

#include <cmath>
#include <limits>

#include "server/internal/json_limits.h"

namespace airlock::server::internal {
namespace {

using json = nlohmann::json;

// Counts a worker may report: far above any context, far below overflow in the gateway's sums.
constexpr std::int64_t kMaxReportedTokens = std::int64_t{1} << 40;

void PutBigEndian(std::string& out, std::uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t GetBigEndian(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string MakeFrame(char kind, std::string_view body, std::size_t extra_header = 0,
                      std::uint64_t id = 0) {
  std::string out;
  const std::size_t payload = 1 + extra_header + body.size();
  out.reserve(4 + payload);
  PutBigEndian(out, payload, 4);
  out.push_back(kind);
  if (extra_header > 0) PutBigEndian(out, id, static_cast<int>(extra_header));
  out.append(body);
  return out;
}

// Field readers: an absent field leaves `out` as it is; a present one must have the right type.
Status ReadString(const json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Ok();
  if (!it->is_string()) return InvalidArgument(std::string("field '") + key + "' is not a string");
  *out = it->get<std::string>();
  return Status::Ok();
}

Status ReadInt(const json& j, const char* key, std::int64_t lo, std::int64_t hi,
               std::int64_t* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Ok();
  if (!it->is_number_integer())
    return InvalidArgument(std::string("field '") + key + "' is not an integer");
  // Unsigned values above INT64_MAX are out of range too.
  if (it->is_number_unsigned() &&
      it->get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return InvalidArgument(std::string("field '") + key + "' is out of range");
  std::int64_t v = it->get<std::int64_t>();
  if (v < lo || v > hi) return InvalidArgument(std::string("field '") + key + "' is out of range");
  *out = v;
  return Status::Ok();
}

Status ReadDouble(const json& j, const char* key, double lo, double hi, double* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Ok();
  if (!it->is_number()) return InvalidArgument(std::string("field '") + key + "' is not a number");
  double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    return InvalidArgument(std::string("field '") + key + "' is out of range");
  *out = v;
  return Status::Ok();
}

Status ReadBool(const json& j, const char* key, bool* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Ok();
  if (!it->is_boolean())
    return InvalidArgument(std::string("field '") + key + "' is not a boolean");
  *out = it->get<bool>();
  return Status::Ok();
}

// A token as the worker reports it: text, bytes (each 0..255) and a finite log-probability <= 0.
Status ReadTokenLogprob(const json& j, TokenLogprobAlternative* out) {
  if (!j.is_object()) return InvalidArgument("a logprob entry is not an object");
  AIRLOCK_TRY(ReadString(j, "token", &out->token));
  AIRLOCK_TRY(ReadDouble(j, "logprob", -1e30, 0, &out->logprob));
  if (auto it = j.find("bytes"); it != j.end()) {
    if (!it->is_array() || it->size() > out->token.size() * 4 + 16)
      return InvalidArgument("field 'bytes' is not a short array");
    for (const json& b : *it) {
      if (!b.is_number_unsigned() || b.get<std::uint64_t>() > 255)
        return InvalidArgument("field 'bytes' holds a value that is not a byte");
      out->bytes.push_back(static_cast<std::uint8_t>(b.get<std::uint64_t>()));
    }
  }
  return Status::Ok();
}

json TokenLogprobToWire(const TokenLogprobAlternative& t) {
  return {{"token", t.token}, {"bytes", t.bytes}, {"logprob", t.logprob}};
}

Result<std::uint64_t> ReadId(const json& j) {
  auto it = j.find("id");
  if (it == j.end() || !it->is_number_integer()) return InvalidArgument("field 'id' is missing");
  if (!it->is_number_unsigned() && it->get<std::int64_t>() < 0)
    return InvalidArgument("field 'id' is negative");
  return it->get<std::uint64_t>();
}

}  // namespace

std::string EncodeJsonFrame(const json& message) { return MakeFrame('J', DumpJson(message)); }

std::string EncodeTextFrame(std::uint64_t id, std::string_view text) {
  return MakeFrame('T', text, 8, id);
}

Result<std::optional<Frame>> FrameDecoder::Next() {
  if (buffered() < 4) return std::optional<Frame>();
  const char* p = buffer_.data() + consumed_;
  const std::uint64_t length = GetBigEndian(p, 4);
  if (length == 0 || length > max_frame_)
    return LimitExceeded("frame of " + std::to_string(length) + " bytes (limit " +
                         std::to_string(max_frame_) + ")");
  if (buffered() < 4 + length) return std::optional<Frame>();
  std::string_view payload(p + 4, length);
  consumed_ += 4 + length;
  Frame frame;
  frame.kind = payload[0];
  if (frame.kind == 'T') {
    if (payload.size() < 9) return InvalidArgument("text frame shorter than its id");
    frame.id = GetBigEndian(payload.data() + 1, 8);
    frame.text.assign(payload.substr(9));
  } else if (frame.kind == 'J') {
    AIRLOCK_ASSIGN_OR_RETURN(frame.json, ParseBoundedJson(payload.substr(1), max_frame_));
    if (!frame.json.is_object()) return InvalidArgument("control frame is not a JSON object");
  } else {
    return InvalidArgument("unknown frame kind " +
                           std::to_string(static_cast<unsigned char>(frame.kind)));
  }
  // Drop what was consumed once it is most of the buffer, so memory stays at about one frame.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return std::optional<Frame>(std::move(frame));
}

json ToWire(const GenerateRequest& r) {
  json messages = json::array();
  for (const ChatMessage& m : r.messages)
    messages.push_back({{"role", m.role},
                        {"content", m.content},
                        {"tool_calls_json", m.tool_calls_json},
                        {"tool_call_id", m.tool_call_id}});
  return {{"chat", r.chat},
          {"messages", std::move(messages)},
          {"prompt", r.prompt},
          {"max_tokens", r.max_tokens},
          {"temperature", r.temperature},
          {"top_p", r.top_p},
          {"stop", r.stop},
          {"seed", r.seed},
          {"presence_penalty", r.presence_penalty},
          {"frequency_penalty", r.frequency_penalty},
          {"json_schema", r.json_schema},
          {"json_object", r.json_object},
          {"logprobs", r.logprobs},
          {"top_logprobs", r.top_logprobs},
          {"tools_json", r.tools_json}};
}

Result<GenerateRequest> GenerateRequestFromWire(const json& w) {
  if (!w.is_object()) return InvalidArgument("request is not an object");
  GenerateRequest r;
  if (auto it = w.find("chat"); it != w.end()) {
    if (!it->is_boolean()) return InvalidArgument("field 'chat' is not a boolean");
    r.chat = it->get<bool>();
  }
  if (auto it = w.find("messages"); it != w.end()) {
    if (!it->is_array()) return InvalidArgument("field 'messages' is not an array");
    for (const json& m : *it) {
      if (!m.is_object()) return InvalidArgument("a message is not an object");
      ChatMessage cm;
      AIRLOCK_TRY(ReadString(m, "role", &cm.role));
      AIRLOCK_TRY(ReadString(m, "content", &cm.content));
      AIRLOCK_TRY(ReadString(m, "tool_calls_json", &cm.tool_calls_json));
      AIRLOCK_TRY(ReadString(m, "tool_call_id", &cm.tool_call_id));
      r.messages.push_back(std::move(cm));
    }
  }
  AIRLOCK_TRY(ReadString(w, "prompt", &r.prompt));
  std::int64_t max_tokens = r.max_tokens;
  AIRLOCK_TRY(ReadInt(w, "max_tokens", 0, std::numeric_limits<int>::max(), &max_tokens));
  r.max_tokens = static_cast<int>(max_tokens);
  AIRLOCK_TRY(ReadDouble(w, "temperature", 0, 1e6, &r.temperature));
  AIRLOCK_TRY(ReadDouble(w, "top_p", 0, 1, &r.top_p));
  if (auto it = w.find("stop"); it != w.end()) {
    if (!it->is_array()) return InvalidArgument("field 'stop' is not an array");
    for (const json& s : *it) {
      if (!s.is_string()) return InvalidArgument("a stop string is not a string");
      r.stop.push_back(s.get<std::string>());
    }
  }
  if (auto it = w.find("seed"); it != w.end()) {
    if (!it->is_number_unsigned()) return InvalidArgument("field 'seed' is not unsigned");
    r.seed = it->get<std::uint64_t>();
  }
  AIRLOCK_TRY(ReadDouble(w, "presence_penalty", -2, 2, &r.presence_penalty));
  AIRLOCK_TRY(ReadDouble(w, "frequency_penalty", -2, 2, &r.frequency_penalty));
  AIRLOCK_TRY(ReadString(w, "json_schema", &r.json_schema));
  AIRLOCK_TRY(ReadBool(w, "json_object", &r.json_object));
  AIRLOCK_TRY(ReadBool(w, "logprobs", &r.logprobs));
  std::int64_t top_logprobs = r.top_logprobs;
  AIRLOCK_TRY(ReadInt(w, "top_logprobs", 0, 20, &top_logprobs));
  r.top_logprobs = static_cast<int>(top_logprobs);
  AIRLOCK_TRY(ReadString(w, "tools_json", &r.tools_json));
  return r;
}

json ToWire(const GenerateResult& r) {
  json out = {{"prompt_tokens", r.prompt_tokens},
              {"completion_tokens", r.completion_tokens},
              {"finish_reason", r.finish_reason}};
  if (!r.logprobs.empty()) {
    json logprobs = json::array();
    for (const TokenLogprob& t : r.logprobs) {
      json entry = TokenLogprobToWire(t);
      json top = json::array();
      for (const TokenLogprobAlternative& a : t.top) top.push_back(TokenLogprobToWire(a));
      entry["top"] = std::move(top);
      logprobs.push_back(std::move(entry));
    }
    out["logprobs"] = std::move(logprobs);
  }
  return out;
}

Result<GenerateResult> GenerateResultFromWire(const json& w) {
  if (!w.is_object()) return InvalidArgument("result is not an object");
  GenerateResult r;
  AIRLOCK_TRY(ReadInt(w, "prompt_tokens", 0, kMaxReportedTokens, &r.prompt_tokens));
  AIRLOCK_TRY(ReadInt(w, "completion_tokens", 0, kMaxReportedTokens, &r.completion_tokens));
  AIRLOCK_TRY(ReadString(w, "finish_reason", &r.finish_reason));
  // The gateway copies it into responses: only the values a backend produces.
  if (r.finish_reason != "stop" && r.finish_reason != "length" && r.finish_reason != "cancelled")
    return InvalidArgument("field 'finish_reason' has an unknown value");
  if (auto it = w.find("logprobs"); it != w.end()) {
    // One entry per generated token (the frame cap bounds their number), each with at most 20
    // alternatives (OpenAI's top_logprobs).
    if (!it->is_array()) return InvalidArgument("field 'logprobs' is not an array");
    for (const json& e : *it) {
      TokenLogprob t;
      AIRLOCK_TRY(ReadTokenLogprob(e, &t));
      if (auto top = e.find("top"); top != e.end()) {
        if (!top->is_array() || top->size() > 20)
          return InvalidArgument("field 'top' is not an array of at most 20 alternatives");
        for (const json& a : *top) {
          TokenLogprobAlternative alt;
          AIRLOCK_TRY(ReadTokenLogprob(a, &alt));
          t.top.push_back(std::move(alt));
        }
      }
      r.logprobs.push_back(std::move(t));
    }
  }
  return r;
}

Result<WorkerMessage> ParseWorkerMessage(Frame frame) {
  WorkerMessage m;
  if (frame.kind == 'T') {
    m.op = WorkerMessage::Op::kText;
    m.id = frame.id;
    m.text = std::move(frame.text);
    return m;
  }
  const json& j = frame.json;
  if (!j.is_object()) return InvalidArgument("control message is not an object");
  auto op_it = j.find("op");
  if (op_it == j.end() || !op_it->is_string()) return InvalidArgument("field 'op' is missing");
  const std::string op = op_it->get<std::string>();
  if (op == "hello") {
    m.op = WorkerMessage::Op::kHello;
    std::int64_t version = 0;
    AIRLOCK_TRY(ReadInt(j, "protocol", 0, 1 << 30, &version));
    if (version != kWorkerProtocolVersion)
      return InvalidArgument("protocol version " + std::to_string(version) + ", expected " +
                             std::to_string(kWorkerProtocolVersion));
    std::string syntax = "none";
    AIRLOCK_TRY(ReadString(j, "tool_syntax", &syntax));
    if (syntax == "qwen")
      m.tool_syntax = engine::ToolCallSyntax::kQwen;
    else if (syntax == "deepseek")
      m.tool_syntax = engine::ToolCallSyntax::kDeepSeek;
    else if (syntax == "llama3")
      m.tool_syntax = engine::ToolCallSyntax::kLlama3;
    else if (syntax != "none")
      return InvalidArgument("field 'tool_syntax' has an unknown value");
    AIRLOCK_TRY(ReadString(j, "think_open", &m.think_markers.open));
    AIRLOCK_TRY(ReadString(j, "think_close", &m.think_markers.close));
    if (m.think_markers.open.empty() != m.think_markers.close.empty())
      return InvalidArgument("fields 'think_open' and 'think_close' come together");
    if (m.think_markers.open.size() > kMaxThinkMarker ||
        m.think_markers.close.size() > kMaxThinkMarker)
      return InvalidArgument("a think marker is longer than 64 bytes");
    std::int64_t kv_bytes = 0;
    AIRLOCK_TRY(ReadInt(j, "kv_cache_bytes", 0, std::int64_t{1} << 50, &kv_bytes));
    m.kv_cache.bytes = static_cast<std::uint64_t>(kv_bytes);
    AIRLOCK_TRY(ReadString(j, "kv_type", &m.kv_cache.type));
    if (!m.kv_cache.type.empty() && m.kv_cache.type != "f32" && m.kv_cache.type != "f16" &&
        m.kv_cache.type != "q8_0")
      return InvalidArgument("field 'kv_type' has an unknown value");
    return m;
  }
  if (op == "fatal") {
    m.op = WorkerMessage::Op::kFatal;
    AIRLOCK_TRY(ReadString(j, "message", &m.text));
    if (m.text.size() > kMaxWorkerErrorMessage) m.text.resize(kMaxWorkerErrorMessage);
    return m;
  }
  AIRLOCK_ASSIGN_OR_RETURN(m.id, ReadId(j));
  if (op == "done") {
    m.op = WorkerMessage::Op::kDone;
    auto it = j.find("result");
    if (it == j.end()) return InvalidArgument("field 'result' is missing");
    AIRLOCK_ASSIGN_OR_RETURN(m.result, GenerateResultFromWire(*it));
    return m;
  }
  if (op == "error") {
    m.op = WorkerMessage::Op::kError;
    std::string code;
    AIRLOCK_TRY(ReadString(j, "code", &code));
    if (code == "invalid_argument")
      m.code = StatusCode::kInvalidArgument;
    else if (code == "cancelled")
      m.code = StatusCode::kCancelled;
    else if (code == "internal")
      m.code = StatusCode::kInternal;
    else
      return InvalidArgument("field 'code' has an unknown value");
    AIRLOCK_TRY(ReadString(j, "message", &m.text));
    if (m.text.size() > kMaxWorkerErrorMessage) m.text.resize(kMaxWorkerErrorMessage);
    return m;
  }
  if (op == "count") {
    m.op = WorkerMessage::Op::kCount;
    if (!j.contains("tokens")) return InvalidArgument("field 'tokens' is missing");
    AIRLOCK_TRY(ReadInt(j, "tokens", 0, kMaxReportedTokens, &m.tokens));
    return m;
  }
  return InvalidArgument("unknown op");
}

}  // namespace airlock::server::internal
