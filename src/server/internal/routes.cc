// Routes and their common steps: authentication (and the audit of failed attempts), the loop
// check, request parsing, the request-side policy (detect, decide, rewrite), admission against
// budgets and rate limits, routing to a local model or an upstream, and settlement (one audit
// record per authenticated request, the reservation reconciled).
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <set>

#include "core/hash.h"
#include "server/internal/gateway_impl.h"
#include "server/internal/json_limits.h"
#include "server/internal/local_params.h"
#include "server/internal/request.h"
#include "server/internal/request_reasoning.h"

namespace airlock::server {

using namespace internal;

void Gateway::Impl::Finish(RequestState& st, int status, std::int64_t actual_tokens,
                           const std::string& response_text) {
  if (st.settled) return;
  st.settled = true;
  if (st.reservation) {
    keys->Reconcile(*st.reservation, actual_tokens);
    reserved_tokens -= st.reservation->tokens;
  }
  audit::AuditRecord r;
  r.request_id = st.request_id;
  r.endpoint = st.endpoint;
  r.key_id = st.anonymous ? "anonymous" : st.key.id;
  r.model = st.model;
  r.upstream = st.upstream_name;
  r.jurisdiction = st.jurisdiction;
  r.upstream_cert_sha256 = st.upstream_cert_sha256;
  r.upstream_spki_sha256 = st.upstream_spki_sha256;
  r.status = status;
  r.data_classes = st.data_classes;
  if (st.produced_reasoning &&
      std::find(r.data_classes.begin(), r.data_classes.end(), "reasoning") == r.data_classes.end())
    r.data_classes.push_back("reasoning");
  r.actions = st.actions;
  r.actions.insert(r.actions.end(), st.response_actions.begin(), st.response_actions.end());
  if (st.response_blocked) r.actions.push_back("response block: " + st.response_block_reason);
  r.prompt_tokens = std::max<std::int64_t>(st.prompt_tokens, 0);
  r.completion_tokens = std::max<std::int64_t>(st.completion_tokens, 0);
  r.prompt_sha256 = st.prompt_sha256;
  r.response_sha256 = core::ToHex(core::Sha256Of(response_text));
  if (policy().audit.store_text) {
    r.prompt_text = st.forwarded_prompt;
    // Reasoning the client saw (pass) is stored only when the policy logs reasoning.
    r.response_text = st.produced_reasoning && policy().reasoning != policy::ReasoningAction::kLog
                          ? internal::WithoutThinkBlocks(response_text, st.think_markers)
                          : response_text;
  }
  if (policy().reasoning == policy::ReasoningAction::kLog && !st.reasoning_text.empty())
    r.reasoning_text = st.reasoning_text;
  if (auto s = audit->Append(r); !s.ok())
    std::fprintf(stderr, "airlock serve: audit append failed: %s\n", s.error().message().c_str());
  metrics.Tokens(r.prompt_tokens, r.completion_tokens);
  metrics.Observe(st.endpoint, status,
                  std::chrono::duration<double>(Clock::now() - st.start).count());
}

void Gateway::Impl::Fail(RequestState& st, HttpResponse& res, int status,
                         const std::string& message, const std::string& code,
                         const std::string& param) {
  SetError(res, status, message, code, param);
  if (status == 403 || status == 429) st.actions.push_back(code + ": " + message);
  Finish(st, status, 0, "");
}

namespace {

// The gateway ids of an X-Airlock-Hops value, in order: each 1 to 32 lower-case hex digits (ours
// are 16), separated by commas with optional blanks. nullopt for anything else, so that the only
// client header a gateway forwards upstream carries nothing but ids (it is not scanned).
std::optional<std::vector<std::string>> ParseHops(std::string_view value) {
  std::vector<std::string> ids;
  std::size_t pos = 0;
  while (true) {
    std::size_t comma = value.find(',', pos);
    std::string_view id =
        value.substr(pos, comma == std::string_view::npos ? value.npos : comma - pos);
    while (!id.empty() && (id.front() == ' ' || id.front() == '\t')) id.remove_prefix(1);
    while (!id.empty() && (id.back() == ' ' || id.back() == '\t')) id.remove_suffix(1);
    if (id.empty() || id.size() > 32) return std::nullopt;
    for (char c : id)
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
    ids.emplace_back(id);
    if (ids.size() > 256) return std::nullopt;  // far past kMaxHops: not worth parsing
    if (comma == std::string_view::npos) return ids;
    pos = comma + 1;
  }
}

}  // namespace

bool Gateway::Impl::RefuseLoop(const HttpRequest& req, HttpResponse& res, std::string* hops_out) {
  hops_out->clear();
  const std::size_t headers = req.get_header_value_count(kHopHeader);
  if (headers == 0) return false;
  auto ids = headers == 1 ? ParseHops(req.get_header_value(kHopHeader)) : std::nullopt;
  if (!ids) {
    SetError(res, 400,
             std::string(kHopHeader) +
                 " must appear once, as a list of gateway ids (lower-case hex, "
                 "comma-separated).",
             "invalid_request_error");
    AuditAuthFailure(req, 400, "bad_hop_header");
    return true;
  }
  const bool own = std::find(ids->begin(), ids->end(), instance_id) != ids->end();
  if (!own && ids->size() < kMaxHops) {
    for (const std::string& id : *ids) *hops_out += (hops_out->empty() ? "" : ",") + id;
    return false;
  }
  SetError(res, 508,
           own ? "Forwarding loop: this request already passed through this gateway."
               : "Forwarding loop: the request passed through too many gateways.",
           "forwarding_loop");
  AuditAuthFailure(req, 508, "forwarding_loop");
  return true;
}

void Gateway::Impl::AuditAuthFailure(const HttpRequest& req, int status,
                                     const std::string& reason) {
  // Aggregated per client bucket: an IPv6 host rotating through its /64 is one client here too.
  const std::string& client = req.client_bucket.empty() ? req.remote_addr : req.client_bucket;
  for (const auto& e : auth_failures.Record(client, req.path, status, reason, NowSeconds() / 60))
    AppendAuthFailure(e);
}

void Gateway::Impl::AppendAuthFailure(const internal::AuthFailureLog::Entry& e) {
  audit::AuditRecord r;
  r.request_id = "auth-" + RandomId();
  r.endpoint = e.endpoint;
  r.key_id = "unauthenticated";
  r.status = e.status;
  r.response_sha256 = core::ToHex(core::Sha256Of(std::string_view()));
  r.actions.push_back(e.summary ? "auth_failed: " + std::to_string(e.count) + " more in minute " +
                                      std::to_string(e.minute) + " (Unix minutes)"
                                : "auth_failed: " + e.reason);
  r.actions.push_back("client: " + e.address);
  if (auto s = audit->Append(r); !s.ok())
    std::fprintf(stderr, "airlock serve: audit append failed: %s\n", s.error().message().c_str());
}

bool Gateway::Impl::Authenticate(const HttpRequest& req, HttpResponse& res, RequestState& st) {
  std::string token;
  bool has_token = ParseBearer(req, &token);
  // Only a loopback gateway whose key store never held a key serves anonymous requests (whatever
  // bearer token a client sends, as llama-server does: OpenAI clients insist on sending one).
  // Once keys are required they stay required for the life of the process: revoking or expiring
  // the last key locks the gateway instead of opening it; a failing store requires one too.
  bool required = keys_required.load(std::memory_order_acquire);
  if (!required) {
    auto any = keys->HasAnyKey();
    required = !any.ok() || *any;
    if (any.ok() && *any) keys_required.store(true, std::memory_order_release);
  }
  if (!required) return true;
  if (!has_token) {
    SetError(res, 401,
             "You didn't provide an API key (Authorization: Bearer ...). Keys are created with "
             "`airlock keys create`.",
             "invalid_api_key");
    AuditAuthFailure(req, 401, "missing_api_key");
    return false;
  }
  auto k = keys->Authenticate(token);
  if (!k && k.error().code() == StatusCode::kUnavailable) {
    // Fail closed while the shared key store is down; the reason (with its URL) goes to the log.
    std::fprintf(stderr, "airlock serve: %s\n", k.error().message().c_str());
    SetError(res, 503, "The gateway's key store is unavailable; try again later.",
             "store_unavailable");
    AuditAuthFailure(req, 503, "store_unavailable");
    return false;
  }
  if (!k) {
    SetError(res, 401,
             "Incorrect API key provided. Keys are created with `airlock keys create` (and listed "
             "with `airlock keys list`).",
             "invalid_api_key");
    AuditAuthFailure(req, 401, "invalid_api_key");
    return false;
  }
  st.key = std::move(*k);
  st.anonymous = false;
  return true;
}

namespace {

// Percent-decoding of a path segment ("%2F" -> "/"); nullopt for a malformed escape or a NUL.
std::optional<std::string> PercentDecode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(in[i + 2])))
      return std::nullopt;
    char c = static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16));
    if (c == '\0') return std::nullopt;
    out += c;
    i += 2;
  }
  return out;
}

}  // namespace

// `created` of a model: a local model's file modification time, else (upstream models, a file
// that cannot be read) the time this gateway started.
std::int64_t Gateway::Impl::ModelCreated(const std::string& model) const {
  if (const policy::LocalModel* m = policy().FindLocalModel(model)) {
    struct stat sb;
    if (stat(m->path.c_str(), &sb) == 0) return static_cast<std::int64_t>(sb.st_mtime);
  }
  return started_at;
}

void Gateway::Impl::HandleModels(const HttpRequest& req, HttpResponse& res) {
  RequestState st;
  if (!Authenticate(req, res, st)) return;
  auto allowed = [&](const std::string& m) {
    return st.key.models.empty() ||
           std::find(st.key.models.begin(), st.key.models.end(), m) != st.key.models.end();
  };
  auto model_json = [&](const std::string& m, const std::string& owner) {
    return json{{"id", m}, {"object", "model"}, {"created", ModelCreated(m)}, {"owned_by", owner}};
  };
  static constexpr std::string_view kPrefix = "/v1/models/";
  if (req.path.size() > kPrefix.size() && req.path.rfind(kPrefix, 0) == 0) {
    // GET /v1/models/{id}: ids may hold '/' (sent raw or as %2F). A model this key may not use
    // does not exist for it.
    auto id = PercentDecode(std::string_view(req.path).substr(kPrefix.size()));
    if (id && allowed(*id)) {
      if (policy().FindLocalModel(*id))
        return res.set_content(model_json(*id, "local").dump(), "application/json");
      if (const policy::Upstream* u = policy().FindUpstreamForModel(*id))
        return res.set_content(model_json(*id, u->name).dump(), "application/json");
    }
    return SetError(res, 404,
                    "The model '" + (id ? *id : std::string("(malformed)")) + "' does not exist.",
                    "model_not_found", "model");
  }
  json data = json::array();
  for (const auto& m : policy().local_models)
    if (allowed(m.name)) data.push_back(model_json(m.name, "local"));
  for (const auto& u : policy().upstreams)
    for (const auto& m : u.models)
      if (allowed(m)) data.push_back(model_json(m, u.name));
  res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
}

void Gateway::Impl::HandleCompletion(const HttpRequest& req, HttpResponse& res, bool chat) {
  metrics.in_flight++;
  struct Dec {
    std::atomic<int>& v;
    ~Dec() { v--; }
  } dec{metrics.in_flight};
  auto st = std::make_shared<RequestState>();
  st->request_id = "req-" + RandomId();
  st->endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
  st->chat = chat;
  st->start = Clock::now();
  st->reasoning = policy().reasoning;
  st->policy = &policy();
  st->reasoning_withheld = internal::ReasoningRuleWithholds(policy());
  st->detectors = detectors.get();
  res.set_header("X-Request-Id", st->request_id);
  if (RefuseLoop(req, res, &st->incoming_hops)) {
    metrics.Observe(st->endpoint, res.status, 0);
    return;
  }
  if (!Authenticate(req, res, *st)) {
    metrics.Observe(st->endpoint, 401, 0);
    return;
  }
  // From here on the request is settled exactly once, whatever happens: a request that was
  // handed on is charged its whole reservation (the work it caused is unknown), others nothing.
  {
    std::lock_guard<std::mutex> lock(live_mu);
    ++live_requests;
  }
  st->on_release = [this] {
    std::lock_guard<std::mutex> lock(live_mu);
    --live_requests;
    live_cv.notify_all();
  };
  st->settle_unsettled = [this](RequestState& s) {
    Finish(s, 500, s.forwarded && s.reservation ? s.reservation->tokens : 0, s.ResponseText());
  };
  // One client (an address bucket or an API key) may hold only so many workers with completions
  // in flight; the place is held until the request state is gone (a stream written to the end).
  std::string bucket = req.client_bucket.empty() ? req.remote_addr : req.client_bucket;
  auto admission = completions->TryAcquire(bucket, st->anonymous ? "" : st->key.id);
  if (!admission.slot) {
    bool by_key = admission.refusal == CompletionLimiter::Refusal::kKey;
    res.set_header("Retry-After", "1");
    st->actions.push_back("client: " + bucket);
    return Fail(*st, res, 429,
                std::string("Too many concurrent completions from this ") +
                    (by_key ? "API key" : "client address") + " (at most " +
                    std::to_string(admission.limit) + " in flight); retry when one has finished.",
                "too_many_concurrent_requests");
  }
  st->on_release = [this, slot = std::move(admission.slot)] {
    std::lock_guard<std::mutex> lock(live_mu);
    --live_requests;
    live_cv.notify_all();
  };
  try {
    ProcessCompletion(st, req, res);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "airlock serve: %s: internal error: %s\n", st->request_id.c_str(),
                 e.what());
    if (!st->settled) Fail(*st, res, 500, "Internal error.", "internal_error");
  }
}

void Gateway::Impl::ProcessCompletion(const std::shared_ptr<RequestState>& st,
                                      const HttpRequest& req, HttpResponse& res) {
  const bool chat = st->chat;
  auto parsed = ParseBoundedJson(req.body, policy().server.max_body_bytes);
  if (!parsed.ok() && parsed.error().code() == StatusCode::kLimitExceeded)
    return Fail(*st, res, 400,
                "The JSON body of your request is nested too deeply or too large (" +
                    parsed.error().message() + ").",
                "json_too_deep");
  if (!parsed.ok() || !parsed->is_object())
    return Fail(*st, res, 400,
                "We could not parse the JSON body of your request. The body must be a JSON object.",
                "invalid_json");
  json body = std::move(*parsed);
  internal::CompletionRequest request;
  if (auto model = body.find("model"); model != body.end() && model->is_string())
    st->model = model->get<std::string>();  // recorded even when another field is invalid
  if (auto invalid = internal::ParseCompletionRequest(body, chat, &request))
    return Fail(*st, res, 400, invalid->message, invalid->code, invalid->param);
  if (!st->key.models.empty() &&
      std::find(st->key.models.begin(), st->key.models.end(), st->model) == st->key.models.end())
    return Fail(*st, res, 403, "This API key may not use model '" + st->model + "'.",
                "model_not_allowed");
  const policy::LocalModel* local = policy().FindLocalModel(st->model);
  const policy::Upstream* upstream = local ? nullptr : policy().FindUpstreamForModel(st->model);
  if (!local && !upstream)
    return Fail(*st, res, 404, "The model '" + st->model + "' does not exist.", "model_not_found");
  st->upstream_name = local ? "local" : upstream->name;
  st->jurisdiction = local ? "local" : upstream->jurisdiction;
  const bool stream = request.stream;
  if (auto invalid = internal::ParseStreamOptions(body, stream, &st->client_include_usage))
    return Fail(*st, res, 400, invalid->message, invalid->code, invalid->param);

  policy::Target target;
  target.local = local != nullptr;
  target.upstream = upstream;
  // Reasoning the client sends back (earlier turns' reasoning_content, <think> blocks of
  // assistant content) is the data class "reasoning": decided before the scan, because removing
  // it changes what is scanned.
  const bool request_reasoning = chat && internal::RequestHasReasoning(body);
  bool reasoning_forwarded = false;
  if (request_reasoning) {
    st->data_classes.emplace_back("reasoning");
    policy::Verdict rv = policy::Decide(policy(), {policy::DataClass::kReasoning}, target);
    if (rv.blocked) {
      metrics.PolicyAction("block", "reasoning");
      st->actions.push_back("block: " + rv.reason);
      SetError(res, 403, "Request blocked by policy: " + rv.reason, "policy_violation");
      return Finish(*st, 403, 0, "");
    }
    policy::Action a = rv.actions[policy::DataClass::kReasoning];
    // A placeholder could never be restored into reasoning the model reads: pseudonymize removes
    // it like redact.
    if (a == policy::Action::kRedact || a == policy::Action::kPseudonymize) {
      internal::RemoveRequestReasoning(body);
      a = policy::Action::kRedact;
    } else {
      reasoning_forwarded = true;
    }
    st->actions.push_back("reasoning:" + std::string(policy::ActionName(a)));
    metrics.PolicyAction(std::string(policy::ActionName(a)), "reasoning");
  }

  // Every forwarded string of the request (rewritten in place after the policy decision).
  internal::ScanTargets targets;
  if (auto unscannable = internal::CollectScanUnits(body, chat, &targets))
    return Fail(*st, res, 400, unscannable->message, unscannable->code);
  std::vector<internal::ScanUnit>& units = targets.units;
  // An object key cannot be rewritten safely (renaming it may collide with another key or change
  // what the field means): one with any finding is refused, never forwarded. The data class goes
  // into the audit record, the key itself does not.
  std::size_t key_bytes = 0;
  for (const std::string& key : targets.keys) {
    key_bytes += key.size();
    std::vector<policy::Match> key_matches = detectors->Scan(key);
    if (key_matches.empty()) continue;
    std::set<std::string> classes;
    for (const auto& m : key_matches) classes.emplace(policy::DataClassName(m.data_class));
    for (const auto& c : classes) st->data_classes.push_back(c);
    st->actions.push_back("refused: sensitive data in a JSON object key");
    return Fail(*st, res, 400,
                "The request has sensitive data (" + *classes.begin() +
                    ") in a JSON object key, which the gateway cannot rewrite; move it into a "
                    "value.",
                "sensitive_data_in_key");
  }
  // Typed numbers are forwarded as numbers: one whose digits hold a finding is refused.
  for (const auto& [field, text] : targets.numbers) {
    std::vector<policy::Match> number_matches = detectors->Scan(text);
    if (number_matches.empty()) continue;
    std::string cls(policy::DataClassName(number_matches.front().data_class));
    st->data_classes.push_back(cls);
    st->actions.push_back("refused: sensitive data in numeric field " + field);
    return Fail(*st, res, 400,
                "The value of '" + field + "' looks like sensitive data (" + cls +
                    "); the gateway cannot rewrite a number.",
                "sensitive_data_in_number", field);
  }
  const std::size_t message_count = request.message_count;

  // Detect, decide, transform.
  core::Sha256 prompt_hash;
  std::vector<std::string> joined(units.size());
  std::vector<std::vector<policy::Match>> matches(units.size());
  std::set<policy::DataClass> found;
  std::size_t prompt_bytes = 0;
  for (std::size_t i = 0; i < units.size(); ++i) {
    joined[i] = units[i].Joined();
    prompt_hash.Update(joined[i]);
    prompt_hash.Update(std::string_view("\n", 1));
    matches[i] = detectors->Scan(joined[i]);
    for (const auto& m : matches[i]) found.insert(m.data_class);
  }
  // Data split between fields (two messages, a name and its content, tool call arguments).
  std::vector<internal::CrossFieldMatch> cross =
      internal::FindCrossFieldMatches(*detectors, units, joined, matches);
  for (const auto& c : cross) found.insert(c.data_class);
  st->prompt_sha256 = core::ToHex(prompt_hash.Finish());
  for (auto c : found) st->data_classes.emplace_back(policy::DataClassName(c));
  policy::Verdict verdict =
      policy::Decide(policy(), std::vector<policy::DataClass>(found.begin(), found.end()), target);
  if (verdict.blocked) {
    for (auto c : found) metrics.PolicyAction("block", std::string(policy::DataClassName(c)));
    st->actions.push_back("block: " + verdict.reason);
    SetError(res, 403, "Request blocked by policy: " + verdict.reason, "policy_violation");
    return Finish(*st, 403, 0, "");
  }
  for (const auto& [c, a] : verdict.actions) {
    std::string name(policy::DataClassName(c));
    st->actions.push_back(name + ":" + std::string(policy::ActionName(a)));
    metrics.PolicyAction(std::string(policy::ActionName(a)), name);
  }
  if (!cross.empty()) st->actions.push_back("data split across fields");
  std::vector<std::vector<internal::UnitCut>> cuts =
      internal::CrossFieldCuts(st->pseudonymizer, units.size(), cross, verdict.actions);
  // Forwarded reasoning is stored with the prompt text only when the policy logs reasoning.
  const bool hide_reasoning = policy().audit.store_text && reasoning_forwarded &&
                              policy().reasoning != policy::ReasoningAction::kLog;
  internal::ReasoningCarriers carriers;
  if (hide_reasoning) carriers = internal::FindReasoningCarriers(body);
  // A value joined with a whole field before it cannot be mapped back to a cut that spares
  // that field's text (see CrossFieldMatch::starts_with_a_whole_field): refused, fail closed.
  for (const internal::CrossFieldMatch& c : cross) {
    auto a = verdict.actions.find(c.data_class);
    if (!c.starts_with_a_whole_field || a == verdict.actions.end() ||
        (a->second != policy::Action::kRedact && a->second != policy::Action::kPseudonymize))
      continue;
    st->actions.push_back("block: data split across fields whose start cannot be placed");
    SetError(res, 403,
             "Request blocked by policy: " + std::string(policy::DataClassName(c.data_class)) +
                 " split across fields, joined with a whole field before it; the gateway cannot "
                 "tell which text to rewrite",
             "policy_violation");
    return Finish(*st, 403, 0, "");
  }
  // A number is forwarded as it is: one the policy would rewrite (part of a card split over an
  // enum of numbers) refuses the request.
  for (std::size_t i = 0; i < units.size(); ++i) {
    if (!units[i].fixed) continue;
    bool rewrites = !cuts[i].empty();
    for (const policy::Match& m : matches[i]) {
      auto a = verdict.actions.find(m.data_class);
      rewrites |= a != verdict.actions.end() && (a->second == policy::Action::kRedact ||
                                                 a->second == policy::Action::kPseudonymize);
    }
    if (!rewrites) continue;
    st->actions.push_back("refused: sensitive data in a number the gateway cannot rewrite");
    return Fail(*st, res, 400,
                "The request has sensitive data split across numbers (or in one), which the "
                "gateway cannot rewrite; send it as text.",
                "sensitive_data_in_number");
  }
  for (std::size_t i = 0; i < units.size(); ++i) {
    std::string rewritten =
        RewriteUnit(st->pseudonymizer, units[i], joined[i], matches[i], verdict.actions, cuts[i]);
    prompt_bytes += rewritten.size();
    if (!policy().audit.store_text) continue;
    const nlohmann::json* first = units[i].parts.empty() ? nullptr : units[i].parts.front();
    if (hide_reasoning && carriers.fields.count(first)) continue;
    if (hide_reasoning && carriers.assistant_text.count(first))
      rewritten = internal::WithoutThinkBlocks(rewritten);
    st->forwarded_prompt += rewritten + "\n";
  }

  // Admission: reserve the worst case. Prompt bytes bound BPE tokens; the completion is bounded by
  // the larger of max_tokens / max_completion_tokens for each of the n choices, and that bound is
  // written back into the request so the upstream or local model cannot produce more.
  const std::int64_t cap = request.CompletionCap(policy().server.default_max_tokens);
  st->completion_cap = cap;
  // best_of candidates are generated (and billed) server-side like n choices; both are 1..128.
  const std::int64_t choices = std::max(request.n, request.best_of);
  st->completion_reserved = cap * choices;
  if (request.max_completion_tokens) body["max_completion_tokens"] = cap;
  if (request.max_tokens || !request.max_completion_tokens) body["max_tokens"] = cap;
  // Keys are forwarded (and billed) too.
  st->prompt_estimate =
      static_cast<std::int64_t>(prompt_bytes + key_bytes + 8 * message_count + 16);
  st->prompt_text_bytes = static_cast<std::int64_t>(prompt_bytes);
  if (!st->anonymous) {
    auto r = keys->Reserve(st->key, st->prompt_estimate + st->completion_reserved);
    if (!r && r.error().code() == StatusCode::kUnavailable) {
      std::fprintf(stderr, "airlock serve: %s\n", r.error().message().c_str());
      return Fail(*st, res, 503, "The gateway's key store is unavailable; nothing was reserved.",
                  "store_unavailable");
    }
    if (!r && r.error().code() == StatusCode::kPermissionDenied)
      return Fail(*st, res, 401, "The API key was revoked.", "invalid_api_key");
    if (!r) {
      bool budget = r.error().message().find("budget") != std::string::npos;
      return Fail(*st, res, 429, r.error().message(),
                  budget ? "insufficient_quota" : "rate_limit_exceeded");
    }
    st->reservation = *r;
    reserved_tokens += r->tokens;
  }
  if (local) {
    auto it = options.local_backends.find(local->name);
    if (it == options.local_backends.end())
      return Fail(*st, res, 503,
                  "Local model '" + local->name +
                      "' is not loaded: local serving needs the inference engine.",
                  "model_not_loaded");
    return ServeLocal(st, std::move(body), stream, it->second, res);
  }
  ForwardUpstream(st, std::move(body), stream, *upstream, res);
}

}  // namespace airlock::server
