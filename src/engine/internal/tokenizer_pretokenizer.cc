#include "engine/internal/tokenizer_pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/internal/tokenizer_unicode.h"

namespace airlock::engine::internal {
namespace {

// Shared expressions (from llama.cpp's llm_tokenizer_bpe, src/llama-vocab.cpp).
constexpr char kGpt2Regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr char kLlama3Regex[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr char kQwen2Regex[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr char kQwen35Regex[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]"
    "+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr char kCjkRegex[] = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+";
constexpr char kDeepseekLlmLetters[] =
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-"
    "\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1"
    "\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd"
    "\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d"
    "\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-"
    "\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4"
    "\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d"
    "\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4"
    "\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+";
constexpr char kDeepseekLlmPunct[] =
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+";

bool UsesUnicodeClasses(std::string_view re) {
  for (std::string_view cls : {"\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}"}) {
    if (re.find(cls) != std::string_view::npos) return true;
  }
  return false;
}

// Rewrites \p{X} as the class byte plus the ASCII members of X (llama.cpp's table, which leaves
// '~' out of \p{S}).
std::string CollapseRegex(std::string_view re) {
  std::string out;
  bool inside = false;
  for (std::size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    if (c == '[' && (i == 0 || re[i - 1] != '\\')) {
      out += '[';
      inside = true;
      continue;
    }
    if (inside && c == ']' && re[i - 1] != '\\') {
      out += ']';
      inside = false;
      continue;
    }
    if (c == '\\' && i + 4 < re.size() && re[i + 1] == 'p' && re[i + 2] == '{' &&
        re[i + 4] == '}') {
      uint8_t byte = 0;
      const char* ascii = "";
      switch (re[i + 3]) {
        case 'N':
          byte = kCollapsedNumber;
          ascii = "0-9";
          break;
        case 'L':
          byte = kCollapsedLetter;
          ascii = "A-Za-z";
          break;
        case 'P':
          byte = kCollapsedPunct;
          ascii = "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}";
          break;
        case 'M':
          byte = kCollapsedMark;
          ascii = "";
          break;
        case 'S':
          byte = kCollapsedSymbol;
          ascii = "\\$\\+<->\\^`\\|";
          break;
        default:
          break;
      }
      if (byte != 0) {
        if (!inside) out += '[';
        out += static_cast<char>(byte);
        out += ascii;
        if (!inside) out += ']';
        i += 4;
        continue;
      }
    }
    out += c;
  }
  return out;
}

}  // namespace

Result<PreTokenizerSpec> PreTokenizerSpecFor(std::string_view pre) {
  PreTokenizerSpec spec;
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" ||
      pre == "dbrx" || pre == "smaug-bpe") {
    spec.regexes = {kLlama3Regex};
    if (pre != "dbrx" && pre != "smaug-bpe") {
      spec.ignore_merges = true;
      spec.add_bos = true;
    }
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "stablelm2" || pre == "megrez") {
    spec.regexes = {kQwen2Regex};
  } else if (pre == "qwen35") {
    spec.regexes = {kQwen35Regex};
  } else if (pre == "deepseek-llm") {
    spec.regexes = {"[\r\n]", kDeepseekLlmLetters, kDeepseekLlmPunct,
                    "\\s+$",  kCjkRegex,           "\\p{N}+"};
  } else if (pre == "deepseek-coder") {
    spec.regexes = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjkRegex, "\\p{N}"};
  } else if (pre == "deepseek-v3") {
    spec.regexes = {"\\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
                    "[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|"
                    "\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
  } else if (pre == "falcon") {
    spec.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2Regex, "[0-9][0-9][0-9]"};
  } else if (pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "smollm" ||
             pre == "codeshell" || pre == "exaone" || pre == "minerva-7b") {
    spec.regexes = {"\\p{N}", kGpt2Regex};
  } else if (pre == "gpt-2" || pre == "gpt2" || pre == "phi-2" || pre == "mpt" || pre == "olmo" ||
             pre == "jais" || pre == "roberta-bpe") {
    spec.regexes = {kGpt2Regex};
  } else if (pre.empty() || pre == "default") {
    spec.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Regex, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else {
    return Unsupported("engine: tokenizer at tokenizer.ggml.pre: unknown pre-tokenizer '" +
                       std::string(pre.substr(0, 64)) + "'");
  }
  return spec;
}

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool collapsed = false;
  ~Compiled() {
    if (code) pcre2_code_free(code);
  }
};

Result<PreTokenizer> PreTokenizer::Create(const std::vector<std::string>& regexes) {
  PreTokenizer result;
  for (const std::string& re : regexes) {
    auto compiled = std::make_shared<Compiled>();
    compiled->collapsed = UsesUnicodeClasses(re);
    std::string pattern = compiled->collapsed ? CollapseRegex(re) : re;
    uint32_t options = PCRE2_DOLLAR_ENDONLY;
    if (!compiled->collapsed) options |= PCRE2_UTF;
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &error_offset, nullptr);
    if (compiled->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return Internal("engine: tokenizer regex at offset " + std::to_string(error_offset) + ": " +
                      reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);  // optional: falls back to interpreter
    if (compiled->collapsed) {
      result.needs_collapsed_ = true;
    } else {
      result.needs_utf8_ = true;
    }
    result.regexes_.push_back(std::move(compiled));
  }
  return result;
}

std::vector<std::pair<std::size_t, std::size_t>> PreTokenizer::Split(
    const std::vector<uint32_t>& cps) const {
  std::vector<std::size_t> lengths;
  if (cps.empty()) return {};
  lengths.push_back(cps.size());

  // One byte per code point, for the regexes with \p{..} classes.
  std::string collapsed;
  if (needs_collapsed_) {
    collapsed.resize(cps.size());
    for (std::size_t i = 0; i < cps.size(); ++i) {
      collapsed[i] = static_cast<char>(cps[i] < 128 ? cps[i] : CollapsedClass(cps[i]));
    }
  }
  // UTF-8 with non-ASCII whitespace as \v, for the others; byte offset -> code point index.
  std::string utf8;
  std::vector<std::size_t> cp_byte_offset;  // cp index -> byte offset (size n+1)
  std::vector<std::size_t> byte_to_cp;      // byte offset -> cp index (valid at boundaries)
  if (needs_utf8_) {
    cp_byte_offset.reserve(cps.size() + 1);
    for (uint32_t cp : cps) {
      cp_byte_offset.push_back(utf8.size());
      if (cp >= 128 && IsWhitespace(cp)) {
        utf8.push_back('\v');
      } else {
        AppendUtf8(cp >= 0xD800 && cp <= 0xDFFF ? kReplacementChar : cp, &utf8);
      }
    }
    cp_byte_offset.push_back(utf8.size());
    byte_to_cp.assign(utf8.size() + 1, 0);
    for (std::size_t i = 0; i <= cps.size(); ++i) byte_to_cp[cp_byte_offset[i]] = i;
  }

  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  if (context) pcre2_set_match_limit(context, 50'000'000);

  for (const auto& regex : regexes_) {
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(regex->code, nullptr);
    if (match == nullptr) break;
    std::vector<std::size_t> next;
    next.reserve(lengths.size() * 2);
    std::size_t start = 0;  // code point index of the current piece
    for (std::size_t length : lengths) {
      // Subject: exactly this piece, so anchors and lookarounds see only the piece.
      const char* subject;
      std::size_t subject_len;
      std::size_t base_byte = 0;
      if (regex->collapsed) {
        subject = collapsed.data() + start;
        subject_len = length;
      } else {
        base_byte = cp_byte_offset[start];
        subject = utf8.data() + base_byte;
        subject_len = cp_byte_offset[start + length] - base_byte;
      }
      auto to_cp = [&](std::size_t byte) -> std::size_t {
        return regex->collapsed ? byte : byte_to_cp[base_byte + byte] - start;
      };
      std::size_t last = 0;      // in code points, relative to the piece
      std::size_t pos_byte = 0;  // search position in subject units
      while (pos_byte <= subject_len) {
        int rc = pcre2_match(regex->code, reinterpret_cast<PCRE2_SPTR>(subject), subject_len,
                             pos_byte, regex->collapsed ? 0 : PCRE2_NO_UTF_CHECK, match, context);
        if (rc < 0) break;  // no match, or a limit: the rest of the piece stays as it is
        PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
        std::size_t match_begin = ovector[0], match_end = ovector[1];
        if (match_end <= match_begin) {  // empty match: move on one code point
          if (match_begin >= subject_len) break;
          pos_byte = match_begin + 1;
          if (!regex->collapsed) {
            while (pos_byte < subject_len &&
                   (static_cast<uint8_t>(subject[pos_byte]) & 0xC0) == 0x80) {
              ++pos_byte;
            }
          }
          continue;
        }
        std::size_t cp_begin = to_cp(match_begin), cp_end = to_cp(match_end);
        if (cp_begin > last) next.push_back(cp_begin - last);
        next.push_back(cp_end - cp_begin);
        last = cp_end;
        pos_byte = match_end;
      }
      if (last < length) next.push_back(length - last);
      start += length;
    }
    pcre2_match_data_free(match);
    lengths = std::move(next);
  }
  if (context) pcre2_match_context_free(context);

  std::vector<std::pair<std::size_t, std::size_t>> words;
  words.reserve(lengths.size());
  std::size_t start = 0;
  for (std::size_t length : lengths) {
    words.emplace_back(start, start + length);
    start += length;
  }
  return words;
}

}  // namespace airlock::engine::internal
