// `airlock tokenize`: the token ids and pieces a model sees for a text, exactly as the engine
// encodes it (the vocabulary's own BOS setting, special-token text parsed only on request).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/sandboxing.h"
#include "core/file.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"

namespace airlock::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string text;
  std::string file;
  bool has_text = false;  // TEXT was given (possibly empty)
  bool ids = false;
  bool pieces = false;
  bool json = false;
  bool no_bos = false;
  bool parse_special = false;
};

// A piece as a readable single-line literal: \n, \t, \r, \\, \' and other control or invalid
// bytes escaped; valid UTF-8 kept.
std::string Escape(std::string_view piece) {
  std::string out;
  for (std::size_t i = 0; i < piece.size(); ++i) {
    auto c = static_cast<unsigned char>(piece[i]);
    switch (c) {
      case '\n':
        out += "\\n";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\'':
        out += "\\'";
        continue;
      default:
        break;
    }
    std::size_t len = c < 0x80 ? 1 : c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    bool valid = len > 1 && i + len <= piece.size();
    for (std::size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(piece[i + k]) & 0xC0) == 0x80;
    }
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else if (valid) {
      out.append(piece.substr(i, len));
      i += len - 1;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

int RunTokenize(const TokenizeArgs& a) {
  if (!EnterSandbox("tokenize", {a.model, a.file})) return kExitError;
  auto mapped = core::MappedFile::Open(a.model);
  if (!mapped) {
    std::fprintf(stderr, "airlock tokenize: %s\n", mapped.error().message().c_str());
    return kExitError;
  }
  auto file = formats::gguf::File::Parse(mapped->bytes());
  if (!file) {
    std::fprintf(stderr, "airlock tokenize: %s: %s\n", a.model.c_str(),
                 file.error().message().c_str());
    return kExitError;
  }
  auto tokenizer = engine::Tokenizer::FromGguf(*file);
  if (!tokenizer) {
    std::fprintf(stderr, "airlock tokenize: %s: %s\n", a.model.c_str(),
                 tokenizer.error().message().c_str());
    return kExitError;
  }

  std::string_view input;
  std::optional<core::TextInput> text_input;
  if (a.has_text) {
    input = a.text;
  } else {
    // -f FILE (a regular file is mapped; a pipe such as -f <(cmd) is read up to the cap), or
    // standard input.
    auto read = a.file.empty() ? core::TextInput::FromStdin(kMaxTextInputBytes)
                               : core::TextInput::Open(a.file, kMaxTextInputBytes);
    if (!read) {
      std::fprintf(stderr, "airlock tokenize: %s\n", read.error().message().c_str());
      return kExitError;
    }
    text_input = std::move(read).value();
    input = text_input->text();
  }

  const bool add_special = tokenizer->add_bos() && !a.no_bos;
  const std::vector<engine::TokenId> ids = tokenizer->Encode(input, add_special, a.parse_special);

  std::string out;
  if (a.json) {
    try {
      nlohmann::json j;
      j["model"] = a.model;
      j["tokenizer"] = tokenizer->kind() == engine::VocabKind::kSpm ? "spm" : "bpe";
      j["pre"] = tokenizer->pre();
      j["add_bos"] = add_special;
      j["parse_special"] = a.parse_special;
      j["n_tokens"] = ids.size();
      nlohmann::json tokens = nlohmann::json::array();
      for (engine::TokenId id : ids) {
        tokens.push_back({{"id", id},
                          {"piece", tokenizer->TokenPiece(id)},
                          {"text", std::string(tokenizer->TokenText(id))},
                          {"special", tokenizer->IsControl(id)}});
      }
      j["tokens"] = std::move(tokens);
      out = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    } catch (const std::exception& e) {
      std::fprintf(stderr, "airlock tokenize: json output: %s\n", e.what());
      return kExitError;
    }
  } else if (a.ids) {
    out = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]\n";
  } else if (a.pieces) {
    for (engine::TokenId id : ids) out += "'" + Escape(tokenizer->TokenPiece(id)) + "'\n";
  } else {
    char buf[32];
    for (engine::TokenId id : ids) {
      std::snprintf(buf, sizeof(buf), "%6d -> '", id);
      out += buf + Escape(tokenizer->TokenPiece(id)) + "'\n";
    }
    out += "Total: " + std::to_string(ids.size()) + " tokens\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

void AddTokenizeCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Show the token ids and pieces a GGUF model's tokenizer produces for a text");
  cmd->footer(
      "Reads TEXT, or the file given with -f, or standard input (a file or stream of more than\n"
      "256 MiB is refused). BOS is added when the model's\n"
      "vocabulary asks for it (tokenizer.ggml.add_bos_token) unless --no-bos; special-token text\n"
      "such as <|im_start|> becomes a control token only with --parse-special.\n"
      "Exit codes: 0 success; 3 usage or tool error (unreadable or unsupported model).\n"
      "Examples:\n"
      "  airlock tokenize qwen2.5-0.5b-instruct-q4_k_m.gguf \"Hello world\"\n"
      "  airlock tokenize model.gguf -f prompt.txt --json\n"
      "  airlock tokenize model.gguf \"<|im_start|>user\" --parse-special --ids\n");
  cmd->add_option("model", args->model, "GGUF model (or vocabulary-only GGUF)")->required();
  CLI::Option* text_option = cmd->add_option("text", args->text, "Text to tokenize");
  cmd->add_option("-f,--file", args->file, "Read the text from this file");
  auto* ids = cmd->add_flag("--ids", args->ids, "Print only the ids, as a list");
  auto* pieces = cmd->add_flag("--pieces", args->pieces, "Print only the pieces, one per line");
  auto* json = cmd->add_flag("--json", args->json, "Print ids, pieces and settings as JSON");
  ids->excludes(pieces)->excludes(json);
  pieces->excludes(json);
  cmd->add_flag("--no-bos", args->no_bos, "Do not add BOS even if the vocabulary asks for it");
  cmd->add_flag("--parse-special", args->parse_special,
                "Turn special-token text into control tokens");
  cmd->callback([args, exit_code, text_option] {
    args->has_text = text_option->count() > 0;
    if (args->has_text && !args->file.empty()) {
      std::fprintf(stderr, "airlock tokenize: give TEXT or -f FILE, not both\n");
      *exit_code = kExitError;
      return;
    }
    *exit_code = RunTokenize(*args);
  });
}

}  // namespace airlock::cli
