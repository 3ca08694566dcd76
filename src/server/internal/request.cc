#include "server/internal/request.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <string_view>

#include "server/internal/request_reasoning.h"

namespace airlock::server::internal {
namespace {

using json = nlohmann::json;

constexpr std::array<std::string_view, 6> kRoles = {"system", "user",      "assistant",
                                                    "tool",   "developer", "function"};

RequestError Invalid(std::string message, std::string code = "invalid_type",
                     std::string param = "") {
  return {std::move(message), std::move(code), std::move(param)};
}

bool Absent(const json& body, const char* key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null();
}

// Optional number in [lo, hi] (OpenAI's ranges).
std::optional<RequestError> OptionalNumber(const json& body, const char* key, double lo,
                                           double hi) {
  if (Absent(body, key)) return std::nullopt;
  const json& v = body.at(key);
  if (!v.is_number())
    return Invalid("'" + std::string(key) + "' must be a number.", "invalid_type", key);
  double d = v.get<double>();
  if (!(d >= lo && d <= hi)) {  // NaN fails too
    char range[64];
    std::snprintf(range, sizeof range, "%g to %g", lo, hi);
    return Invalid("'" + std::string(key) + "' must be a number from " + range + ".",
                   "invalid_value", key);
  }
  return std::nullopt;
}

// Optional integer in [lo, hi].
std::optional<RequestError> OptionalInteger(const json& body, const char* key, std::int64_t lo,
                                            std::int64_t hi, const std::string& code,
                                            std::optional<std::int64_t>* out) {
  if (Absent(body, key)) return std::nullopt;
  const json& v = body.at(key);
  bool in_range = false;
  if (v.is_number_unsigned())
    in_range = v.get<std::uint64_t>() <= static_cast<std::uint64_t>(hi) &&
               v.get<std::uint64_t>() >= static_cast<std::uint64_t>(std::max<std::int64_t>(lo, 0));
  else if (v.is_number_integer())
    in_range = v.get<std::int64_t>() >= lo && v.get<std::int64_t>() <= hi;
  if (!in_range)
    return Invalid("'" + std::string(key) + "' must be an integer from " + std::to_string(lo) +
                       " to " + std::to_string(hi) + ".",
                   code, key);
  *out = v.get<std::int64_t>();
  return std::nullopt;
}

std::optional<RequestError> CheckMessage(const json& msg) {
  if (!msg.is_object()) return Invalid("Each message must be an object.", "invalid_messages");
  auto role = msg.find("role");
  if (role == msg.end() || !role->is_string() ||
      std::find(kRoles.begin(), kRoles.end(), role->get_ref<const std::string&>()) == kRoles.end())
    return Invalid("Each message needs a 'role': one of system, user, assistant, tool, developer.",
                   "invalid_messages");
  if (auto name = msg.find("name"); name != msg.end() && !name->is_null() && !name->is_string())
    return Invalid("A message 'name' must be a string.", "invalid_messages");
  auto c = msg.find("content");
  if (c == msg.end() || c->is_null() || c->is_string()) return std::nullopt;
  if (!c->is_array())
    return Invalid("Message content must be a string or an array of parts.", "invalid_messages");
  for (const json& part : *c) {
    if (part.is_string()) continue;
    if (!part.is_object())
      return Invalid("A content part must be an object or a string.", "invalid_messages");
    auto type = part.find("type");
    if (type != part.end() && !type->is_string())
      return Invalid("A content part 'type' must be a string.", "invalid_messages");
    if (auto t = part.find("text"); t != part.end() && !t->is_string())
      return Invalid("A content part 'text' must be a string.", "invalid_messages");
  }
  return std::nullopt;
}

}  // namespace

std::int64_t CompletionRequest::CompletionCap(std::int64_t default_max_tokens) const {
  if (!max_tokens && !max_completion_tokens) return default_max_tokens;
  return std::max(max_tokens.value_or(0), max_completion_tokens.value_or(0));
}

std::optional<RequestError> ParseCompletionRequest(const json& body, bool chat,
                                                   CompletionRequest* out) {
  out->chat = chat;
  auto model = body.find("model");
  if (model == body.end() || !model->is_string())
    return Invalid("You must provide a model parameter.", "missing_model");
  out->model = model->get<std::string>();
  if (!Absent(body, "stream")) {
    if (!body.at("stream").is_boolean()) return Invalid("'stream' must be a boolean.");
    out->stream = body.at("stream").get<bool>();
  }
  if (chat) {
    auto m = body.find("messages");
    if (m == body.end() || !m->is_array() || m->empty())
      return Invalid("'messages' must be a non-empty array.", "invalid_messages");
    for (const json& msg : *m)
      if (auto e = CheckMessage(msg)) return e;
    out->message_count = m->size();
  } else {
    auto p = body.find("prompt");
    if (p == body.end()) return Invalid("You must provide a prompt.", "missing_prompt");
    bool ok = p->is_string() ||
              (p->is_array() && !p->empty() &&
               std::all_of(p->begin(), p->end(), [](const json& e) { return e.is_string(); }));
    if (!ok)
      return Invalid("'prompt' must be a string or a non-empty array of strings.",
                     "invalid_prompt");
  }
  if (auto e = OptionalInteger(body, "max_tokens", 1, kMaxTokensLimit, "invalid_max_tokens",
                               &out->max_tokens))
    return e;
  if (auto e = OptionalInteger(body, "max_completion_tokens", 1, kMaxTokensLimit,
                               "invalid_max_tokens", &out->max_completion_tokens))
    return e;
  std::optional<std::int64_t> n;
  if (auto e = OptionalInteger(body, "n", 1, kMaxChoices, "invalid_n", &n)) return e;
  out->n = n.value_or(1);
  std::optional<std::int64_t> best_of;
  if (auto e = OptionalInteger(body, "best_of", 1, kMaxChoices, "invalid_value", &best_of))
    return e;
  out->best_of = best_of.value_or(1);
  if (auto e = OptionalNumber(body, "temperature", 0, 2)) return e;
  if (auto e = OptionalNumber(body, "top_p", 0, 1)) return e;
  if (auto e = OptionalNumber(body, "presence_penalty", -2, 2)) return e;
  if (auto e = OptionalNumber(body, "frequency_penalty", -2, 2)) return e;
  if (!Absent(body, "seed") && !body.at("seed").is_number_integer())
    return Invalid("'seed' must be an integer.", "invalid_type", "seed");
  if (!Absent(body, "stop")) {
    const json& s = body.at("stop");
    bool ok = s.is_string() || (s.is_array() && std::all_of(s.begin(), s.end(), [](const json& e) {
                                  return e.is_string();
                                }));
    if (!ok) return Invalid("'stop' must be a string or an array of strings.");
  }
  return std::nullopt;
}

std::string ScanUnit::Joined() const {
  std::string all;
  for (const json* p : parts) all += p->get_ref<const std::string&>();
  return all;
}

namespace {

// Top-level numbers whose type ParseCompletionRequest checked; other numbers may carry data.
constexpr std::array<std::string_view, 9> kTypedNumbers = {
    "max_tokens",       "max_completion_tokens", "n", "best_of", "seed", "temperature", "top_p",
    "presence_penalty", "frequency_penalty"};

std::size_t DigitCount(const std::string& text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }));
}

bool IsDataUrl(const std::string& s) {
  // The scheme as a WHATWG URL parser reads it: leading C0 controls and spaces stripped
  // (" data:..."), every ASCII tab, LF and CR removed wherever it is ("da\tta:", "data\n:"),
  // letters in any case ("DATA:").
  // Unicode blanks are stripped too, as Python's str.strip() does before an upstream written in
  // it looks at the scheme ("\u00a0data:..."), and a byte-order mark or zero-width character.
  static constexpr std::string_view kUnicodeBlanks[] = {
      "\xC2\xA0",     "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81", "\xE2\x80\x82",
      "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86", "\xE2\x80\x87",
      "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\x8B", "\xE2\x80\x8C",
      "\xE2\x80\x8D", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F",
      "\xE3\x80\x80", "\xEF\xBB\xBF", "\xC2\x85"};
  std::size_t i = 0;
  for (bool stripped = true; stripped && i < s.size();) {
    stripped = false;
    if (static_cast<unsigned char>(s[i]) <= 0x20) {
      ++i;
      stripped = true;
      continue;
    }
    for (std::string_view blank : kUnicodeBlanks)
      if (std::string_view(s).substr(i, blank.size()) == blank) {
        i += blank.size();
        stripped = true;
        break;
      }
  }
  std::string head;
  for (; i < s.size() && head.size() < 5; ++i) {
    const char c = s[i];
    if (c == '\t' || c == '\n' || c == '\r') continue;
    head += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return head == "data:";
}

// Content part types whose payload is text or a URL the detectors read: "text" (and the
// Responses API's "input_text" / "output_text"), "refusal", "image_url" (an https URL; a data:
// URL is refused), and reasoning parts ({"type":"thinking"}: text, the data class reasoning).
// Any other type - "image", "input_audio", "file", "audio", "video_url", a type nobody listed
// yet - may carry base64 or binary the detectors cannot read: refused (fail closed).
bool IsScannablePartType(std::string_view type) {
  std::string lower(type);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view known : {"text", "input_text", "output_text", "refusal", "image_url"})
    if (lower == known) return true;
  return IsReasoningFieldName(lower);
}

// A number long enough to be a phone, card or ID number becomes a string, so it is scanned (and
// can be rewritten) like any text.
void TextualizeLongNumber(json& node) {
  if (!node.is_number()) return;
  std::string text = node.dump();
  if (std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) >= 7)
    node = text;
}

// Values that name a structure rather than carry text the model reads: a message's role, a part's
// or tool's type, ids, an image's detail, a function's name. They are scanned alone but kept out of
// the cross-field text (see FindCrossFieldMatches), so that "user" between two messages neither
// joins data nor gets cut.
bool IsStructuralKey(std::string_view key) {
  static constexpr std::array<std::string_view, 8> kStructural = {
      "role", "type", "id", "tool_call_id", "detail", "format", "tool_choice", "function.name"};
  return std::find(kStructural.begin(), kStructural.end(), key) != kStructural.end();
}

// Every string below `node` (depth is bounded by the parser's limit), each its own unit. `key` is
// the object key the value sits under (for array elements, the array's).
std::optional<RequestError> CollectStrings(json& node, ScanTargets* units, std::string_view key) {
  if (node.is_number_float()) {
    // 4532015112830366.0 or 1.3812345678e-5 carry their digits in the mantissa: scanned, never
    // rewritten (a finding refuses the request).
    std::string text = NumberScanText(node);
    if (DigitCount(text) >= 7) units->numbers.emplace_back("a number", text);
    return std::nullopt;
  }
  TextualizeLongNumber(node);
  if (node.is_number()) {
    // Too short to hold data alone, but one of a list may hold part of it
    // ([4111, 1111, 1111, 1111], [536, 22, 4581]): its digits join the cross-field scan.
    units->number_texts.push_back(node.dump());
    ScanUnit unit{{&units->number_texts.back()}, !IsStructuralKey(key)};
    unit.fixed = true;
    units->units.push_back(std::move(unit));
    return std::nullopt;
  }
  if (node.is_string()) {
    if (IsDataUrl(node.get_ref<const std::string&>()))
      return Invalid(
          "The request contains a data: URL, which the gateway cannot scan; pass the content as "
          "text or an https URL.",
          "unscannable_content");
    units->units.push_back(ScanUnit{{&node}, !IsStructuralKey(key)});
    return std::nullopt;
  }
  if (node.is_array()) {
    for (json& e : node)
      if (auto err = CollectStrings(e, units, key)) return err;
  } else if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      units->keys.push_back(it.key());
      // A function's name is an identifier the call must repeat exactly, not text to join.
      std::string_view child = it.key();
      if (key == "function" && child == "name") child = "function.name";
      if (auto err = CollectStrings(*it, units, child)) return err;
    }
  }
  return std::nullopt;
}

std::optional<RequestError> CollectContent(json& content, ScanTargets* units) {
  if (content.is_string()) {
    units->units.push_back(ScanUnit{{&content}});
    return std::nullopt;
  }
  if (!content.is_array()) return CollectStrings(content, units, "content");  // null (or unchecked)
  ScanUnit text;  // the text parts, in order, as one text
  for (json& part : content) {
    if (part.is_string()) {
      text.parts.push_back(&part);
      continue;
    }
    if (!part.is_object()) {  // ParseCompletionRequest checked chat parts only
      if (auto err = CollectStrings(part, units, "content")) return err;
      continue;
    }
    if (auto type = part.find("type"); type != part.end() && type->is_string() &&
                                       !IsScannablePartType(type->get_ref<const std::string&>()))
      return Invalid("The request contains a content part of type '" +
                         type->get<std::string>().substr(0, 32) +
                         "', whose payload the gateway cannot scan; pass the content as text or "
                         "an https URL.",
                     "unscannable_content");
    for (auto it = part.begin(); it != part.end(); ++it) {
      units->keys.push_back(it.key());
      // Audio, file and image payloads are base64: text inside them is out of the detectors'
      // reach (also in a part without a type).
      std::string key = it.key();
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (std::string_view payload : {"input_audio", "file", "image", "audio", "video",
                                       "input_image", "input_file", "image_base64", "b64_json"})
        if (key == payload)
          return Invalid("The request contains an " + key.substr(0, 32) +
                             " part, whose encoded payload the gateway cannot scan.",
                         "unscannable_content");
      if (it.key() == "text" && it->is_string()) {
        text.parts.push_back(&*it);
      } else if (auto err = CollectStrings(*it, units, it.key())) {
        return err;
      }
    }
  }
  if (!text.parts.empty()) units->units.push_back(std::move(text));
  return std::nullopt;
}

}  // namespace

std::string NumberScanText(const json& number) {
  std::string text = number.dump();
  if (!number.is_number_float()) return text;
  // The digits of the mantissa, in order: "4.532015112830366e+15" -> "4532015112830366"; then
  // the integer and fraction digits apart, for data written after the point
  // (0.4111111111111111: "04111111111111111 0 4111111111111111").
  std::string digits, parts;
  for (char c : text) {
    if (c == 'e' || c == 'E') break;
    if (c >= '0' && c <= '9') digits += c;
    parts += c == '.' ? ' ' : c;
  }
  return digits + " " + parts;
}

std::optional<RequestError> CollectScanUnits(json& body, bool chat, ScanTargets* units) {
  (void)chat;  // both shapes are walked the same way; `messages` only exists for chat
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& key = it.key();
    units->keys.push_back(key);
    // `model` must name a configured model (the operator's own string) to get this far.
    if (key == "model") continue;
    if (std::find(kTypedNumbers.begin(), kTypedNumbers.end(), key) != kTypedNumbers.end()) {
      // Forwarded as numbers (ParseCompletionRequest checked type and range); a long one is
      // scanned as text all the same (a seed can hold a card number).
      if (it->is_number()) {
        std::string text = NumberScanText(*it);
        if (DigitCount(text) >= 7) units->numbers.emplace_back(key, text);
      }
      continue;
    }
    if (key == "messages" && it->is_array()) {
      for (json& msg : *it) {
        if (!msg.is_object()) {  // only chat messages were checked (ParseCompletionRequest)
          if (auto err = CollectStrings(msg, units, key)) return err;
          continue;
        }
        for (auto m = msg.begin(); m != msg.end(); ++m) {
          units->keys.push_back(m.key());
          if (m.key() == "content") {
            if (auto err = CollectContent(*m, units)) return err;
          } else if (auto err = CollectStrings(*m, units, m.key())) {
            return err;
          }
        }
      }
      continue;
    }
    if (auto err = CollectStrings(*it, units, key)) return err;
  }
  return std::nullopt;
}

std::int64_t IntegerField(const json& object, const char* key, std::int64_t fallback,
                          std::int64_t max) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end()) return fallback;
  if (it->is_number_unsigned()) {
    std::uint64_t v = it->get<std::uint64_t>();
    return v <= static_cast<std::uint64_t>(max) ? static_cast<std::int64_t>(v) : fallback;
  }
  if (it->is_number_integer()) {
    std::int64_t v = it->get<std::int64_t>();
    return v >= 0 && v <= max ? v : fallback;
  }
  return fallback;
}

}  // namespace airlock::server::internal
