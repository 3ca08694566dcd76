#include "server/engine_backend.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/chat_prompt.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/tokenizer.h"

namespace airlock::server {
namespace {

std::atomic<int> g_queue_depth{0};

struct Slot {
  std::unique_ptr<engine::Session> session;
  std::vector<engine::TokenId> history;  // tokens currently in the KV cache
  bool busy = false;
};

class EngineBackend : public ModelBackend {
 public:
  EngineBackend(std::unique_ptr<engine::Model> model, engine::Tokenizer tokenizer, std::string name)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), name_(std::move(name)) {}

  Status AddSlots(const EngineBackendOptions& o) {
    int slots = std::max(1, o.slots);
    int threads = o.threads > 0
                      ? o.threads
                      : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / slots);
    for (int i = 0; i < slots; ++i) {
      engine::SessionOptions so;
      so.n_threads = threads;
      so.n_ctx = o.ctx;
      AIRLOCK_ASSIGN_OR_RETURN(auto session, engine::Session::Create(*model_, so));
      slots_.push_back(std::make_unique<Slot>());
      slots_.back()->session = std::move(session);
    }
    return Status::Ok();
  }

  std::string Name() const override { return name_; }

  std::int64_t CountTokens(std::string_view text) const override {
    return static_cast<std::int64_t>(
        tokenizer_.Encode(text, /*add_special=*/false, /*parse_special=*/false).size());
  }

  Result<GenerateResult> Generate(const GenerateRequest& request,
                                  const std::function<bool(std::string_view)>& on_text,
                                  const std::atomic<bool>& cancel) override {
    std::vector<engine::TokenId> prompt;
    if (request.chat) {
      std::vector<tmpl::ChatMessage> messages;
      for (const auto& m : request.messages) {
        tmpl::ChatMessage cm;
        cm.role = m.role;
        cm.content = tmpl::Value::String(m.content);
        messages.push_back(std::move(cm));
      }
      AIRLOCK_ASSIGN_OR_RETURN(prompt, engine::EncodeChat(*model_, tokenizer_, messages, false));
    } else {
      prompt = tokenizer_.Encode(request.prompt, /*add_special=*/true, /*parse_special=*/false);
    }
    if (prompt.empty()) return InvalidArgument("engine: empty prompt");

    Slot* slot = Acquire(cancel);
    if (slot == nullptr)
      return Status(StatusCode::kCancelled, "engine: client went away while queued");
    struct Release {
      EngineBackend* self;
      Slot* slot;
      ~Release() { self->ReleaseSlot(slot); }
    } release{this, slot};

    engine::Session& session = *slot->session;
    if (static_cast<int>(prompt.size()) >= session.n_ctx())
      return InvalidArgument("engine: the prompt has " + std::to_string(prompt.size()) +
                             " tokens; the context holds " + std::to_string(session.n_ctx()));
    // Reuse the cached prefix shared with the slot's previous request (at least one token must
    // be evaluated to get logits).
    std::size_t keep = 0;
    while (keep < slot->history.size() && keep < prompt.size() &&
           slot->history[keep] == prompt[keep])
      ++keep;
    if (keep == prompt.size()) --keep;
    session.Rewind(static_cast<int>(keep));
    slot->history.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(keep));
    auto logits_or = session.Eval(std::span<const engine::TokenId>(prompt).subspan(keep));
    if (!logits_or.has_value()) {
      slot->history.clear();
      session.Rewind(0);
      return logits_or.error();
    }
    slot->history.insert(slot->history.end(), prompt.begin() + static_cast<std::ptrdiff_t>(keep),
                         prompt.end());
    std::span<const float> logits = *logits_or;

    engine::SamplerOptions so;
    so.temperature = static_cast<float>(request.temperature);
    so.top_p = static_cast<float>(request.top_p);
    so.seed = request.seed;
    so.top_k = 0;  // OpenAI's API has no top-k or min-p: only temperature and top_p apply
    so.min_p = 0;
    engine::Sampler sampler(so, model_->config().n_vocab);
    engine::StreamDecoder decoder(tokenizer_);
    GenerateResult result;
    result.prompt_tokens = static_cast<std::int64_t>(prompt.size());
    result.finish_reason = "length";
    std::size_t max_stop = 0;
    for (const auto& s : request.stop) max_stop = std::max(max_stop, s.size());
    std::string pending;  // text held back while it could still be the start of a stop string
    auto emit = [&](std::string text, bool final) -> bool {
      pending += text;
      for (const auto& stop : request.stop) {
        if (stop.empty()) continue;
        std::size_t at = pending.find(stop);
        if (at != std::string::npos) {
          if (at > 0) on_text(std::string_view(pending).substr(0, at));
          pending.clear();
          result.finish_reason = "stop";
          return false;
        }
      }
      std::size_t hold = final || max_stop == 0 ? 0 : std::min(pending.size(), max_stop - 1);
      std::size_t out = pending.size() - hold;
      bool go_on = true;
      if (out > 0) go_on = on_text(std::string_view(pending).substr(0, out));
      pending.erase(0, out);
      return go_on;
    };
    for (int i = 0; i < request.max_tokens; ++i) {
      if (cancel.load()) {
        result.finish_reason = "cancelled";
        break;
      }
      engine::TokenId next = sampler.Sample(logits);
      if (tokenizer_.IsEog(next)) {
        result.finish_reason = "stop";
        break;
      }
      sampler.Accept(next);
      ++result.completion_tokens;
      if (!emit(decoder.Push(next), false)) {
        if (result.finish_reason != "stop") result.finish_reason = "cancelled";
        break;
      }
      if (session.position() >= session.n_ctx()) break;
      auto step = session.Eval(std::span<const engine::TokenId>(&next, 1));
      if (!step.has_value()) {
        slot->history.clear();
        session.Rewind(0);
        return step.error();
      }
      slot->history.push_back(next);
      logits = *step;
    }
    if (result.finish_reason != "stop" || pending.empty()) emit(decoder.Flush(), true);
    return result;
  }

 private:
  Slot* Acquire(const std::atomic<bool>& cancel) {
    std::unique_lock lock(mu_);
    std::uint64_t ticket = next_ticket_++;
    g_queue_depth++;
    for (;;) {
      if (ticket == serving_ticket_) {
        for (auto& s : slots_) {
          if (!s->busy) {
            s->busy = true;
            ++serving_ticket_;
            g_queue_depth--;
            cv_.notify_all();
            return s.get();
          }
        }
      }
      if (cancel.load()) {
        // Give up our place: tickets behind us move up.
        abandoned_.push_back(ticket);
        g_queue_depth--;
        SkipAbandoned();
        cv_.notify_all();
        return nullptr;
      }
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      SkipAbandoned();
    }
  }

  void SkipAbandoned() {
    for (bool moved = true; moved;) {
      moved = false;
      auto it = std::find(abandoned_.begin(), abandoned_.end(), serving_ticket_);
      if (it != abandoned_.end()) {
        abandoned_.erase(it);
        ++serving_ticket_;
        moved = true;
      }
    }
  }

  void ReleaseSlot(Slot* slot) {
    std::lock_guard lock(mu_);
    slot->busy = false;
    cv_.notify_all();
  }

  std::unique_ptr<engine::Model> model_;
  engine::Tokenizer tokenizer_;
  std::string name_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t next_ticket_ = 0;
  std::uint64_t serving_ticket_ = 0;
  std::deque<std::uint64_t> abandoned_;
};

}  // namespace

int EngineQueueDepth() { return g_queue_depth.load(); }

Result<std::shared_ptr<ModelBackend>> LoadEngineBackend(const std::string& gguf_path,
                                                        const EngineBackendOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(auto model, engine::Model::Load(gguf_path));
  AIRLOCK_ASSIGN_OR_RETURN(auto tokenizer, engine::Tokenizer::FromGguf(model->gguf()));
  auto backend =
      std::make_shared<EngineBackend>(std::move(model), std::move(tokenizer), options.name);
  AIRLOCK_TRY(backend->AddSlots(options));
  return std::shared_ptr<ModelBackend>(std::move(backend));
}

}  // namespace airlock::server
