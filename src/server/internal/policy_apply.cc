#include "server/internal/policy_apply.h"

#include <algorithm>

#include "server/internal/json_limits.h"
#include "server/internal/request_reasoning.h"

namespace airlock::server::internal {
namespace {

// The reasoning fields of `object` (IsReasoningFieldName) not taken apart elsewhere: noted as
// reasoning (a non-string value decided on as its JSON text), then removed unless reasoning is
// shown (a string restored). Called after the object was scanned. An empty value is no
// reasoning (providers send "reasoning_details": [] with every answer).
void TakeReasoningFields(RequestState& st, json& object) {
  if (!object.is_object()) return;
  std::vector<std::string> names;
  for (auto it = object.begin(); it != object.end(); ++it)
    if (IsReasoningFieldName(it.key())) names.push_back(it.key());
  for (const std::string& name : names) {
    json& value = object[name];
    const bool empty =
        value.is_null() || ((value.is_string() || value.is_structured()) && value.empty());
    std::optional<std::string> keep;
    if (!empty)
      keep = st.ProcessReasoningField(value.is_string() ? value.get<std::string>() : value.dump());
    else if (st.ShowsReasoning())
      continue;
    if (!keep)
      object.erase(name);
    else if (value.is_string())
      value = *keep;
  }
}

// Keys whose string values are protocol framing, not text the model generated: counting them
// would charge an honest upstream a few tokens more than it reports on every answer. logprobs
// repeat the content token by token.
bool IsFramingKey(const std::string& key) {
  return key == "role" || key == "finish_reason" || key == "native_finish_reason" ||
         key == "stop_reason" || key == "type" || key == "id" || key == "index" ||
         key == "logprobs";
}

// Bytes of generated text below `node` (strings only, framing keys skipped).
std::int64_t TextBytes(const json& node) {
  if (node.is_string()) return static_cast<std::int64_t>(node.get_ref<const std::string&>().size());
  std::int64_t n = 0;
  if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it)
      if (!IsFramingKey(it.key())) n += TextBytes(*it);
  } else if (node.is_array()) {
    for (const json& child : node) n += TextBytes(child);
  }
  return n;
}

// Bytes of text an answer's (or chunk's) choices carry: content, reasoning, tool calls, refusals,
// unknown fields.
std::int64_t ChoicesTextBytes(const json& doc) {
  auto choices = doc.find("choices");
  if (choices == doc.end() || !choices->is_array()) return 0;
  std::int64_t n = 0;
  for (const json& c : *choices) n += TextBytes(c);
  return n;
}

// Reasoning fields next to `message` / `delta` / `text`: of each choice and of the response.
void TakeEnvelopeReasoningFields(RequestState& st, json& doc) {
  TakeReasoningFields(st, doc);
  auto choices = doc.find("choices");
  if (choices == doc.end() || !choices->is_array()) return;
  for (json& c : *choices) TakeReasoningFields(st, c);
}

}  // namespace

RequestState::~RequestState() {
  if (!settled && settle_unsettled) settle_unsettled(*this);
  if (on_release) on_release();
}

void RequestState::TakeUsage(const json& usage) {
  auto count = [&](const char* key, std::int64_t implausible) -> std::int64_t {
    auto it = usage.find(key);
    if (it == usage.end() || !it->is_number()) return -1;
    if (it->is_number_float()) {
      double d = it->get<double>();
      return d > static_cast<double>(std::int64_t{1} << 40) ? implausible : -1;
    }
    std::int64_t v = IntegerField(usage, key, -2);
    return v == -2 ? (it->is_number_unsigned() ? implausible : -1) : v;
  };
  prompt_tokens = count("prompt_tokens", prompt_estimate);
  completion_tokens = count("completion_tokens", completion_reserved);
}

void RequestState::SettleCounts(std::int64_t output_estimate) {
  const std::int64_t claimed_prompt = prompt_tokens, claimed_completion = completion_tokens;
  if (prompt_tokens < 0) prompt_tokens = prompt_estimate;
  if (completion_tokens < 0) completion_tokens = output_estimate;
  // Never less than the gateway's own estimate, whatever the upstream claims: a count it
  // under-reports (0/0) must not keep a budget from running down.
  prompt_tokens = std::max(prompt_tokens, PromptFloor());
  completion_tokens = std::max({completion_tokens, streamed_pieces, (answer_bytes + 3) / 4});
  if ((claimed_prompt >= 0 && claimed_prompt < prompt_tokens) ||
      (claimed_completion >= 0 && claimed_completion < completion_tokens))
    actions.push_back("usage: upstream claimed prompt " + std::to_string(claimed_prompt) +
                      ", completion " + std::to_string(claimed_completion) + "; charged prompt " +
                      std::to_string(prompt_tokens) + ", completion " +
                      std::to_string(completion_tokens) + " (the gateway's estimate)");
}

bool RequestState::ChoiceFinished(int index) const {
  auto it = choices.find(index);
  return it != choices.end() && it->second.finished;
}

std::string RequestState::HoldBack(int index, const std::string& field, std::string_view text) {
  // Each held field may hold up to 64 KiB; a hostile upstream spreading text over many choices
  // and tool-call indices must not multiply that without bound.
  constexpr std::size_t kMaxHeldFields = 64;
  if (held.size() >= kMaxHeldFields && !held.count({index, field})) {
    response_blocked = true;
    response_block_reason = "more than 64 tool-call/reasoning fields held back at once";
    return "";
  }
  ChoiceState& f = held[{index, field}];
  f.unscanned += text;
  return ReleaseScanned(f, /*final=*/false);
}

void RequestState::FlushHeld(int index, json& delta) {
  for (auto& [key, f] : held) {
    if (key.first != index || response_blocked) continue;
    std::string rest = ReleaseScanned(f, /*final=*/true);
    if (rest.empty() || response_blocked) continue;
    if (key.second == "reasoning") {
      auto keep = ProcessReasoningField(rest);
      if (!keep) continue;
      auto r = delta.find("reasoning_content");
      delta["reasoning_content"] =
          (r != delta.end() && r->is_string() ? r->get<std::string>() : std::string()) + *keep;
      continue;
    }
    if (key.second == "fcall" || key.second.rfind("field:", 0) == 0) {
      PutHeldText(delta, key.second, rest);
      continue;
    }
    std::int64_t tindex = std::stoll(key.second.substr(5));
    json& tcs = delta["tool_calls"];
    if (!tcs.is_array()) tcs = json::array();
    json* target = nullptr;
    for (json& tc : tcs)
      if (tc.is_object() && IntegerField(tc, "index", -1, internal::kMaxChoices) == tindex &&
          tc.contains("function") && tc["function"].is_object())
        target = &tc;
    if (!target) {
      tcs.push_back({{"index", tindex}, {"function", {{"arguments", ""}}}});
      target = &tcs.back();
    }
    json& a = (*target)["function"]["arguments"];
    a = (a.is_string() ? a.get<std::string>() : std::string()) + rest;
  }
}

void RequestState::PutHeldText(json& delta, const std::string& key, const std::string& text) {
  if (key == "fcall") {
    json& fc = delta["function_call"];
    if (!fc.is_object()) fc = json::object();
    json& a = fc["arguments"];
    a = (a.is_string() ? a.get<std::string>() : std::string()) + text;
    return;
  }
  if (text.empty()) return;  // nothing released yet: the field is left out of this chunk
  std::string name = key.substr(6);
  std::string value = text;
  if (IsReasoningFieldName(name)) {
    auto keep = ProcessReasoningField(text);
    if (!keep) return;
    value = *keep;
  }
  json& f = delta[name];
  f = (f.is_string() ? f.get<std::string>() : std::string()) + value;
}

std::set<int> RequestState::HeldIndices() const {
  std::set<int> out;
  for (const auto& [key, f] : held)
    if (!f.unscanned.empty()) out.insert(key.first);
  return out;
}

RequestState::ChoiceState& RequestState::Choice(int index) {
  ChoiceState& c = choices[index];
  if (!c.restorer) {
    c.restorer = std::make_unique<policy::StreamRestorer>(pseudonymizer);
    c.splitter = policy::ThinkSplitter(think_markers);
  }
  return c;
}

std::string RequestState::ReleaseScanned(ChoiceState& c, bool final) {
  if (!detectors || response_blocked) {
    std::string all;
    if (!response_blocked) all.swap(c.unscanned);
    c.unscanned.clear();
    c.fed = 0;
    return all;
  }
  std::vector<policy::Match> matches;  // offsets into c.unscanned
  std::size_t emit = 0;
  if (final && !c.scanner) {
    // A whole text (not streamed): one scan.
    matches = detectors->Scan(c.unscanned);
    emit = c.unscanned.size();
  } else {
    if (!final && c.unscanned.size() < c.feed_at) return "";
    if (!c.scanner)
      c.scanner = std::make_unique<policy::StreamScanner>(*detectors, StreamOptions());
    std::vector<policy::Match> found = c.scanner->Feed(std::string_view(c.unscanned).substr(c.fed));
    c.fed = c.unscanned.size();
    if (final) {
      std::vector<policy::Match> rest = c.scanner->Finish();
      found.insert(found.end(), rest.begin(), rest.end());
    }
    c.pending.insert(c.pending.end(), found.begin(), found.end());
    const std::size_t size = c.unscanned.size();
    emit = final ? size : std::min(size, c.scanner->safe_to_release() - c.released);
    while (emit > 0 && emit < size &&
           (static_cast<unsigned char>(c.unscanned[emit]) & 0xC0) == 0x80)
      --emit;                                 // never cut a UTF-8 sequence
    for (const policy::Match& m : c.pending)  // nor a finding (the scanner never asks for it)
      if (m.begin < c.released + emit && m.end > c.released + emit) emit = m.begin - c.released;
    std::vector<policy::Match> later;
    for (policy::Match& m : c.pending) {
      if (m.begin < c.released + emit) {
        m.begin -= c.released;
        m.end -= c.released;
        matches.push_back(std::move(m));
      } else {
        later.push_back(std::move(m));
      }
    }
    c.pending = std::move(later);
  }
  const std::size_t held = c.unscanned.size() - emit;
  if (!final && held > kMaxResponseHoldback) {
    BlockUnredactable("a possible match longer than 64 KiB (held back, never sent)");
    c.unscanned.clear();
    c.fed = 0;
    return "";
  }
  c.feed_at = held > 2 * kResponseHoldback ? std::min(2 * held, kMaxResponseHoldback + 1) : 0;
  std::set<policy::DataClass> found;
  for (const policy::Match& m : matches) found.insert(m.data_class);
  std::string out = c.unscanned.substr(0, emit);
  c.unscanned.erase(0, emit);
  c.fed -= std::min(c.fed, emit);
  c.released += emit;
  if (final) {  // text after the end (a hostile upstream) starts a stream of its own
    c.feed_at = 0;
    c.scanner.reset();
    c.pending.clear();
    c.fed = 0;
    c.released = 0;
  }
  if (matches.empty()) return out;
  policy::Verdict v =
      policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
  if (v.blocked) {
    response_blocked = true;
    response_block_reason = v.reason;
    c.unscanned.clear();
    return "";
  }
  for (const auto& [cls, a] : v.actions)
    response_actions.insert("response:" + std::string(policy::DataClassName(cls)) + ":" +
                            std::string(policy::ActionName(a)));
  policy::Pseudonymizer redactor;  // only kRedact actions: nothing to remember
  return redactor.Apply(out, matches, v.actions);
}

void RequestState::BlockUnredactable(const std::string& what) {
  if (response_blocked) return;
  response_blocked = true;
  response_unredactable = true;
  response_block_reason = what;
}

void RequestState::CheckFixedText(const std::string& text, const char* what) {
  if (!detectors || response_blocked) return;
  std::vector<policy::Match> matches = detectors->Scan(text);
  if (matches.empty()) return;
  std::set<policy::DataClass> found;
  for (const auto& m : matches) found.insert(m.data_class);
  policy::Verdict v =
      policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
  bool acted = v.blocked;
  for (const auto& [cls, a] : v.actions)
    if (a != policy::Action::kAllow) acted = true;
  if (acted)
    BlockUnredactable(std::string(policy::DataClassName(*found.begin())) + " in " + what +
                      " of the upstream's answer, which cannot be redacted");
}

void RequestState::ScanOutputFields(json& node, bool top) {
  if (!detectors || response_blocked) return;
  if (node.is_number()) {
    std::string text = internal::NumberScanText(node);
    if (std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) >= 7)
      CheckFixedText(text, "a number");
    return;
  }
  if (node.is_string()) {
    const std::string& text = node.get_ref<const std::string&>();
    std::vector<policy::Match> matches = detectors->Scan(text);
    if (matches.empty()) return;
    std::set<policy::DataClass> found;
    for (const auto& m : matches) found.insert(m.data_class);
    policy::Verdict v =
        policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
    if (v.blocked) {
      response_blocked = true;
      response_block_reason = v.reason;
      node = "";
      return;
    }
    for (const auto& [cls, a] : v.actions)
      response_actions.insert("response:" + std::string(policy::DataClassName(cls)) + ":" +
                              std::string(policy::ActionName(a)));
    policy::Pseudonymizer redactor;
    node = redactor.Apply(text, matches, v.actions);
  } else if (node.is_array()) {
    for (json& e : node) ScanOutputFields(e, false);
    CheckSplitAcrossValues(node);
  } else if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      CheckFixedText(it.key(), "an object key");
      if (top && it.key() == "content") {
        if (!it->is_string() && !it->is_null()) BlockUnredactable("non-string content");
        continue;  // scanned, split and restored by ProcessText
      }
      ScanOutputFields(*it, false);
    }
    if (!top) CheckSplitAcrossValues(node);
  }
}

void RequestState::CheckSplitAcrossValues(const json& node, const char* skip) {
  if (!detectors || response_blocked) return;
  // The scalar values, as scanned alone (after their own redaction).
  std::vector<std::string> texts;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (skip && node.is_object() && it.key() == skip) continue;
    const json& v = *it;
    if (v.is_string())
      texts.push_back(v.get<std::string>());
    else if (v.is_number() && node.is_array())  // an object's numbers are counts (usage)
      texts.push_back(internal::NumberScanText(v));
  }
  if (texts.size() < 2) return;
  // Joined as they are, and with a blank between values (digit groups: [4111, 1111, ...]).
  for (std::string_view separator : {std::string_view(), std::string_view(" ")}) {
    std::string joined;
    std::vector<std::size_t> ends;  // where each value ends in `joined`
    for (const std::string& t : texts) {
      if (!joined.empty()) joined += separator;
      joined += t;
      ends.push_back(joined.size());
    }
    std::set<policy::DataClass> found;
    for (const policy::Match& m : detectors->Scan(joined)) {
      auto first = std::upper_bound(ends.begin(), ends.end(), m.begin);
      if (first != ends.end() && m.end > *first) found.insert(m.data_class);  // spans a cut
    }
    if (found.empty()) continue;
    policy::Verdict v =
        policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
    bool acted = v.blocked;
    for (const auto& [cls, a] : v.actions)
      if (a != policy::Action::kAllow) acted = true;
    if (acted) {
      BlockUnredactable(std::string(policy::DataClassName(*found.begin())) +
                        " split across the values of an array or object of the upstream's "
                        "answer, which cannot be redacted");
      return;
    }
  }
}

void RequestState::ScanEnvelope(json& doc, bool chat_shape, bool streamed) {
  if (!doc.is_object()) return ScanOutputFields(doc, false);
  // The one carrier of a choice's answer that TransformResponse / TransformChunk processed
  // (content held back and restored, reasoning split off, tool arguments held back).
  const char* processed = !chat_shape ? "text" : streamed ? "delta" : "message";
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    CheckFixedText(it.key(), "an object key");
    if (it.key() != "choices" || !it->is_array()) {
      ScanOutputFields(*it, false);
      continue;
    }
    for (json& c : *it) {
      if (!c.is_object()) {
        ScanOutputFields(c, false);
        continue;
      }
      for (auto f = c.begin(); f != c.end();) {
        CheckFixedText(f.key(), "an object key");
        const std::string& k = f.key();
        if (k == processed) {
          if (!chat_shape) {
            if (!f->is_string() && !f->is_null()) BlockUnredactable("non-string text");
            ++f;
            continue;  // ProcessText
          }
          if (f->is_object()) {
            ++f;
            continue;  // ScanOutputFields and ProcessText
          }
        } else if (k == "message" || k == "delta" || k == "text") {
          // Another shape's answer carrier (a `message` in a stream chunk, a `delta` in a
          // complete answer, `text` in a chat answer): no client of this endpoint reads it, and
          // its reasoning and placeholders were not processed, so it is removed, not passed on.
          response_actions.insert("response: choices[]." + k + " of another shape removed");
          f = c.erase(f);
          continue;
        }
        ScanOutputFields(*f, false);
        ++f;
      }
      // The choice's own strings ("x_a": "mail alice@", "x_b": ...), not the processed text
      // (its placeholders are restored: the client's own data may be there).
      CheckSplitAcrossValues(c, processed);
    }
  }
  CheckSplitAcrossValues(doc);  // the top-level strings
}

std::string RequestState::ProcessText(int index, std::string_view raw, bool whole) {
  ChoiceState& c = Choice(index);
  c.unscanned += raw;
  std::string scanned = ReleaseScanned(c, /*final=*/whole);
  std::string_view text = scanned;
  std::string visible(text);
  // The splitter runs in every mode so that reasoning is recorded as a data class; only
  // strip/log (or a rule that redacts reasoning) take it out of what the client sees.
  auto piece = c.splitter.Feed(text);
  if (!piece.reasoning.empty() || piece.reasoning_released) NoteReasoning();
  if (piece.reasoning_released) ReasoningReleased();
  if (response_blocked) return "";
  if (!ShowsReasoning()) {
    reasoning_text += piece.reasoning;
    visible = std::move(piece.visible);
  }
  std::string out = c.restorer->Feed(visible);
  c.visible += out;
  return out;
}

std::string RequestState::FinishChoice(int index) {
  ChoiceState& c = Choice(index);
  if (c.finished) return "";
  c.finished = true;
  std::string out;
  std::string rest = ReleaseScanned(c, /*final=*/true);
  auto piece = c.splitter.Feed(rest);
  auto last = c.splitter.Flush();
  if (!piece.reasoning.empty() || !last.reasoning.empty() || piece.reasoning_released)
    NoteReasoning();
  if (piece.reasoning_released) ReasoningReleased();
  if (response_blocked) return "";
  if (!ShowsReasoning()) {
    reasoning_text += piece.reasoning + last.reasoning;
    out = c.restorer->Feed(piece.visible);
    out += c.restorer->Feed(last.visible);
  } else {
    out = c.restorer->Feed(rest);
  }
  out += c.restorer->Flush();
  c.visible += out;
  return out;
}

std::optional<std::string> RequestState::ProcessReasoningField(std::string_view text) {
  if (!text.empty()) NoteReasoning();
  if (response_blocked) return std::nullopt;
  std::string restored = pseudonymizer.Restore(text);
  if (ShowsReasoning()) return restored;
  reasoning_text += restored;
  return std::nullopt;
}

void RequestState::NoteReasoning() {
  if (produced_reasoning) return;  // decided with the first piece
  produced_reasoning = true;
  if (!policy) return;
  policy::Verdict v = policy::DecideResponse(*policy, {policy::DataClass::kReasoning});
  if (v.blocked) {
    if (!response_blocked) {
      response_blocked = true;
      response_block_reason = v.reason;
    }
    return;
  }
  if (reasoning_withheld) response_actions.insert("response:reasoning:redact");
}

void RequestState::ReasoningReleased() {
  if (ShowsReasoning() || response_blocked) return;
  response_blocked = true;
  response_block_reason =
      "reasoning closed after more than " + std::to_string(policy::ThinkSplitter::kMaxUndecided) +
      " bytes of the answer with no opening marker had been released; it cannot be withheld";
}

bool ReasoningRuleWithholds(const policy::Policy& policy) {
  policy::Verdict v = policy::DecideResponse(policy, {policy::DataClass::kReasoning});
  auto a = v.actions.find(policy::DataClass::kReasoning);
  return v.blocked || (a != v.actions.end() && a->second == policy::Action::kRedact);
}

std::string RequestState::ResponseText() const {
  // The choices apart, a blank line between two. Each was scanned alone, so the text is scanned
  // again as it is stored: a value read across a boundary (a card's groups on two lines, which
  // the detectors join) is redacted, never stored whole.
  std::string all;
  std::vector<std::size_t> boundaries;
  for (const auto& [i, c] : choices) {
    if (i != choices.begin()->first) {
      boundaries.push_back(all.size());
      all += "\n\n";
    }
    all += c.visible;
  }
  if (boundaries.empty() || !detectors) return all;
  std::vector<policy::Match> spanning;
  std::map<policy::DataClass, policy::Action> redact;
  for (const policy::Match& m : detectors->Scan(all))
    for (std::size_t b : boundaries)
      if (m.begin <= b && b < m.end) {
        spanning.push_back(m);
        redact[m.data_class] = policy::Action::kRedact;
        break;
      }
  if (spanning.empty()) return all;
  policy::Pseudonymizer redactor;
  return redactor.Apply(all, spanning, redact);
}
void WithholdLogprobs(RequestState& st, json& choice) {
  if (!st.detectors) return;
  // Without a rule that acts on answers there is nothing to redact that they could repeat.
  bool response_rules = false;
  if (st.policy)
    for (const policy::Rule& r : st.policy->rules)
      response_rules |=
          r.direction != policy::Direction::kRequest && r.action != policy::Action::kAllow;
  if (!response_rules) return;
  // Where OpenAI puts them (the choice), and where some providers do (inside the message or
  // delta: ScanOutputFields would scan their tokens one by one, never the text they spell).
  std::vector<json*> holders = {&choice};
  for (const char* carrier : {"message", "delta"})
    if (auto m = choice.find(carrier); m != choice.end() && m->is_object()) holders.push_back(&*m);
  for (json* holder : holders) {
    auto lp = holder->find("logprobs");
    if (lp == holder->end() || lp->is_null()) continue;
    *lp = nullptr;
    st.response_actions.insert("response: logprobs withheld");
  }
}

void TransformResponse(RequestState& st, json& body) {
  st.answer_bytes += ChoicesTextBytes(body);
  auto choices = body.find("choices");
  if (choices != body.end() && choices->is_array()) {
    for (json& c : *choices) {
      if (!c.is_object()) continue;
      WithholdLogprobs(st, c);
      int index = static_cast<int>(IntegerField(c, "index", 0, internal::kMaxChoices));
      json* text = nullptr;
      if (st.chat) {
        auto m = c.find("message");
        if (m != c.end() && m->is_object()) {
          st.ScanOutputFields(*m);
          if (auto t = m->find("content"); t != m->end() && t->is_string()) text = &*t;
          // Every field providers put a message's reasoning in (reasoning_content, reasoning,
          // reasoning_details, thinking, ...; IsReasoningFieldName).
          TakeReasoningFields(st, *m);
        }
      } else if (auto t = c.find("text"); t != c.end() && t->is_string()) {
        text = &*t;
      }
      std::string out = text ? st.ProcessText(index, text->get<std::string>(), true) : "";
      out += st.FinishChoice(index);
      if (text) *text = out;
    }
  }
  st.ScanEnvelope(body, st.chat, /*streamed=*/false);
  TakeEnvelopeReasoningFields(st, body);
  auto usage = body.find("usage");
  if (usage != body.end() && usage->is_object()) {
    st.TakeUsage(*usage);
    st.SettleCounts(static_cast<std::int64_t>(st.ResponseText().size() / 4 + 1));
  } else {
    st.prompt_tokens = st.completion_tokens = -1;
    st.SettleCounts(static_cast<std::int64_t>(st.ResponseText().size() / 4 + 1));
    body["usage"] = {{"prompt_tokens", st.prompt_tokens},
                     {"completion_tokens", st.completion_tokens},
                     {"total_tokens", st.prompt_tokens + st.completion_tokens}};
  }
}

std::string TransformChunk(RequestState& st, const std::string& payload) {
  auto parsed = ParseBoundedJson(payload, internal::kMaxSseEventBytes);
  if (!parsed.ok() && parsed.error().code() == StatusCode::kLimitExceeded) {
    st.stream_broken = true;  // hostile upstream: end the stream with an error
    return "";
  }
  if (!parsed.ok() || !parsed->is_object()) return "";  // drop what we cannot vet
  json& chunk = *parsed;
  st.answer_bytes += ChoicesTextBytes(chunk);
  if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object()) {
    st.TakeUsage(*usage);
    // The usage-only chunk (the gateway always asks for it, for accounting) reaches the client
    // only when it asked with stream_options.include_usage.
    auto choices = chunk.find("choices");
    bool usage_only = choices == chunk.end() || (choices->is_array() && choices->empty());
    if (usage_only && !st.client_include_usage) return "";
  }
  auto choices = chunk.find("choices");
  if (choices != chunk.end() && choices->is_array()) {
    for (json& c : *choices) {
      if (!c.is_object()) continue;
      WithholdLogprobs(st, c);
      int index = static_cast<int>(IntegerField(c, "index", 0, internal::kMaxChoices));
      if (st.ChoiceFinished(index)) {
        // A choice that finished has said everything: later deltas (tool-call arguments,
        // reasoning, content) would start a fresh hold-back, so they are dropped like content.
        if (auto d = c.find("delta"); d != c.end()) *d = json::object();
        c.erase("finish_reason");
        continue;
      }
      bool finishing = c.contains("finish_reason") && !c["finish_reason"].is_null();
      json* text = nullptr;
      if (st.chat) {
        auto d = c.find("delta");
        if (d != c.end() && d->is_object()) {
          // reasoning_content and tool call arguments get the same hold-back as content (per
          // choice and tool call index), so a match split across chunks is seen whole; they are
          // taken out while the rest of the delta is scanned piece by piece.
          std::string reasoning_in;
          bool has_reasoning = false;
          if (auto r = d->find("reasoning_content"); r != d->end() && r->is_string()) {
            reasoning_in = r->get<std::string>();
            has_reasoning = true;
            d->erase(r);
          }
          // The same for the other free-text fields providers stream in pieces: `refusal`, the
          // other names of reasoning (`reasoning`, `thinking`, ...: IsReasoningFieldName), and the
          // legacy `function_call.arguments`.
          std::vector<std::pair<std::string, std::string>> plain_in;  // {hold-back key, text}
          std::vector<std::string> plain_names;
          for (auto f = d->begin(); f != d->end(); ++f)
            if (f->is_string() && (f.key() == "refusal" || IsReasoningFieldName(f.key())))
              plain_names.push_back(f.key());
          for (const std::string& name : plain_names) {
            plain_in.emplace_back("field:" + name, (*d)[name].get<std::string>());
            d->erase(name);
          }
          if (auto fc = d->find("function_call"); fc != d->end() && fc->is_object())
            if (auto a = fc->find("arguments"); a != fc->end() && a->is_string()) {
              plain_in.emplace_back("fcall", a->get<std::string>());
              *a = "";
            }
          std::vector<std::pair<std::int64_t, std::string>> args_in;
          if (auto tcs = d->find("tool_calls"); tcs != d->end() && tcs->is_array())
            for (json& tc : *tcs) {
              if (!tc.is_object()) continue;
              auto f = tc.find("function");
              if (f == tc.end() || !f->is_object()) continue;
              auto a = f->find("arguments");
              if (a == f->end() || !a->is_string()) continue;
              args_in.emplace_back(IntegerField(tc, "index", 0, internal::kMaxChoices),
                                   a->get<std::string>());
              *a = "";
            }
          st.ScanOutputFields(*d);
          // Reasoning that is not a string (reasoning_details: a list of parts) is not streamed
          // in pieces: decided on as each chunk carries it.
          TakeReasoningFields(st, *d);
          if (!args_in.empty() && !st.response_blocked) {
            std::size_t k = 0;
            for (json& tc : (*d)["tool_calls"]) {
              if (!tc.is_object() || !tc.contains("function") || !tc["function"].is_object() ||
                  !tc["function"].contains("arguments") || !tc["function"]["arguments"].is_string())
                continue;
              if (k >= args_in.size()) break;
              const auto& [tindex, raw] = args_in[k++];
              tc["function"]["arguments"] =
                  st.HoldBack(index, "tool:" + std::to_string(tindex), raw);
            }
          }
          if (has_reasoning && !st.response_blocked) {
            auto keep = st.ProcessReasoningField(st.HoldBack(index, "reasoning", reasoning_in));
            if (keep) (*d)["reasoning_content"] = *keep;
          }
          for (const auto& [key, raw] : plain_in) {
            if (st.response_blocked) break;
            std::string released = st.HoldBack(index, key, raw);
            st.PutHeldText(*d, key, released);
          }
          if (finishing && !st.response_blocked) st.FlushHeld(index, *d);
          if (auto t = d->find("content"); t != d->end() && t->is_string()) text = &*t;
          if (!text && finishing) {
            (*d)["content"] = "";
            text = &(*d)["content"];
          }
        }
      } else if (auto t = c.find("text"); t != c.end() && t->is_string()) {
        text = &*t;
      }
      if (text) {
        st.streamed_pieces++;
        std::string out = st.ProcessText(index, text->get<std::string>());
        if (finishing) out += st.FinishChoice(index);
        *text = out;
      }
    }
  }
  st.ScanEnvelope(chunk, st.chat, /*streamed=*/true);
  TakeEnvelopeReasoningFields(st, chunk);
  if (st.response_blocked) return "";
  return chunk.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace airlock::server::internal
