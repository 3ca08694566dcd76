// Policy application for one request: the per-request state that settles it (RequestState), the
// request-side rewrite of a scan unit (cross_field.cc), and the response side (model output
// scanned with the response rules, held back across stream chunks so that a match split between
// chunks is seen whole, reasoning split off, placeholders restored), for complete bodies and for
// SSE chunks.
// Thread-safety: a RequestState is used by one thread at a time (the handler, then the thread
// writing the stream); the free functions touch only their arguments.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/detectors.h"
#include "policy/policy.h"
#include "policy/stream_scanner.h"
#include "policy/transform.h"
#include "server/internal/http_common.h"
#include "server/internal/request.h"
#include "server/keys.h"

namespace airlock::server::internal {

// Per-request state shared by the handler, the streaming provider and the producer thread.
// Settling is structural: every path ends in Gateway::Impl::Finish (one audit record, the
// reservation reconciled), and a state destroyed unsettled (an exception, a provider the server
// never ran) settles itself in its destructor through `settle_unsettled`.
struct RequestState {
  RequestState() = default;
  RequestState(const RequestState&) = delete;
  RequestState& operator=(const RequestState&) = delete;
  ~RequestState();
  std::function<void(RequestState&)> settle_unsettled;
  std::function<void()> on_release;  // the gateway waits for every state before it goes away
  bool forwarded = false;     // handed to an upstream or a local model (it may have done work)
  std::string incoming_hops;  // the ids of the hop header it arrived with (validated, normalized)
  std::string request_id;
  std::string endpoint;
  bool chat = true;
  Clock::time_point start;
  KeyInfo key;
  bool anonymous = true;
  std::string model;
  std::string upstream_name;
  std::string
      upstream_cert_sha256;  // the https peer that answered (or was refused): audit evidence
  std::string upstream_spki_sha256;
  std::string jurisdiction;
  std::vector<std::string> data_classes;
  std::vector<std::string> actions;
  std::string prompt_sha256;
  std::string forwarded_prompt;  // what left the gateway (for store_text)
  std::optional<Reservation> reservation;
  std::int64_t prompt_estimate = 0;
  std::int64_t prompt_text_bytes = 0;    // the scanned text units as forwarded (the keys apart)
  std::int64_t completion_cap = 0;       // per choice
  std::int64_t completion_reserved = 0;  // cap times max(n, best_of): the whole completion bound
  bool settled = false;

  policy::Pseudonymizer pseudonymizer;
  policy::ReasoningAction reasoning = policy::ReasoningAction::kPass;
  // Response-side policy: model output is scanned before reasoning is split off and placeholders
  // are restored, holding back the last kResponseHoldback bytes of a stream (see StreamOptions)
  // so that a match split across chunks is seen whole.
  static constexpr std::size_t kResponseHoldback = 256;
  // A match still growing (a private key header followed by base64 without an end) is held back
  // whole; past this size the answer ends (fail closed) instead of being buffered without bound.
  static constexpr std::size_t kMaxResponseHoldback = 64u << 10;
  const policy::Policy* policy = nullptr;
  const policy::DetectorSet* detectors = nullptr;
  bool response_blocked = false;
  std::string response_block_reason;
  bool produced_reasoning = false;  // the answer had reasoning: data class "reasoning" in the audit
  // Reasoning is a data class of its own: the response rules for "reasoning" (DecideResponse)
  // block the answer, redact (remove) its reasoning, or let it pass; `[reasoning] action` then
  // decides whether passed reasoning reaches the client (pass) and whether it is stored (log).
  // Called whenever reasoning text is found in the answer.
  void NoteReasoning();
  // The splitter found that text it had released as answer was reasoning (a closing marker with
  // no opening one, after kMaxUndecided bytes): where reasoning is withheld, the answer ends.
  void ReasoningReleased();
  // A response rule redacts reasoning, or blocks it (the answer then ends where reasoning
  // starts): set before the first byte (ReasoningRuleWithholds), so that in pass mode not even a
  // tag reaches the client before the rule is known.
  bool reasoning_withheld = false;
  // Where the answer's reasoning starts and ends: a local model's own markers (set before its
  // first piece), or empty for <think> in any letter case.
  policy::ThinkMarkers think_markers;
  // Whether reasoning reaches the client (pass, and no rule redacts or blocks it).
  bool ShowsReasoning() const {
    return reasoning == policy::ReasoningAction::kPass && !reasoning_withheld;
  }
  std::set<std::string> response_actions;
  // A streamed local answer's failure, as the model (worker) reported it: set by the generating
  // thread before it finishes the channel, and audited by the stream's writer only after a
  // detector had its say (Gateway::Impl::ModelErrorDetail), as the non-streamed path does.
  std::string model_failure;

  // How a streamed field is scanned: incrementally (policy::StreamScanner), each byte scanned a
  // bounded number of times, never the accumulated text again. Output is held back until the
  // scanner has decided it: kResponseHoldback bytes at the end, or from the start of a finding
  // that is still growing; the context covers the key word of an assignment before its value.
  static policy::StreamScanner::Options StreamOptions() {
    policy::StreamScanner::Options o;
    o.hold_back = kResponseHoldback;
    o.context = 1024;
    o.min_scan = 64;
    o.max_window = 2 * kMaxResponseHoldback;
    return o;
  }

  struct ChoiceState {
    std::string unscanned;     // output not yet released by the response scan
    std::size_t fed = 0;       // bytes of `unscanned` already given to `scanner`
    std::size_t released = 0;  // stream offset of unscanned[0]: bytes released before it
    std::unique_ptr<policy::StreamScanner> scanner;  // created with the first streamed piece
    std::vector<policy::Match> pending;              // reported by the scanner, not released yet
    // While a growing match holds output back (a PEM header followed by base64 and no end), the
    // scanner is fed again only once the held text doubled: it rescans the whole held match each
    // time, so this keeps the work linear in the held size instead of quadratic.
    std::size_t feed_at = 0;
    std::unique_ptr<policy::StreamRestorer> restorer;
    policy::ThinkSplitter splitter;
    std::string visible;
    bool finished = false;
  };
  std::map<int, ChoiceState> choices;
  std::string reasoning_text;
  std::int64_t prompt_tokens = -1;
  std::int64_t completion_tokens = -1;
  std::int64_t streamed_pieces = 0;
  // Bytes of text in the answer's choices as the upstream (or local model) sent them, before
  // anything was withheld: bytes / 4 is the least its completion is charged.
  std::int64_t answer_bytes = 0;
  bool stream_broken = false;         // an upstream SSE event exceeded the size or nesting limits
  bool client_include_usage = false;  // stream_options.include_usage: the usage chunk goes out

  // Token counts from an upstream's `usage`. A count that is missing or not an integer is left
  // unknown (-1: estimated from the output at settlement); one past 2^40 is not believed and the
  // whole reservation is charged instead (a hostile upstream must not be charged 0).
  void TakeUsage(const json& usage);
  // Fills in unknown counts: the prompt estimate, and for the completion the larger of the
  // output-based estimate and what was streamed (never less than what reached the client). Then
  // raises each count to the gateway's own estimate where the upstream claimed less (a lying
  // upstream must not keep a budget from running down): the prompt to PromptFloor(), the
  // completion to answer_bytes / 4 (rounded up); such a raise is recorded as an audit action
  // ("usage: upstream claimed ..., charged ...").
  void SettleCounts(std::int64_t output_estimate);
  // The least a prompt is charged: the bytes of its text as forwarded / 4, like an answer's
  // (prompt_estimate bounds BPE tokens by bytes for the reservation, far above the usual count).
  std::int64_t PromptFloor() const { return prompt_text_bytes / 4; }

  // Held-back streams of the other fields of a delta: {choice index, "reasoning" or "tool:N"}.
  std::map<std::pair<int, std::string>, ChoiceState> held;
  bool ChoiceFinished(int index) const;
  std::string HoldBack(int index, const std::string& field, std::string_view text);
  // Releases what is still held for choice `index` into `delta` (reasoning_content appended,
  // tool call arguments appended to the tool call of that index, or a new entry).
  void FlushHeld(int index, json& delta);
  // Appends released text of a held plain field ("field:refusal", "field:reasoning", "fcall")
  // to `delta`. `reasoning` follows the reasoning policy like reasoning_content.
  void PutHeldText(json& delta, const std::string& key, const std::string& text);
  std::set<int> HeldIndices() const;

  ChoiceState& Choice(int index);
  // Scans held-back output of a choice and releases what is settled (everything when `final`):
  // redacted where the response rules say so; "" and response_blocked set for a blocked class.
  std::string ReleaseScanned(ChoiceState& c, bool final);

  // Ends the answer because part of it can be neither forwarded nor redacted (a key or number
  // with a finding the response rules act on, content that is not a string): 502 / error event.
  bool response_unredactable = false;
  void BlockUnredactable(const std::string& what);
  // A text that is forwarded as it is (an object key, a number's digits): one whose finding the
  // response rules would redact or block ends the answer.
  void CheckFixedText(const std::string& text, const char* what);

  // Scans the strings of a message or delta other than content (reasoning_content, tool call
  // arguments, refusal, role, ...) with the response rules, each string as it arrives: redacts in
  // place, or sets response_blocked. Object keys and numbers of 7 or more digits cannot be
  // redacted: a finding ends the answer; so does content that is neither a string nor null.
  // Unlike content, a match split across two stream chunks of such a field is not seen.
  void ScanOutputFields(json& node, bool top = true);
  // Data split between the strings of one array or object outside content (["mail alice@",
  // "example.com"]) or the numbers of one array ([4111, 1111, 1111, 1111]): read joined, as they
  // are and with a blank between values; a finding the response rules act on ends the answer
  // (it cannot be mapped back to a redaction of each piece).
  void CheckSplitAcrossValues(const json& node, const char* skip = nullptr);

  // Everything of a response or stream chunk outside the answer carrier processed above (a chat
  // answer's `message`, a stream chunk's `delta`, a completion's `text`): choice-level logprobs,
  // finish_reason, unknown fields, top-level fields such as system_fingerprint, usage numbers,
  // with the same rules as ScanOutputFields. The carrier of another shape (`message` in a stream
  // chunk, `delta` in a complete answer, `text` in a chat answer, and the reverse) is removed:
  // its content, reasoning and placeholders would bypass the answer's processing.
  void ScanEnvelope(json& doc, bool chat_shape, bool streamed);

  // Processes a piece of model output text of choice `index`; returns what the client sees.
  // `whole`: the choice's complete text (not streamed), scanned at once with no hold-back bound.
  std::string ProcessText(int index, std::string_view raw, bool whole = false);
  std::string FinishChoice(int index);
  // reasoning_content field: restored; returned to the client only for "pass".
  std::optional<std::string> ProcessReasoningField(std::string_view text);
  std::string ResponseText() const;
};

// Whether the policy's response rules redact (remove) or block the data class "reasoning".
bool ReasoningRuleWithholds(const policy::Policy& policy);

// Data split across fields: "mail alice@" in one message and "example.com" in the next, a phone
// number cut between a message's name and its content, between tool call arguments, over three
// or more content parts, or with blanks or invisible characters (" ", "\n", U+200B, U+3000) at
// the cut. A model reads its fields as one text, so the gateway scans the model text of the
// request (every unit whose ScanUnit::model_text is set, every part of it a field) as joined
// text too, in up to six arrangements: fields in request order and in reverse order (a template
// may render a message's name before or after its content), each joined as they are, with the
// blanks and invisible characters at every field boundary removed, and removed with the group
// separator of a number put back where a cut falls between two of its digit groups ("4111 1111"
// + "1111 1111"; see policy::GroupSeparatorAtCut). The trimmed and glued arrangements are also
// made of the fields read decoded (policy::DecodedView, each family of encodings apart), so that
// separators and padding written encoded ("4111%201111" + "1111%201111", "536%2D22" + "4581",
// "alice%40%0A" + "example.com") count as they do in clear; pieces map back to the encoded
// bytes. Only the text within
// kCrossFieldWindow bytes of a boundary takes part (a finding split between fields is shorter
// than that: bounded rules are under 700 bytes), so this costs a few KiB of scanning per
// boundary, not another pass over long fields (a field holding an encoding is decoded whole,
// once per family: linear, as its own scan). A finding is kept only if it spans two or more
// fields and is not explained by the units' own findings (the joined reading wins where it reads
// on past one: "alice@example.co" + "m").
inline constexpr std::size_t kCrossFieldWindow = 1024;

struct CrossFieldMatch {
  policy::DataClass data_class;
  std::string rule;
  std::string value;  // the finding as read across the fields (what a placeholder stands for)
  struct Piece {
    std::size_t unit;        // index into the units
    std::size_t begin, end;  // byte range in that unit's joined text
  };
  std::vector<Piece> pieces;  // in reading order: the first gets the placeholder, the rest are cut
  // The first piece is a whole field, and the value, split across the later fields, reads as
  // well without it: "hi" + "bob@" + "corp.example" cannot be told from "ali" + "ce@" +
  // "example.com". A rewrite would either destroy the user's text or leave part of the value,
  // so a policy that rewrites the class refuses the request.
  bool starts_with_a_whole_field = false;
};

std::vector<CrossFieldMatch> FindCrossFieldMatches(
    const policy::DetectorSet& detectors, const std::vector<ScanUnit>& units,
    const std::vector<std::string>& joined,
    const std::vector<std::vector<policy::Match>>& unit_matches);

// A cut a cross-field finding makes in one unit: [begin, end) of its joined text is replaced by
// `replacement` (the placeholder for the first piece, "" for the others).
struct UnitCut {
  std::size_t begin, end;
  std::string replacement;
};

// The cuts each unit gets from `cross` under `actions` (findings whose class is neither redacted
// nor pseudonymized make none). Placeholders come from `pseudonymizer`.
std::vector<std::vector<UnitCut>> CrossFieldCuts(
    policy::Pseudonymizer& pseudonymizer, std::size_t unit_count,
    const std::vector<CrossFieldMatch>& cross,
    const std::map<policy::DataClass, policy::Action>& actions);

// Applies the policy's rewrites to one scan unit in place and returns its rewritten text. A match
// that crosses a part boundary (data split across content parts) rewrites the unit as one text
// placed in its first part, the other parts left empty; otherwise each part is rewritten alone.
// `cuts` (from CrossFieldCuts) are applied with the matches; a match overlapping a cut is removed
// with it.
std::string RewriteUnit(policy::Pseudonymizer& pseudonymizer, ScanUnit& unit,
                        const std::string& joined, const std::vector<policy::Match>& matches,
                        const std::map<policy::DataClass, policy::Action>& actions,
                        const std::vector<UnitCut>& cuts = {});

// Log probabilities repeat the answer token by token (strings and raw bytes): a redaction of the
// content cannot follow them there, so while a rule acts on answers they are withheld.
void WithholdLogprobs(RequestState& st, json& choice);

// Post-processes a complete (non-streamed) response body in place.
void TransformResponse(RequestState& st, json& body);
// Re-writes one SSE data payload; returns the payload to send or "" to drop it.
std::string TransformChunk(RequestState& st, const std::string& payload);

}  // namespace airlock::server::internal
