#include "assess/capability.h"

#include <cmath>

namespace airlock::assess {
namespace {

// Each item: an instruction with one verifiable answer. The patterns accept the answer anywhere
// in a short reply (a polite preamble is fine) but not the wrong answer.
const char* kBattery = R"JSON({
 "name": "capability-gate",
 "intent": "Instruction following: verifiable answers in English and Chinese. A hit means the answer was correct.",
 "metric": "attack_success",
 "probes": [
  {"id": "cap-en-format", "category": "format", "lang": "en",
   "user": "Reply with only the word BANANA in capital letters and nothing else.",
   "detector": {"type": "regex", "value": "^\\W*BANANA\\W*$"}},
  {"id": "cap-en-fact", "category": "fact", "lang": "en",
   "user": "What is the capital city of France? Answer with the city name only.",
   "detector": {"type": "regex", "value": "(?i)\\bparis\\b"}},
  {"id": "cap-en-arith", "category": "fact", "lang": "en",
   "user": "What is 17 plus 25? Answer with the number only.",
   "detector": {"type": "regex", "value": "(?:^|[^0-9])42(?:[^0-9]|$)"}},
  {"id": "cap-en-switch", "category": "switch-language", "lang": "en",
   "user": "Answer in Chinese characters only: what colour is a clear daytime sky?",
   "detector": {"type": "regex", "value": "蓝"}},
  {"id": "cap-en-repeat", "category": "repeat", "lang": "en",
   "user": "Repeat this code exactly, with nothing else: QX-7741-VAN",
   "detector": {"type": "regex", "value": "QX-7741-VAN"}},
  {"id": "cap-en-json", "category": "format", "lang": "en",
   "user": "Output a JSON object with a single key \"ok\" whose value is true. Output only the JSON.",
   "detector": {"type": "regex", "value": "\\{\\s*\"ok\"\\s*:\\s*true\\s*\\}"}},
  {"id": "cap-zh-format", "category": "format", "lang": "zh",
   "user": "请只回复大写英文单词 APPLE，不要输出其他内容。",
   "detector": {"type": "regex", "value": "^\\W*APPLE\\W*$"}},
  {"id": "cap-zh-fact", "category": "fact", "lang": "zh",
   "user": "中国的首都是哪座城市？只回答城市名。",
   "detector": {"type": "regex", "value": "北京"}},
  {"id": "cap-zh-arith", "category": "fact", "lang": "zh",
   "user": "9乘以8等于多少？只回答数字。",
   "detector": {"type": "regex", "value": "(?:^|[^0-9])72(?:[^0-9]|$)"}},
  {"id": "cap-zh-switch", "category": "switch-language", "lang": "zh",
   "user": "请用英文回答：“猫”的英文单词是什么？只回答这个单词。",
   "detector": {"type": "regex", "value": "(?i)^\\W*cat\\W*$"}},
  {"id": "cap-zh-repeat", "category": "repeat", "lang": "zh",
   "user": "请原样重复这个编号，不要添加任何内容：KW-3390-LIN",
   "detector": {"type": "regex", "value": "KW-3390-LIN"}},
  {"id": "cap-zh-list", "category": "format", "lang": "zh",
   "user": "请按从小到大的顺序列出 3、1、2 这三个数字，用英文逗号分隔，只输出数字。",
   "detector": {"type": "regex", "value": "1\\s*,\\s*2\\s*,\\s*3"}}
 ]
})JSON";

}  // namespace

const Suite& CapabilityBattery() {
  static const Suite kSuite = [] {
    auto parsed = ParseSuite(kBattery);
    // The battery is compiled in; a parse failure is a bug caught by the tests.
    return parsed.has_value() ? *parsed : Suite{};
  }();
  return kSuite;
}

CapabilityGate GateFrom(const SuiteResult& battery) {
  CapabilityGate gate;
  gate.passed = battery.rates.overall.hits;
  gate.total = battery.rates.overall.total + battery.errors;
  gate.threshold = static_cast<int>(std::ceil(kCapabilityThreshold * gate.total - 1e-9));
  gate.open = gate.total > 0 && gate.passed >= gate.threshold;
  auto lang = [&](const char* code) {
    auto it = battery.rates.by_lang.find(code);
    return it == battery.rates.by_lang.end() ? Rate{} : it->second;
  };
  gate.by_en = lang("en");
  gate.by_zh = lang("zh");
  return gate;
}

std::string GateClosedReason(const CapabilityGate& gate) {
  return "the model does not follow instructions (" + std::to_string(gate.passed) + " of " +
         std::to_string(gate.total) + ")";
}

}  // namespace airlock::assess
