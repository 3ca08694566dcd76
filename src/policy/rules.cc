// Built-in detector rules. Secret formats follow the providers' published token prefixes; the
// rule families mirror gitleaks' (cloud, VCS, chat, payment, AI providers, private keys, JWT,
// generic assignments) and add the Chinese AI providers gitleaks lacks (DeepSeek, DashScope/Qwen,
// Moonshot, Zhipu).
#include "policy/internal/rules.h"

#include <array>

namespace airlock::policy::internal {
namespace {

using enum DataClass;
using V = Validator;

// Blanks around "=" in assignments are bounded ({0,32}, not *) so that every rule but a few
// secret formats has a bounded length, which the multi-pattern prefilter relies on to find where
// a match can start (see internal/prefilter.h).

// Boundary used in front of token prefixes: start of text or a non-token character.
#define B_ "(?:^|[^A-Za-z0-9_\\-])"
// The separators payment-card accepts between digits (the same alternation as in its pattern).
#define CARD_SEP_ "(?:[ \\t\\n\\-/_.:|\\\\~]|  | [\\-/] |\\r\\n)"

constexpr Rule kRules[] = {
    // ---- personal data ----
    {"email", kEmail,
     R"(([A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24})\b)",
     // Anchor: "@" and the domain's first character; at most 65 bytes of local part before it,
     // at most 599 bytes of domain after it (the pattern's width is 601).
     V::kEmail, 0, "@[A-Za-z0-9]", 67, 601},
    // Groups separated by blanks, dashes, dots or slashes, area codes in parentheses.
    {"phone-e164",
     kPhone,
     R"((\+[1-9][0-9]{0,3}(?:[ .\-/]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}))",
     // A database of its own: in the shared one it cost mixed text ~4% (measured with the
     // digit rules moved to internal/anchor_scan.h).
     V::kPhoneE164,
     0,
     {},
     0,
     0,
     true},
    // The same dialled with the international prefix 00 instead of "+" (0044 20 7946 0958; the
    // validator wants groups and no digits right before it). A rule of its own for speed, like
    // phone-cn-mobile-cc.
    {"phone-dialled-00", kPhone,
     R"((\b00[1-9][0-9]{0,3}(?:[ .\-/]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}))", V::kPhoneE164},
    // 138 1234 5678, 138-1234-5678, 138.1234.5678 (dots only when both are dots: "138.12345678"
    // reads as a decimal number), (138)1234-5678, +86 138 1234 5678.
    {"phone-cn-mobile", kPhone,
     R"(((?:\+86[ .\-]?|\b)1[3-9][0-9](?:[ \-]?[0-9]{4}[ \-]?|\.[0-9]{4}\.)[0-9]{4}|(?:\+86[ .\-]?)?\(1[3-9][0-9]\)[ .\-]?[0-9]{4}[ .\-]?[0-9]{4})\b)"},
    // The same with the country code written 0086 or a bare 86, glued on or separated
    // (8613812345678, 0086 138 1234 5678). A rule of its own: folded into the one above, the
    // alternatives made Hyperscan's database several times slower on every text.
    {"phone-cn-mobile-cc", kPhone,
     R"((\b(?:00)?86[ .\-]?(?:1[3-9][0-9](?:[ \-]?[0-9]{4}[ \-]?|\.[0-9]{4}\.)[0-9]{4}|\(1[3-9][0-9]\)[ .\-]?[0-9]{4}[ .\-]?[0-9]{4})\b))"},
    // Digits with an optional separator between them: one blank, tab, line break (LF or CRLF:
    // a card written one group per line), dash, slash, underscore, dot, colon, bar, backslash or
    // tilde, or two blanks, " - " or " / "; the validator wants the same separator between the
    // printed groups and a card's layout (4-4-4-4...), which keeps a column of unrelated numbers
    // out. Not commas or semicolons (lists of numbers). (A general run of up to three separator
    // characters made Hyperscan's database 4x slower on every text, prose included.)
    // Anchor (the weaker contract of rules.h: it covers the accepted cards, which the validator
    // wants printed in groups 4-4-4-4(-3), 4-4-4-3, 4-6-5 or 4-6-4 or unseparated): the first 13
    // digits with their separators, 13..22 bytes from the card's first digit; the pattern's width
    // is 73. The bounded repeat itself cost the shared Hyperscan database half its speed on
    // mixed text; this anchor runs in a database of its own at ~2 GB/s.
    {"payment-card", kPaymentCard,
     R"(\b((?:[0-9](?:[ \t\n\-/_.:|\\~]|  | [\-/] |\r\n)?){12,18}[0-9])\b)", V::kPaymentCard, 0,
     "\\b[0-9]{4}(?:" CARD_SEP_ "?[0-9]{4}" CARD_SEP_ "?[0-9]{4}" CARD_SEP_ "?[0-9]|" CARD_SEP_
     "?[0-9]{6}" CARD_SEP_ "?[0-9]{4})",
     22, 73, true},
    {"iban", kIban, R"(\b([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30})\b)", V::kIban},
    {"us-ssn", kUsSsn, R"(\b([0-9]{3}[ \-][0-9]{2}[ \-][0-9]{4})\b)", V::kUsSsn},
    {"cn-resident-id", kCnResidentId,
     R"(\b([1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx])\b)",
     V::kCnResidentId},
    {"ipv4", kIpAddress,
     R"(\b((?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3})\b)",
     // Anchor: a digit, a dot, a digit (every address holds one within its 15 bytes).
     V::kIpv4, 0, "[0-9]\\.[0-9]", 15, 15},
    {"ipv6", kIpAddress, R"(((?:[0-9A-Fa-f]{1,4})?(?::[0-9A-Fa-f]{0,4}){2,7}))", V::kIpv6},

    // ---- cloud providers ----
    {"aws-access-key-id", kSecret, B_ R"(((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b)",
     V::kEntropy, 3.0},
    {"aws-secret-access-key", kSecret,
     R"((?i)aws_?(?:secret)?_?(?:access)?_?key[\w.\-]{0,20}["']?\s{0,32}[:=]{1,2}\s{0,32}["']?([A-Za-z0-9/+=]{40})\b)",
     V::kEntropy, 4.0, "(?i)aws", 3, 149},
    {"gcp-api-key", kSecret, B_ R"((AIza[0-9A-Za-z_\-]{35}))", V::kEntropy, 3.5},
    {"gcp-service-account", kSecret, R"(("type"\s*:\s*"service_account"))"},
    {"google-oauth-client-secret", kSecret, B_ R"((GOCSPX-[A-Za-z0-9_\-]{28}))"},
    {"azure-storage-account-key", kSecret, R"((?i)AccountKey=([A-Za-z0-9+/]{86}==))"},
    {"azure-ad-client-secret", kSecret, B_ R"(([A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}))",
     V::kEntropy, 3.0},
    {"alibaba-access-key-id", kSecret, B_ R"((LTAI[A-Za-z0-9]{20}))", V::kEntropy, 3.0},
    {"digitalocean-token", kSecret, B_ R"((do[opr]_v1_[a-f0-9]{64}))"},
    {"heroku-api-key", kSecret, B_ R"((HRKU-[A-Za-z0-9_\-]{60}))"},
    {"databricks-token", kSecret, B_ R"((dapi[a-f0-9]{32}(?:-[0-9])?))"},

    // ---- source control and CI ----
    // Anchors: the prefix (the bounded repeat after it cost the shared database ~10% on mixed
    // text); the whole match starts at most 4 + 4 bytes before the prefix's end (a boundary
    // character of up to 4 bytes) and ends at most the body's length after it.
    {"github-pat", kSecret, B_ R"((ghp_[0-9A-Za-z]{36}))", V::kNone, 0, "ghp_", 8, 36},
    {"github-oauth", kSecret, B_ R"((gho_[0-9A-Za-z]{36}))", V::kNone, 0, "gho_", 8, 36},
    {"github-app-token", kSecret, B_ R"(((?:ghu|ghs)_[0-9A-Za-z]{36}))", V::kNone, 0, "gh[us]_", 8,
     36},
    {"github-refresh-token", kSecret, B_ R"((ghr_[0-9A-Za-z]{36,76}))", V::kNone, 0, "ghr_", 8, 76},
    {"github-fine-grained-pat", kSecret, B_ R"((github_pat_[0-9A-Za-z_]{82}))"},
    {"gitlab-pat", kSecret, B_ R"((glpat-[0-9A-Za-z_\-]{20,}))"},
    {"gitlab-pipeline-trigger", kSecret, B_ R"((glptt-[0-9a-f]{40}))"},
    {"gitlab-runner-token", kSecret, B_ R"(((?:GR1348941|glrt-)[0-9A-Za-z_\-]{20,}))"},
    {"npm-token", kSecret, B_ R"((npm_[A-Za-z0-9]{36}))", V::kNone, 0, "npm_", 8, 36},
    {"pypi-token", kSecret, B_ R"((pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}))"},

    // ---- chat, mail, payment, SaaS ----
    {"slack-token", kSecret, B_ R"((xox[baprse]-[0-9A-Za-z\-]{10,}))"},
    {"slack-app-token", kSecret, R"((?i)(xapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-z0-9]+))"},
    {"slack-webhook", kSecret,
     R"((https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,}))"},
    {"stripe-key", kSecret, B_ R"(((?:sk|rk|pk)_(?:test|live|prod)_[0-9A-Za-z]{10,99}))"},
    {"sendgrid-api-key", kSecret, B_ R"((SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}))"},
    {"twilio-api-key", kSecret, B_ R"((SK[0-9a-fA-F]{32}))", V::kEntropy, 3.0},
    {"telegram-bot-token", kSecret, B_ R"(([0-9]{8,10}:AA[0-9A-Za-z_\-]{33}))"},
    {"mailchimp-api-key", kSecret, B_ R"(([0-9a-f]{32}-us[0-9]{1,2}))"},
    {"shopify-token", kSecret, B_ R"((shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}))"},
    {"square-token", kSecret, B_ R"(((?:sq0atp|sq0csp|EAAA)[0-9A-Za-z_\-]{22,60}))", V::kEntropy,
     3.0},
    {"linear-api-key", kSecret, B_ R"((lin_api_[A-Za-z0-9]{40}))"},
    {"postman-api-key", kSecret, B_ R"((PMAK-[a-f0-9]{24}-[a-f0-9]{34}))"},
    {"doppler-token", kSecret, B_ R"((dp\.pt\.[A-Za-z0-9]{43}))"},
    {"grafana-token", kSecret, B_ R"(((?:glc_|glsa_)[A-Za-z0-9+/_]{32,400}={0,2}))"},
    {"age-secret-key", kSecret, R"((AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}))"},

    // ---- AI providers ----
    {"openai-api-key", kSecret,
     B_
     R"((sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,200}|[A-Za-z0-9]{20})T3BlbkFJ[A-Za-z0-9_\-]{20,200}))"},
    {"anthropic-api-key", kSecret, B_ R"((sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,120}))"},
    {"huggingface-token", kSecret, B_ R"((hf_[A-Za-z]{34}))", V::kEntropy, 3.0},
    {"groq-api-key", kSecret, B_ R"((gsk_[A-Za-z0-9]{52}))"},
    {"perplexity-api-key", kSecret, B_ R"((pplx-[A-Za-z0-9]{48}))"},
    // DeepSeek and Alibaba DashScope (Qwen) both issue "sk-" + 32 lowercase hex characters.
    {"deepseek-dashscope-api-key", kSecret, B_ R"((sk-[0-9a-f]{32})\b)", V::kEntropy, 3.0},
    // Moonshot (Kimi): "sk-" + 48 base62 characters.
    {"moonshot-api-key", kSecret, B_ R"((sk-[A-Za-z0-9]{48})\b)", V::kEntropy, 3.5},
    // Zhipu (GLM / BigModel): "<32 hex id>.<16 base62 secret>".
    {"zhipu-api-key", kSecret, B_ R"(([0-9a-f]{32}\.[A-Za-z0-9]{16})\b)", V::kEntropy, 3.0},

    // ---- keys, tokens, credentials in general ----
    {"private-key", kSecret,
     R"((-----BEGIN[ A-Z0-9_]{0,60}PRIVATE KEY(?: BLOCK)?-----[^\-]{8,}-----END[ A-Z0-9_]{0,60}PRIVATE KEY(?: BLOCK)?-----))"},
    {"private-key-header", kSecret,
     R"((-----BEGIN[ A-Z0-9_]{0,60}PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s]*))"},
    {"jwt", kSecret, B_ R"((eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*))"},
    {"basic-auth-url", kSecret,
     R"(\b[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^:/\s@]{1,64}:([^@/\s]{3,128})@[A-Za-z0-9.\-]+)"},
    {"generic-api-key", kSecret,
     R"((?i)(?:api[_\-]?key|apikey|secret|token|passwd|password|pwd|access[_\-]?key|auth[_\-]?key|credentials?|client[_\-]?secret)[\w.\-]{0,20}["']?\s{0,32}(?:[:=]{1,2}|=>)\s{0,32}["']?([A-Za-z0-9_\-+/=.~!@#$%^&*]{12,128}))",
     // Anchor: the key word (at most 13 bytes, "client_secret"); the value ends within the
     // pattern's width (229) after it. In a database of its own: its case-insensitive key words
     // in the shared one made Hyperscan's literal matcher twice as slow on prose (0.35 -> 0.18
     // ms per MiB alone) and ~20% slower on mixed text.
     V::kEntropy, 3.5,
     "(?i)(?:api[_\\-]?key|apikey|secret|token|passwd|password|pwd|access[_\\-]?key|auth[_\\-]?key|"
     "credentials?|client[_\\-]?secret)",
     13, 229, true},
};

#undef B_
#undef CARD_SEP_

}  // namespace

std::span<const Rule> BuiltinRules() { return kRules; }

}  // namespace airlock::policy::internal
