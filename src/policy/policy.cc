#include "policy/policy.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>

#include "core/file.h"
#include "core/spki_pin.h"

namespace airlock::policy {
namespace {

constexpr std::size_t kMaxPolicyBytes = std::size_t{4} << 20;

Status Bad(std::string_view origin, const std::string& where, const std::string& what) {
  return InvalidArgument("policy: " + what + " at " + std::string(origin) + ":" + where);
}

std::string Where(const toml::node& node, const std::string& key) {
  return std::to_string(node.source().begin.line) + " (" + key + ")";
}

// Known keys per table: anything else is an error, so typos do not silently weaken a policy.
Status CheckKeys(const toml::table& t, std::initializer_list<std::string_view> known,
                 std::string_view origin, const std::string& table_name) {
  for (const auto& [k, v] : t) {
    if (std::find(known.begin(), known.end(), k.str()) == known.end())
      return Bad(origin, Where(v, table_name + "." + std::string(k.str())),
                 "unknown key '" + std::string(k.str()) + "'");
  }
  return Status::Ok();
}

Result<std::string> GetString(const toml::table& t, std::string_view key, std::string_view origin,
                              const std::string& ctx, bool required, std::string def = "") {
  const toml::node* n = t.get(key);
  if (!n) {
    if (required) return Bad(origin, ctx, "missing key '" + std::string(key) + "'");
    return def;
  }
  if (auto v = n->value<std::string>()) return *v;
  return Bad(origin, Where(*n, ctx + "." + std::string(key)), "expected a string");
}

Result<std::int64_t> GetInt(const toml::table& t, std::string_view key, std::string_view origin,
                            const std::string& ctx, std::int64_t def, std::int64_t lo,
                            std::int64_t hi) {
  const toml::node* n = t.get(key);
  if (!n) return def;
  auto v = n->value_exact<std::int64_t>();
  if (!v) return Bad(origin, Where(*n, ctx + "." + std::string(key)), "expected an integer");
  if (*v < lo || *v > hi)
    return Bad(origin, Where(*n, ctx + "." + std::string(key)),
               "value out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return *v;
}

// Reads the integer `key` into `*out`, which keeps its value (the default) when the key is absent.
// The range is given in ints, so the checked value always fits.
Status GetIntInto(const toml::table& t, std::string_view key, std::string_view origin,
                  const std::string& ctx, int lo, int hi, int* out) {
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t v, GetInt(t, key, origin, ctx, *out, lo, hi));
  *out = static_cast<int>(v);
  return Status::Ok();
}

Result<bool> GetBool(const toml::table& t, std::string_view key, std::string_view origin,
                     const std::string& ctx, bool def) {
  const toml::node* n = t.get(key);
  if (!n) return def;
  if (auto v = n->value_exact<bool>()) return *v;
  return Bad(origin, Where(*n, ctx + "." + std::string(key)), "expected true or false");
}

Result<std::vector<std::string>> GetStrings(const toml::table& t, std::string_view key,
                                            std::string_view origin, const std::string& ctx) {
  std::vector<std::string> out;
  const toml::node* n = t.get(key);
  if (!n) return out;
  const toml::array* arr = n->as_array();
  if (!arr) return Bad(origin, Where(*n, ctx + "." + std::string(key)), "expected an array");
  for (const toml::node& e : *arr) {
    auto v = e.value<std::string>();
    if (!v) return Bad(origin, Where(e, ctx + "." + std::string(key)), "expected strings");
    out.push_back(*v);
  }
  return out;
}

// Expands class names; "personal" means every personal-data class, "all" every detectable class.
Result<std::vector<DataClass>> ParseClasses(const std::vector<std::string>& names,
                                            std::string_view origin, const std::string& ctx) {
  std::vector<DataClass> out;
  auto add = [&out](DataClass c) {
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  };
  for (const std::string& name : names) {
    if (name == "personal" || name == "all") {
      for (int i = 0; i < kDataClassCount; ++i) {
        auto c = static_cast<DataClass>(i);
        if (c == DataClass::kReasoning) continue;
        if (name == "all" || IsPersonalData(c)) add(c);
      }
      continue;
    }
    auto c = ParseDataClass(name);
    if (!c) return Bad(origin, ctx, "unknown data class '" + name + "'");
    add(*c);
  }
  return out;
}

std::string Upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return s;
}

// The TLS identity keys of an upstream: pins well-formed, client certificate and key together,
// and only on an https base_url (over plain HTTP none of them could be checked: fail closed).
Status ParseUpstreamIdentity(const toml::table& t, std::string_view origin, const std::string& ctx,
                             Upstream& u) {
  AIRLOCK_ASSIGN_OR_RETURN(u.spki_sha256, GetStrings(t, "spki_sha256", origin, ctx));
  if (const toml::node* n = t.get("spki_sha256"); n && u.spki_sha256.empty())
    return Bad(origin, Where(*n, ctx + ".spki_sha256"),
               "an empty pin list pins nothing: remove the key or list the pins");
  for (std::size_t i = 0; i < u.spki_sha256.size(); ++i)
    if (Status s = core::ValidateSpkiPin(u.spki_sha256[i]); !s.ok())
      return Bad(origin, ctx + ".spki_sha256[" + std::to_string(i) + "]",
                 s.message() + " (got '" + u.spki_sha256[i].substr(0, 60) + "')");
  AIRLOCK_ASSIGN_OR_RETURN(u.subject, GetString(t, "subject", origin, ctx, false));
  AIRLOCK_ASSIGN_OR_RETURN(u.organization, GetString(t, "organization", origin, ctx, false));
  AIRLOCK_ASSIGN_OR_RETURN(u.client_cert, GetString(t, "client_cert", origin, ctx, false));
  AIRLOCK_ASSIGN_OR_RETURN(u.client_key, GetString(t, "client_key", origin, ctx, false));
  for (const char* key : {"subject", "organization", "client_cert", "client_key", "ca_file"})
    if (const toml::node* n = t.get(key); n && n->value<std::string>()->empty())
      return Bad(origin, Where(*n, ctx + "." + key), "must not be empty (remove the key instead)");
  if (u.client_cert.empty() != u.client_key.empty())
    return Bad(origin, ctx, "client_cert and client_key go together (mTLS)");
  bool identity = !u.ca_file.empty() || !u.spki_sha256.empty() || !u.subject.empty() ||
                  !u.organization.empty() || !u.client_cert.empty();
  if (identity && u.base_url.rfind("https://", 0) != 0)
    return Bad(origin, ctx,
               "ca_file, spki_sha256, subject, organization and client_cert need an https:// "
               "base_url (plain HTTP has no identity to check)");
  return Status::Ok();
}

Result<Policy> Build(const toml::table& root, std::string_view origin) {
  Policy p;
  AIRLOCK_TRY(CheckKeys(
      root,
      {"upstreams", "local_models", "detectors", "rules", "reasoning", "audit", "server", "store"},
      origin, "top level"));
  if (const toml::node* n = root.get("upstreams")) {
    const toml::array* arr = n->as_array();
    if (!arr) return Bad(origin, Where(*n, "upstreams"), "expected [[upstreams]] tables");
    int i = 0;
    for (const toml::node& e : *arr) {
      std::string ctx = "upstreams[" + std::to_string(i++) + "]";
      const toml::table* t = e.as_table();
      if (!t) return Bad(origin, Where(e, ctx), "expected a table");
      AIRLOCK_TRY(CheckKeys(*t,
                            {"name", "base_url", "api_key_env", "jurisdiction",
                             "allowed_data_classes", "models", "timeout_s", "ca_file",
                             "spki_sha256", "subject", "organization", "client_cert", "client_key"},
                            origin, ctx));
      Upstream u;
      AIRLOCK_ASSIGN_OR_RETURN(u.name, GetString(*t, "name", origin, ctx, true));
      AIRLOCK_ASSIGN_OR_RETURN(u.base_url, GetString(*t, "base_url", origin, ctx, true));
      AIRLOCK_ASSIGN_OR_RETURN(u.api_key_env, GetString(*t, "api_key_env", origin, ctx, false));
      AIRLOCK_ASSIGN_OR_RETURN(u.ca_file, GetString(*t, "ca_file", origin, ctx, false));
      std::string j;
      AIRLOCK_ASSIGN_OR_RETURN(j, GetString(*t, "jurisdiction", origin, ctx, true));
      u.jurisdiction = Upper(j);
      if (u.jurisdiction.empty() || u.jurisdiction == "LOCAL")
        return Bad(origin, ctx, "jurisdiction must be a country/region code");
      if (auto url = ParseBaseUrl(u.base_url); !url.ok())
        return Bad(origin, ctx, "base_url: " + url.error().message());
      std::vector<std::string> classes;
      AIRLOCK_ASSIGN_OR_RETURN(classes, GetStrings(*t, "allowed_data_classes", origin, ctx));
      AIRLOCK_ASSIGN_OR_RETURN(u.allowed_data_classes, ParseClasses(classes, origin, ctx));
      AIRLOCK_ASSIGN_OR_RETURN(u.models, GetStrings(*t, "models", origin, ctx));
      if (u.models.empty()) return Bad(origin, ctx, "an upstream needs at least one model");
      AIRLOCK_TRY(GetIntInto(*t, "timeout_s", origin, ctx, 1, 3600, &u.timeout_s));
      AIRLOCK_TRY(ParseUpstreamIdentity(*t, origin, ctx, u));
      for (const Upstream& other : p.upstreams)
        if (other.name == u.name) return Bad(origin, ctx, "duplicate upstream '" + u.name + "'");
      p.upstreams.push_back(std::move(u));
    }
  }
  if (const toml::node* n = root.get("local_models")) {
    const toml::array* arr = n->as_array();
    if (!arr) return Bad(origin, Where(*n, "local_models"), "expected [[local_models]] tables");
    int i = 0;
    for (const toml::node& e : *arr) {
      std::string ctx = "local_models[" + std::to_string(i++) + "]";
      const toml::table* t = e.as_table();
      if (!t) return Bad(origin, Where(e, ctx), "expected a table");
      AIRLOCK_TRY(CheckKeys(*t, {"name", "path", "require_signature"}, origin, ctx));
      LocalModel m;
      AIRLOCK_ASSIGN_OR_RETURN(m.name, GetString(*t, "name", origin, ctx, true));
      AIRLOCK_ASSIGN_OR_RETURN(m.path, GetString(*t, "path", origin, ctx, true));
      AIRLOCK_ASSIGN_OR_RETURN(m.require_signature,
                               GetString(*t, "require_signature", origin, ctx, false));
      p.local_models.push_back(std::move(m));
    }
  }
  // A model name must resolve to exactly one place.
  for (const Upstream& u : p.upstreams)
    for (const std::string& m : u.models) {
      int count = 0;
      for (const Upstream& o : p.upstreams)
        count += static_cast<int>(std::count(o.models.begin(), o.models.end(), m));
      if (count > 1 || p.FindLocalModel(m))
        return Bad(origin, "upstreams", "model '" + m + "' is routed to more than one place");
    }
  if (const toml::node* n = root.get("detectors")) {
    const toml::table* t = n->as_table();
    if (!t) return Bad(origin, Where(*n, "detectors"), "expected a [detectors] table");
    AIRLOCK_TRY(CheckKeys(*t, {"enabled"}, origin, "detectors"));
    std::vector<std::string> names;
    AIRLOCK_ASSIGN_OR_RETURN(names, GetStrings(*t, "enabled", origin, "detectors"));
    AIRLOCK_ASSIGN_OR_RETURN(p.detectors, ParseClasses(names, origin, "detectors.enabled"));
  }
  if (const toml::node* n = root.get("rules")) {
    const toml::array* arr = n->as_array();
    if (!arr) return Bad(origin, Where(*n, "rules"), "expected [[rules]] tables");
    int i = 0;
    for (const toml::node& e : *arr) {
      std::string ctx = "rules[" + std::to_string(i++) + "]";
      const toml::table* t = e.as_table();
      if (!t) return Bad(origin, Where(e, ctx), "expected a table");
      AIRLOCK_TRY(CheckKeys(*t, {"data_classes", "action", "allow_jurisdictions", "direction"},
                            origin, ctx));
      Rule r;
      std::vector<std::string> classes;
      AIRLOCK_ASSIGN_OR_RETURN(classes, GetStrings(*t, "data_classes", origin, ctx));
      if (classes.empty()) return Bad(origin, ctx, "a rule needs data_classes");
      AIRLOCK_ASSIGN_OR_RETURN(r.data_classes, ParseClasses(classes, origin, ctx));
      std::string action;
      AIRLOCK_ASSIGN_OR_RETURN(action, GetString(*t, "action", origin, ctx, true));
      if (action == "allow")
        r.action = Action::kAllow;
      else if (action == "redact")
        r.action = Action::kRedact;
      else if (action == "pseudonymize")
        r.action = Action::kPseudonymize;
      else if (action == "block")
        r.action = Action::kBlock;
      else if (action == "restrict")
        r.action = Action::kRestrict;
      else
        return Bad(origin, ctx, "unknown action '" + action + "'");
      std::vector<std::string> js;
      AIRLOCK_ASSIGN_OR_RETURN(js, GetStrings(*t, "allow_jurisdictions", origin, ctx));
      for (std::string& j : js) r.allow_jurisdictions.push_back(j == "local" ? j : Upper(j));
      if (r.action == Action::kRestrict && r.allow_jurisdictions.empty())
        return Bad(origin, ctx, "action 'restrict' needs allow_jurisdictions");
      std::string direction;
      AIRLOCK_ASSIGN_OR_RETURN(direction, GetString(*t, "direction", origin, ctx, false, "both"));
      if (direction == "both")
        r.direction = Direction::kBoth;
      else if (direction == "request")
        r.direction = Direction::kRequest;
      else if (direction == "response")
        r.direction = Direction::kResponse;
      else
        return Bad(origin, ctx, "direction must be 'request', 'response' or 'both'");
      p.rules.push_back(std::move(r));
    }
  }
  if (const toml::node* n = root.get("reasoning")) {
    const toml::table* t = n->as_table();
    if (!t) return Bad(origin, Where(*n, "reasoning"), "expected a [reasoning] table");
    AIRLOCK_TRY(CheckKeys(*t, {"action"}, origin, "reasoning"));
    std::string a;
    AIRLOCK_ASSIGN_OR_RETURN(a, GetString(*t, "action", origin, "reasoning", false, "pass"));
    if (a == "pass")
      p.reasoning = ReasoningAction::kPass;
    else if (a == "strip")
      p.reasoning = ReasoningAction::kStrip;
    else if (a == "log")
      p.reasoning = ReasoningAction::kLog;
    else
      return Bad(origin, "reasoning", "unknown reasoning action '" + a + "'");
  }
  if (const toml::node* n = root.get("audit")) {
    const toml::table* t = n->as_table();
    if (!t) return Bad(origin, Where(*n, "audit"), "expected an [audit] table");
    AIRLOCK_TRY(CheckKeys(
        *t,
        {"path", "store_text", "signing_key", "checkpoint_every", "fsync", "origin", "public_key",
         "anchor_files", "syslog", "witnesses", "witness_keys", "publish_to_store"},
        origin, "audit"));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.origin, GetString(*t, "origin", origin, "audit", false));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.public_key,
                             GetString(*t, "public_key", origin, "audit", false));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.anchor_files, GetStrings(*t, "anchor_files", origin, "audit"));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.syslog, GetBool(*t, "syslog", origin, "audit", false));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.witnesses, GetStrings(*t, "witnesses", origin, "audit"));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.witness_keys, GetStrings(*t, "witness_keys", origin, "audit"));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.fsync, GetBool(*t, "fsync", origin, "audit", false));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.publish_to_store,
                             GetBool(*t, "publish_to_store", origin, "audit", true));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.path,
                             GetString(*t, "path", origin, "audit", false, p.audit.path));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.store_text, GetBool(*t, "store_text", origin, "audit", false));
    AIRLOCK_ASSIGN_OR_RETURN(p.audit.signing_key,
                             GetString(*t, "signing_key", origin, "audit", false));
    AIRLOCK_TRY(
        GetIntInto(*t, "checkpoint_every", origin, "audit", 1, 1000000, &p.audit.checkpoint_every));
  }
  if (const toml::node* n = root.get("store")) {
    const toml::table* t = n->as_table();
    if (!t) return Bad(origin, Where(*n, "store"), "expected a [store] table");
    AIRLOCK_TRY(CheckKeys(*t, {"url", "password_file", "password_env"}, origin, "store"));
    AIRLOCK_ASSIGN_OR_RETURN(p.store.url, GetString(*t, "url", origin, "store", false));
    AIRLOCK_ASSIGN_OR_RETURN(p.store.password_file,
                             GetString(*t, "password_file", origin, "store", false));
    AIRLOCK_ASSIGN_OR_RETURN(p.store.password_env,
                             GetString(*t, "password_env", origin, "store", false));
  }
  if (const toml::node* n = root.get("server")) {
    const toml::table* t = n->as_table();
    if (!t) return Bad(origin, Where(*n, "server"), "expected a [server] table");
    AIRLOCK_TRY(CheckKeys(*t,
                          {"keys_db",
                           "max_body_bytes",
                           "read_timeout_s",
                           "write_timeout_s",
                           "request_timeout_s",
                           "threads",
                           "default_max_tokens",
                           "public_metrics",
                           "header_timeout_s",
                           "keep_alive_timeout_s",
                           "keep_alive_max_requests",
                           "max_connections",
                           "max_connections_per_address",
                           "tls_cert",
                           "tls_key",
                           "drain_timeout_s",
                           "require_signature",
                           "max_completions_per_address",
                           "max_completions_per_key",
                           "ipv6_client_prefix"},
                          origin, "server"));
    ServerSettings& s = p.server;
    AIRLOCK_ASSIGN_OR_RETURN(s.keys_db,
                             GetString(*t, "keys_db", origin, "server", false, s.keys_db));
    std::int64_t v;
    AIRLOCK_ASSIGN_OR_RETURN(v,
                             GetInt(*t, "max_body_bytes", origin, "server",
                                    static_cast<std::int64_t>(s.max_body_bytes), 1024, 64LL << 20));
    s.max_body_bytes = static_cast<std::size_t>(v);
    AIRLOCK_TRY(GetIntInto(*t, "read_timeout_s", origin, "server", 1, 600, &s.read_timeout_s));
    AIRLOCK_TRY(GetIntInto(*t, "write_timeout_s", origin, "server", 1, 600, &s.write_timeout_s));
    AIRLOCK_TRY(
        GetIntInto(*t, "request_timeout_s", origin, "server", 1, 86400, &s.request_timeout_s));
    AIRLOCK_TRY(GetIntInto(*t, "threads", origin, "server", 2, 1024, &s.threads));
    AIRLOCK_TRY(
        GetIntInto(*t, "default_max_tokens", origin, "server", 1, 1 << 20, &s.default_max_tokens));
    AIRLOCK_ASSIGN_OR_RETURN(s.public_metrics,
                             GetBool(*t, "public_metrics", origin, "server", s.public_metrics));
    AIRLOCK_TRY(GetIntInto(*t, "header_timeout_s", origin, "server", 1, 600, &s.header_timeout_s));
    AIRLOCK_TRY(
        GetIntInto(*t, "keep_alive_timeout_s", origin, "server", 1, 600, &s.keep_alive_timeout_s));
    AIRLOCK_TRY(GetIntInto(*t, "keep_alive_max_requests", origin, "server", 1, 1000000,
                           &s.keep_alive_max_requests));
    AIRLOCK_TRY(
        GetIntInto(*t, "max_connections", origin, "server", 1, 1000000, &s.max_connections));
    AIRLOCK_TRY(GetIntInto(*t, "max_connections_per_address", origin, "server", 1, 1000000,
                           &s.max_connections_per_address));
    AIRLOCK_TRY(GetIntInto(*t, "max_completions_per_address", origin, "server", 0, 1023,
                           &s.max_completions_per_address));
    AIRLOCK_TRY(GetIntInto(*t, "max_completions_per_key", origin, "server", 0, 1023,
                           &s.max_completions_per_key));
    // One client holding every worker is what these caps prevent.
    if (s.max_completions_per_address >= s.threads)
      return Bad(
          origin, Where(*n, "server"),
          "max_completions_per_address must be below threads (" + std::to_string(s.threads) + ")");
    if (s.max_completions_per_key >= s.threads)
      return Bad(
          origin, Where(*n, "server"),
          "max_completions_per_key must be below threads (" + std::to_string(s.threads) + ")");
    AIRLOCK_TRY(
        GetIntInto(*t, "ipv6_client_prefix", origin, "server", 1, 128, &s.ipv6_client_prefix));
    AIRLOCK_ASSIGN_OR_RETURN(s.tls_cert,
                             GetString(*t, "tls_cert", origin, "server", false, s.tls_cert));
    AIRLOCK_ASSIGN_OR_RETURN(s.tls_key,
                             GetString(*t, "tls_key", origin, "server", false, s.tls_key));
    if (s.tls_cert.empty() != s.tls_key.empty())
      return Bad(origin, Where(*n, "server"), "tls_cert and tls_key must be set together");
    AIRLOCK_TRY(GetIntInto(*t, "drain_timeout_s", origin, "server", 0, 3600, &s.drain_timeout_s));
    AIRLOCK_ASSIGN_OR_RETURN(s.require_signature,
                             GetString(*t, "require_signature", origin, "server", false));
  }
  return p;
}

}  // namespace

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kAllow:
      return "allow";
    case Action::kRedact:
      return "redact";
    case Action::kPseudonymize:
      return "pseudonymize";
    case Action::kBlock:
      return "block";
    case Action::kRestrict:
      return "restrict";
  }
  return "unknown";
}

std::string_view ReasoningActionName(ReasoningAction a) {
  switch (a) {
    case ReasoningAction::kPass:
      return "pass";
    case ReasoningAction::kStrip:
      return "strip";
    case ReasoningAction::kLog:
      return "log";
  }
  return "unknown";
}

const Upstream* Policy::FindUpstreamForModel(std::string_view model) const {
  for (const Upstream& u : upstreams)
    if (std::find(u.models.begin(), u.models.end(), model) != u.models.end()) return &u;
  return nullptr;
}

const LocalModel* Policy::FindLocalModel(std::string_view model) const {
  for (const LocalModel& m : local_models)
    if (m.name == model) return &m;
  return nullptr;
}

Result<BaseUrl> ParseBaseUrl(std::string_view url) {
  BaseUrl out;
  std::string_view rest;
  if (url.rfind("http://", 0) == 0) {
    out.scheme = "http";
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    out.scheme = "https";
    rest = url.substr(8);
  } else {
    return InvalidArgument("must start with http:// or https://");
  }
  for (char c : url)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return InvalidArgument("contains a space or control character");
  if (url.find('#') != std::string_view::npos) return InvalidArgument("has a fragment ('#')");
  if (url.find('?') != std::string_view::npos) return InvalidArgument("has a query ('?')");
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos)
    return InvalidArgument("has user information ('user@'); put credentials in api_key_env");
  std::string_view port_text;
  if (!authority.empty() && authority[0] == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return InvalidArgument("has an unterminated IPv6 host");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return InvalidArgument("has a malformed host");
      port_text = after.substr(1);
      if (port_text.empty()) return InvalidArgument("has an empty port");
    }
    for (char c : out.host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return InvalidArgument("has a malformed IPv6 host");
  } else {
    std::size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return InvalidArgument("has an empty port");
    }
    for (char c : out.host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
        return InvalidArgument("has a malformed host '" + out.host + "'");
  }
  if (out.host.empty()) return InvalidArgument("has no host");
  if (port_text.empty()) {
    out.port = out.scheme == "https" ? 443 : 80;
  } else {
    if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(),
                                             [](char c) { return c >= '0' && c <= '9'; }))
      return InvalidArgument("has a port that is not a number from 1 to 65535");
    out.port = std::stoi(std::string(port_text));
    if (out.port < 1 || out.port > 65535)
      return InvalidArgument("has a port that is not a number from 1 to 65535");
  }
  if (path.find('%') != std::string_view::npos || path.find('\\') != std::string_view::npos)
    return InvalidArgument("has percent-encoding or a backslash in its path");
  std::size_t pos = 0;
  while (pos < path.size()) {
    std::size_t next = path.find('/', pos + 1);
    std::string_view segment = path.substr(
        pos + 1, next == std::string_view::npos ? std::string_view::npos : next - pos - 1);
    if (segment == "." || segment == "..") return InvalidArgument("has a '.' or '..' path segment");
    if (next == std::string_view::npos) break;
    pos = next;
  }
  out.path = std::string(path);
  while (!out.path.empty() && out.path.back() == '/') out.path.pop_back();
  return out;
}

Result<Policy> ParsePolicy(std::string_view toml_text, std::string_view origin) {
  try {
    toml::table root = toml::parse(toml_text, origin);
    return Build(root, origin);
  } catch (const toml::parse_error& e) {
    return InvalidArgument("policy: TOML syntax error at " + std::string(origin) + ":" +
                           std::to_string(e.source().begin.line) + ": " +
                           std::string(e.description()));
  } catch (const std::exception& e) {
    return InvalidArgument("policy: cannot parse at " + std::string(origin) + ": " + e.what());
  }
}

Result<Policy> LoadPolicy(const std::string& path) {
  // Bounded before it is read: a policy named as a pipe or a huge file never fills memory.
  auto text = core::TextInput::Open(path, kMaxPolicyBytes);
  if (!text.has_value()) {
    switch (text.error().code()) {
      case StatusCode::kNotFound:
        return NotFound("policy: cannot open at " + path + ": no such readable file");
      case StatusCode::kLimitExceeded:
        return InvalidArgument("policy: file too large at " + path + " (more than 4 MiB)");
      default:
        return IoError("policy: read failed at " + path + ": " + text.error().message());
    }
  }
  return ParsePolicy(text->text(), path);
}

Verdict Decide(const Policy& policy, const std::vector<DataClass>& found, const Target& target) {
  Verdict v;
  for (DataClass c : found) {
    if (v.actions.count(c)) continue;
    const Rule* rule = nullptr;
    std::size_t rule_index = 0;
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
      if (policy.rules[i].direction == Direction::kResponse) continue;
      const auto& classes = policy.rules[i].data_classes;
      if (std::find(classes.begin(), classes.end(), c) != classes.end()) {
        rule = &policy.rules[i];
        rule_index = i;
        break;
      }
    }
    Action a = rule ? rule->action : Action::kAllow;
    std::string name(DataClassName(c));
    std::string rule_ref = rule ? "rules[" + std::to_string(rule_index) + "]" : "default";
    if (a == Action::kBlock) {
      v.blocked = true;
      v.reason = "data class '" + name + "' is blocked by " + rule_ref;
      return v;
    }
    if (a == Action::kRedact || a == Action::kPseudonymize) {
      v.actions[c] = a;
      continue;
    }
    if (a == Action::kRestrict) {
      const auto& allowed = rule->allow_jurisdictions;
      std::string where = target.local ? "local" : target.upstream->jurisdiction;
      if (std::find(allowed.begin(), allowed.end(), where) == allowed.end()) {
        v.blocked = true;
        v.reason = "data class '" + name + "' may not go to jurisdiction '" + where + "' (" +
                   rule_ref + ")";
        return v;
      }
    }
    // Sent in clear: an upstream must explicitly accept the class (deny by default).
    if (!target.local && target.upstream) {
      const auto& ok = target.upstream->allowed_data_classes;
      if (std::find(ok.begin(), ok.end(), c) == ok.end()) {
        v.blocked = true;
        v.reason = "upstream '" + target.upstream->name + "' does not accept data class '" + name +
                   "' in clear";
        return v;
      }
    }
    v.actions[c] = Action::kAllow;
  }
  return v;
}

Verdict DecideResponse(const Policy& policy, const std::vector<DataClass>& found) {
  Verdict v;
  for (DataClass c : found) {
    if (v.actions.count(c)) continue;
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
      const Rule& rule = policy.rules[i];
      if (rule.direction == Direction::kRequest) continue;
      if (std::find(rule.data_classes.begin(), rule.data_classes.end(), c) ==
          rule.data_classes.end())
        continue;
      if (rule.action == Action::kBlock) {
        v.blocked = true;
        v.reason = "data class '" + std::string(DataClassName(c)) +
                   "' in the response is blocked by rules[" + std::to_string(i) + "]";
        return v;
      }
      if (rule.action == Action::kRedact || rule.action == Action::kPseudonymize)
        v.actions[c] = Action::kRedact;
      break;
    }
    if (!v.actions.count(c)) v.actions[c] = Action::kAllow;
  }
  return v;
}

}  // namespace airlock::policy
