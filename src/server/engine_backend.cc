// The engine backend's scheduler. Request threads (Generate) tokenize, queue a Request and then
// turn the token ids the scheduler hands them into text (stop strings, streaming). One scheduler
// thread per model owns the slots and the engine::Batch: each step it gathers one decode token
// from every generating slot and prompt chunks from slots still reading their prompt (within the
// step's row budget, oldest admission first), runs them as one forward pass, samples each slot's
// next token with the request's own sampler, and wakes the request threads. A request that is
// cancelled or done (stop string, client gone) is marked abandoned and its slot is freed at the
// next step boundary.
#include "server/engine_backend.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "engine/batch.h"
#include "engine/chat_prompt.h"
#include "engine/grammar.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/tokenizer.h"
#include "engine/tool_calls.h"
#include "template/value.h"

namespace airlock::server {
namespace {

std::atomic<int> g_queue_depth{0};
std::atomic<std::int64_t> g_steps{0}, g_step_sequences{0};

// Tokens per forward pass for all slots together: the decode tokens plus prompt chunks. A long
// prompt is read in chunks of at most this many tokens, so the other slots' streams pause for
// at most one such chunk between two of their tokens.
constexpr int kStepRows = 128;
// A slot pauses when its reader (a slow or stalled client) has this many tokens not yet taken:
// it keeps its place, and the other slots' steps go on without it.
constexpr std::size_t kMaxUnread = 16;

// One generation, shared by its request thread and the scheduler. Fields below `mu` are
// guarded by the backend's mutex.
struct Request {
  Request(std::vector<engine::TokenId> p, const engine::SamplerOptions& so, int n_vocab, int max)
      : prompt(std::move(p)), sampler(so, n_vocab), max_tokens(max) {}
  const std::vector<engine::TokenId> prompt;
  engine::Sampler sampler;  // used by the scheduler only
  const int max_tokens;
  bool logprobs = false;  // also report each token's log-probability (set before queueing)
  int top_logprobs = 0;
  // -- mu --
  std::deque<engine::TokenId> tokens;  // generated, not yet taken by the request thread
  std::deque<engine::TokenLogprobs> token_logprobs;  // beside `tokens`, when logprobs is set
  bool admitted = false;
  bool finished = false;  // the scheduler is done: finish_reason or error is set
  std::string finish_reason;
  Status error;
  bool abandoned = false;  // the request thread stopped reading (cancel, stop string, error)
};

struct Slot {
  std::unique_ptr<engine::Session> session;
  std::vector<engine::TokenId> history;  // tokens currently in the KV cache
  std::shared_ptr<Request> request;      // nullptr: free
  std::size_t prompt_fed = 0;            // prompt tokens in the cache
  engine::TokenId pending = 0;           // sampled, to be evaluated by the next step
  bool has_pending = false;
  int generated = 0;
  std::uint64_t admitted_at = 0;  // admission order (prompt chunks go oldest first)
};

// A scheduler thread with its Batch (threads and buffers) and the slots it steps together.
struct Lane {
  std::unique_ptr<engine::Batch> batch;
  std::vector<std::unique_ptr<Slot>> slots;
  std::vector<engine::BatchItem> items;  // the next step (reserved for every slot)
  std::vector<std::size_t> item_slot;
  std::vector<char> ready;  // per slot: takes part in the next step
  std::thread thread;
};

class EngineBackend : public ModelBackend {
 public:
  EngineBackend(std::unique_ptr<engine::Model> model, engine::Tokenizer tokenizer, std::string name)
      : model_(std::move(model)),
        tokenizer_(std::move(tokenizer)),
        name_(std::move(name)),
        tool_syntax_(engine::DetectToolCallSyntax(engine::ChatTemplateSource(*model_))),
        reasoning_tags_(
            engine::DetectReasoningMarkers(engine::ChatTemplateSource(*model_), &tokenizer_)) {}

  ~EngineBackend() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& lane : lanes_) {
      if (lane->thread.joinable()) lane->thread.join();
    }
  }

  Status Start(const EngineBackendOptions& o) {
    const int slots = std::max(1, o.slots);
    // Batched: one lane holds every slot and all threads. Per-slot: one lane per slot, each
    // with its own threads (cores / slots unless set), as before batching.
    const int lanes = o.batched ? 1 : slots;
    engine::BatchOptions bo;
    bo.n_threads = std::max(0, o.threads);  // 0: all cores
    if (!o.batched && o.threads <= 0) {
      bo.n_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / slots);
    }
    bo.n_ctx = std::max(0, o.ctx);
    bo.kv_type = o.kv_type;
    bo.max_rows = std::max(kStepRows, slots);
    for (int l = 0; l < lanes; ++l) {
      auto lane = std::make_unique<Lane>();
      // The memory check before allocating counts every slot's cache: all of them in the one
      // batched lane; per slot, the caches of this lane and the ones still to come.
      bo.sessions = o.batched ? slots : slots - l;
      AIRLOCK_ASSIGN_OR_RETURN(lane->batch, engine::Batch::Create(*model_, bo));
      const int n = o.batched ? slots : 1;
      for (int i = 0; i < n; ++i) {
        AIRLOCK_ASSIGN_OR_RETURN(auto session, lane->batch->NewSession());
        lane->slots.push_back(std::make_unique<Slot>());
        lane->slots.back()->session = std::move(session);
      }
      lane->items.reserve(n);
      lane->item_slot.reserve(n);
      lane->ready.assign(n, 0);
      n_ctx_ = lane->batch->n_ctx();
      for (const auto& slot : lane->slots) {
        kv_cache_.bytes += slot->session->kv_cache_bytes();
        kv_cache_.type = engine::KvCacheTypeName(slot->session->kv_type());
      }
      lanes_.push_back(std::move(lane));
    }
    for (auto& lane : lanes_) {
      try {
        lane->thread = std::thread([this, l = lane.get()] { SchedulerLoop(*l); });
      } catch (const std::system_error& e) {
        return Internal(std::string("engine: cannot start a scheduler thread: ") + e.what());
      }
    }
    return Status::Ok();
  }

  std::string Name() const override { return name_; }
  engine::ToolCallSyntax ToolSyntax() const override { return tool_syntax_; }
  engine::ReasoningMarkers ReasoningTags() const override { return reasoning_tags_; }
  KvCacheInfo KvCache() const override { return kv_cache_; }

  std::int64_t CountTokens(std::string_view text) const override {
    return static_cast<std::int64_t>(
        tokenizer_.Encode(text, /*add_special=*/false, /*parse_special=*/false).size());
  }

  Result<GenerateResult> Generate(const GenerateRequest& request,
                                  const std::function<bool(std::string_view)>& on_text,
                                  const std::atomic<bool>& cancel) override {
    std::vector<engine::TokenId> prompt;
    if (request.chat) {
      tmpl::Value tools;
      if (!request.tools_json.empty()) {
        AIRLOCK_ASSIGN_OR_RETURN(tools,
                                 tmpl::ValueFromJson(request.tools_json, /*mark_as_input=*/true));
      }
      AIRLOCK_ASSIGN_OR_RETURN(
          prompt, engine::EncodeChat(*model_, tokenizer_, request.messages, false, tools));
    } else {
      prompt = tokenizer_.Encode(request.prompt, /*add_special=*/true, /*parse_special=*/false);
    }
    if (prompt.empty()) return InvalidArgument("engine: empty prompt");
    if (static_cast<int>(prompt.size()) >= n_ctx_)
      return InvalidArgument("engine: the prompt has " + std::to_string(prompt.size()) +
                             " tokens; the context holds " + std::to_string(n_ctx_));

    engine::SamplerOptions so;
    so.temperature = static_cast<float>(request.temperature);
    so.top_p = static_cast<float>(request.top_p);
    so.seed = request.seed;
    so.top_k = 0;  // OpenAI's API has no top-k or min-p: only temperature and top_p apply
    so.min_p = 0;
    so.presence_penalty = static_cast<float>(request.presence_penalty);
    so.frequency_penalty = static_cast<float>(request.frequency_penalty);
    // response_format: tokens that cannot continue a document of the grammar are never drawn.
    std::shared_ptr<const engine::Grammar> grammar;
    if (!request.json_schema.empty()) {
      auto compiled = engine::CompileJsonSchema(request.json_schema);
      if (!compiled) return InvalidArgument("response_format: " + compiled.error().message());
      grammar = std::move(*compiled);
    } else if (request.json_object) {
      grammar = engine::JsonObjectGrammar();
    }
    const std::size_t n_prompt = prompt.size();
    auto req = std::make_shared<Request>(std::move(prompt), so, model_->config().n_vocab,
                                         request.max_tokens);
    req->logprobs = request.logprobs;
    req->top_logprobs = std::clamp(request.top_logprobs, 0, engine::kMaxTopLogprobs);
    if (grammar)
      req->sampler.SetConstraint(std::make_unique<engine::TokenConstraint>(grammar, tokenizer_));
    {
      std::lock_guard lock(mu_);
      queue_.push_back(req);
      g_queue_depth++;
    }
    work_cv_.notify_all();
    // Whatever way this returns, the scheduler stops working for it (frees its slot).
    struct Abandon {
      EngineBackend* self;
      Request* req;
      ~Abandon() { self->Abandon(req); }
    } abandon{this, req.get()};

    // Tool-call markers are special tokens: rendered when the request has tools.
    engine::StreamDecoder decoder(tokenizer_, /*render_special=*/!request.tools_json.empty());
    GenerateResult result;
    result.prompt_tokens = static_cast<std::int64_t>(n_prompt);
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
    std::deque<engine::TokenId> batch;
    std::deque<engine::TokenLogprobs> batch_logprobs;
    for (bool done = false; !done;) {
      bool finished = false;
      {
        std::unique_lock lock(mu_);
        out_cv_.wait_for(lock, std::chrono::milliseconds(50),
                         [&] { return !req->tokens.empty() || req->finished || cancel.load(); });
        if (cancel.load() && req->tokens.empty() && !req->finished) {
          if (!req->admitted) {  // still queued: give up the place in line
            queue_.erase(std::find(queue_.begin(), queue_.end(), req));
            g_queue_depth--;
            return Status(StatusCode::kCancelled, "engine: client went away while queued");
          }
          result.finish_reason = "cancelled";
          break;
        }
        batch.swap(req->tokens);
        batch_logprobs.swap(req->token_logprobs);
        finished = req->finished;
        if (finished && !req->error.ok() && batch.empty()) return req->error;
      }
      if (!batch.empty()) work_cv_.notify_all();  // the slot may have paused for this reader
      for (const engine::TokenLogprobs& lp : batch_logprobs) {
        engine::LogprobEntry e = engine::DescribeLogprobs(lp, tokenizer_);
        TokenLogprob out;
        out.token = std::move(e.chosen.token);
        out.bytes = std::move(e.chosen.bytes);
        out.logprob = e.chosen.logprob;
        for (auto& t : e.top)
          out.top.push_back({std::move(t.token), std::move(t.bytes), t.logprob});
        result.logprobs.push_back(std::move(out));
      }
      batch_logprobs.clear();
      for (engine::TokenId t : batch) {
        ++result.completion_tokens;
        if (!emit(decoder.Push(t), false)) {
          if (result.finish_reason != "stop") result.finish_reason = "cancelled";
          done = true;
          break;
        }
        if (cancel.load()) {
          result.finish_reason = "cancelled";
          done = true;
          break;
        }
      }
      batch.clear();
      if (!done && finished) {
        std::lock_guard lock(mu_);
        if (!req->error.ok()) return req->error;
        result.finish_reason = req->finish_reason;
        done = true;
      }
    }
    if (result.finish_reason != "stop" || pending.empty()) emit(decoder.Flush(), true);
    return result;
  }

 private:
  void Abandon(Request* req) {
    {
      std::lock_guard lock(mu_);
      if (req->finished || req->abandoned) return;
      req->abandoned = true;
    }
    work_cv_.notify_all();
  }

  // Ends `slot`'s request (under mu_): the reason, or an error.
  void Finish(Slot& slot, std::string reason, Status error = Status::Ok()) {
    slot.request->finished = true;
    slot.request->finish_reason = std::move(reason);
    slot.request->error = std::move(error);
    slot.request.reset();
    slot.has_pending = false;
  }

  // Gives queued requests free slots, FIFO; among free slots the one whose cached tokens share
  // the longest prefix with the prompt. Under mu_.
  void Admit(Lane& lane) {
    while (!queue_.empty()) {
      Slot* best = nullptr;
      std::size_t best_keep = 0;
      const auto& prompt = queue_.front()->prompt;
      for (auto& s : lane.slots) {
        if (s->request) continue;
        std::size_t keep = 0;
        while (keep < s->history.size() && keep < prompt.size() && s->history[keep] == prompt[keep])
          ++keep;
        if (best == nullptr || keep > best_keep) {
          best = s.get();
          best_keep = keep;
        }
      }
      if (best == nullptr) return;
      std::shared_ptr<Request> req = std::move(queue_.front());
      queue_.pop_front();
      g_queue_depth--;
      req->admitted = true;
      // Reuse the cached prefix (at least one prompt token is evaluated, to get logits).
      if (best_keep == prompt.size()) --best_keep;
      best->session->Rewind(static_cast<int>(best_keep));
      best->history.resize(best_keep);
      best->prompt_fed = best_keep;
      best->has_pending = false;
      best->generated = 0;
      best->admitted_at = admissions_++;
      best->request = std::move(req);
    }
  }

  // Samples the next token of `slot` from `logits` and hands it over; finishes the request on
  // an end-of-generation token, max_tokens or a full context. Under mu_.
  void SampleNext(Slot& slot, std::span<const float> logits) {
    Request& req = *slot.request;
    if (slot.generated >= req.max_tokens) return Finish(slot, "length");
    engine::TokenLogprobs lp;
    const engine::TokenId next =
        req.sampler.Sample(logits, req.top_logprobs, req.logprobs ? &lp : nullptr);
    // A grammar that allows no token: the document is complete (a vocabulary without an end
    // token), or a dead end.
    if (next == engine::kNoToken)
      return req.sampler.constraint_failed()
                 ? Finish(slot, "",
                          Internal("engine: no token can continue the response_format "
                                   "document"))
                 : Finish(slot, "stop");
    if (tokenizer_.IsEog(next)) return Finish(slot, "stop");
    req.sampler.Accept(next);
    req.tokens.push_back(next);
    if (req.logprobs) req.token_logprobs.push_back(std::move(lp));
    ++slot.generated;
    if (slot.generated >= req.max_tokens) return Finish(slot, "length");
    if (slot.session->position() >= slot.session->n_ctx()) return Finish(slot, "length");
    slot.pending = next;
    slot.has_pending = true;
  }

  void SchedulerLoop(Lane& lane) {
    std::vector<std::size_t> chunk_len(lane.slots.size(), 0);
    std::vector<Slot*> by_age;
    by_age.reserve(lane.slots.size());
    for (;;) {
      {
        std::unique_lock lock(mu_);
        for (;;) {
          for (auto& s : lane.slots) {  // free the slots of requests nobody reads any more
            if (s->request && s->request->abandoned) {
              s->request.reset();
              s->has_pending = false;
            }
          }
          Admit(lane);
          if (stop_) return;
          bool runnable = false;
          for (std::size_t i = 0; i < lane.slots.size(); ++i) {
            const Slot& s = *lane.slots[i];
            // A slot whose reader has not taken kMaxUnread tokens yet waits for it.
            lane.ready[i] =
                s.request != nullptr && !(s.has_pending && s.request->tokens.size() >= kMaxUnread);
            runnable |= lane.ready[i];
          }
          if (runnable) break;
          work_cv_.wait(lock);
        }
      }
      // The slots' own fields are the scheduler's alone; the requests' sampler too.
      lane.items.clear();
      lane.item_slot.clear();
      int rows = 0;
      for (std::size_t i = 0; i < lane.slots.size(); ++i) {  // one decode token per generating slot
        Slot& s = *lane.slots[i];
        if (!lane.ready[i] || !s.has_pending) continue;
        engine::BatchItem item;
        item.session = s.session.get();
        item.tokens = std::span<const engine::TokenId>(&s.pending, 1);
        lane.items.push_back(item);
        lane.item_slot.push_back(i);
        chunk_len[i] = 0;
        ++rows;
      }
      by_age.clear();
      for (std::size_t i = 0; i < lane.slots.size(); ++i) {
        Slot* s = lane.slots[i].get();
        if (lane.ready[i] && !s->has_pending && s->prompt_fed < s->request->prompt.size())
          by_age.push_back(s);
      }
      std::sort(by_age.begin(), by_age.end(),
                [](const Slot* a, const Slot* b) { return a->admitted_at < b->admitted_at; });
      for (Slot* s : by_age) {  // prompt chunks, oldest admission first
        const int budget = lane.batch->max_rows() - rows;
        if (budget <= 0) break;
        const auto& prompt = s->request->prompt;
        const std::size_t n = std::min<std::size_t>(budget, prompt.size() - s->prompt_fed);
        const std::size_t i =
            static_cast<std::size_t>(std::find_if(lane.slots.begin(), lane.slots.end(),
                                                  [&](auto& p) { return p.get() == s; }) -
                                     lane.slots.begin());
        engine::BatchItem item;
        item.session = s->session.get();
        item.tokens = std::span<const engine::TokenId>(prompt).subspan(s->prompt_fed, n);
        item.want_logits = s->prompt_fed + n == prompt.size();
        lane.items.push_back(item);
        lane.item_slot.push_back(i);
        chunk_len[i] = n;
        rows += static_cast<int>(n);
      }
      if (lane.items.empty()) continue;
      Status st = lane.batch->Step(lane.items);
      g_steps++;
      g_step_sequences += static_cast<std::int64_t>(lane.items.size());
      std::lock_guard lock(mu_);
      for (std::size_t k = 0; k < lane.items.size(); ++k) {
        Slot& s = *lane.slots[lane.item_slot[k]];
        if (!st.ok()) {  // should not happen (limits are checked before): end these requests
          s.session->Rewind(0);
          s.history.clear();
          Finish(s, "", st);
          continue;
        }
        if (chunk_len[lane.item_slot[k]] == 0) {
          s.history.push_back(s.pending);
          s.has_pending = false;
        } else {
          const auto& prompt = s.request->prompt;
          const std::size_t n = chunk_len[lane.item_slot[k]];
          s.history.insert(s.history.end(), prompt.begin() + s.prompt_fed,
                           prompt.begin() + s.prompt_fed + n);
          s.prompt_fed += n;
        }
        if (s.request->abandoned || !lane.items[k].want_logits) continue;
        SampleNext(s, lane.items[k].logits);
      }
      out_cv_.notify_all();
    }
  }

  std::unique_ptr<engine::Model> model_;
  engine::Tokenizer tokenizer_;
  std::string name_;
  engine::ToolCallSyntax tool_syntax_;
  engine::ReasoningMarkers reasoning_tags_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  int n_ctx_ = 0;
  KvCacheInfo kv_cache_;  // set by Start, then read-only
  std::mutex mu_;
  std::condition_variable work_cv_;  // the scheduler waits for requests
  std::condition_variable out_cv_;   // request threads wait for tokens
  std::deque<std::shared_ptr<Request>> queue_;
  std::uint64_t admissions_ = 0;
  bool stop_ = false;
};

}  // namespace

int EngineQueueDepth() { return g_queue_depth.load(); }

EngineStepCounts EngineSteps() { return {g_steps.load(), g_step_sequences.load()}; }

Result<std::shared_ptr<ModelBackend>> LoadEngineBackend(const std::string& gguf_path,
                                                        const EngineBackendOptions& options,
                                                        int model_fd) {
  engine::LoadOptions lo;
  lo.fd = model_fd;
  AIRLOCK_ASSIGN_OR_RETURN(auto model, engine::Model::Load(gguf_path, lo));
  AIRLOCK_ASSIGN_OR_RETURN(auto tokenizer, engine::Tokenizer::FromGguf(model->gguf()));
  auto backend =
      std::make_shared<EngineBackend>(std::move(model), std::move(tokenizer), options.name);
  AIRLOCK_TRY(backend->Start(options));
  return std::shared_ptr<ModelBackend>(std::move(backend));
}

}  // namespace airlock::server
