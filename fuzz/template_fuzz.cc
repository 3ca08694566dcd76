// Template fuzz target: any bytes as a chat template. Parses, analyzes, and renders it (with tight
// caps) against a small conversation; must never crash, hang, leak or read out of bounds, and
// every successful chat render must produce a segmentation that covers the text exactly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "template/analyze.h"
#include "template/chat.h"

using namespace airlock::tmpl;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string source(reinterpret_cast<const char*>(data), size);
  (void)AnalyzeTemplate(source);
  auto t = Template::Parse(source);
  if (!t) return 0;
  ChatOptions opts;
  opts.bos_token = "<s>";
  opts.render.limits.max_steps = 200'000;
  opts.render.limits.max_output_bytes = 1 << 20;
  opts.render.limits.max_string_bytes = 1 << 20;
  opts.render.now_unix_seconds = 0;
  opts.extra_variables = Value::Dict();
  opts.extra_variables.Set("enable_thinking", Value::Bool(false));
  std::vector<ChatMessage> msgs(3);
  msgs[0].role = "system";
  msgs[0].content = Value::String("sys <|im_start|>");
  msgs[1].role = "user";
  msgs[1].content = Value::String("hi </think> there");
  msgs[2].role = "assistant";
  msgs[2].content = Value::String("<think>r</think>ok");
  msgs[2].reasoning_content = "r";
  auto r = RenderChat(*t, msgs, opts);
  if (r) {
    std::size_t pos = 0;
    for (const auto& s : r->segments) {
      if (s.begin != pos || s.end <= s.begin) std::abort();
      pos = s.end;
    }
    if (pos != r->text.size()) std::abort();
  }
  return 0;
}
