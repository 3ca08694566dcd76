// SSE to the client: relays a Channel's events through the response policy (TransformChunk), with
// the stream's deadline, keep-alive comments while nothing is sent, and settlement of the request
// when the stream ends, fails or the client goes away.
#include "server/internal/sse.h"

#include "server/internal/gateway_impl.h"
#include "server/internal/http_common.h"
#include "server/internal/json_limits.h"
#include "server/internal/policy_apply.h"

namespace airlock::server {

using namespace internal;

void Gateway::Impl::StreamToClient(std::shared_ptr<RequestState> st, std::shared_ptr<Channel> ch,
                                   HttpResponse& res) {
  res.set_header("Cache-Control", "no-cache");
  TrackChannel(ch);  // a drain past its deadline cancels the stream
  auto buffer = std::make_shared<std::string>();
  auto done = std::make_shared<bool>(false);
  // A stream has an overall deadline ([server] request_timeout_s), and while nothing is sent (an
  // upstream that is silent or sends only comments) the client gets an SSE comment about once a
  // second, so that a client that went away is noticed (the write fails) without waiting for the
  // upstream: the stream is then cancelled and settled as 499.
  const Clock::time_point deadline =
      st->start + std::chrono::seconds(policy().server.request_timeout_s);
  auto last_write = std::make_shared<Clock::time_point>(Clock::now());
  auto provide = [this, st, ch, buffer, done, deadline, last_write](std::size_t, DataSink& sink) {
    auto keep_alive = [&]() {
      if (Clock::now() - *last_write < std::chrono::seconds(1)) return true;
      static constexpr char kComment[] = ": keep-alive\n\n";
      if (!sink.write(kComment, sizeof kComment - 1)) {
        ch->Cancel();
        return false;
      }
      *last_write = Clock::now();
      return true;
    };
    if (Clock::now() >= deadline) {
      ch->Cancel();
      std::int64_t charged = st->reservation ? st->reservation->tokens : 0;
      st->actions.push_back("stream_timeout: stream cut off after " +
                            std::to_string(policy().server.request_timeout_s) + " s");
      Finish(*st, 504, charged, st->ResponseText());
      json err = json::parse(
          ErrorBody(504, "The stream exceeded the gateway's time limit.", "stream_timeout"));
      std::string tail = "data: " + DumpJson(err) + "\n\ndata: [DONE]\n\n";
      *done = true;
      if (!sink.write(tail.data(), tail.size())) return false;
      sink.done();
      return true;
    }
    std::string incoming;
    Channel::Got got = ch->TakeFor(&incoming, std::chrono::milliseconds(500));
    if (got == Channel::Got::kIdle) return keep_alive();
    bool more = got == Channel::Got::kData;
    if (more) {
      bool wrote = false;
      for (char c : incoming)
        if (c != '\r') buffer->push_back(c);
      std::size_t end;
      while ((end = buffer->find("\n\n")) != std::string::npos) {
        std::string event = buffer->substr(0, end);
        buffer->erase(0, end + 2);
        std::string payload;
        std::size_t pos = 0;
        while (pos <= event.size()) {
          std::size_t nl = event.find('\n', pos);
          std::string line =
              event.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
          if (line.rfind("data:", 0) == 0) {
            std::string v = line.substr(5);
            if (!v.empty() && v[0] == ' ') v.erase(0, 1);
            if (!payload.empty()) payload += "\n";
            payload += v;
          }
          if (nl == std::string::npos) break;
          pos = nl + 1;
        }
        if (payload.empty() || payload == "[DONE]") continue;
        std::string out = TransformChunk(*st, payload);
        if (st->stream_broken || st->response_blocked) break;
        if (out.empty()) continue;
        std::string frame = "data: " + out + "\n\n";
        if (!sink.write(frame.data(), frame.size())) {
          ch->Cancel();
          return false;
        }
        wrote = true;
        *last_write = Clock::now();
      }
      // An event that never ends (or one past the limits) stops the upstream.
      if (st->response_blocked) {
        ch->Cancel();
        buffer->clear();
      } else if (st->stream_broken || buffer->size() > internal::kMaxSseEventBytes) {
        st->stream_broken = true;
        ch->Cancel();
        buffer->clear();
      }
      return wrote || keep_alive();
    }
    // Producer finished: flush held-back text, record, then end the stream.
    std::string tail;
    for (int index : st->HeldIndices()) {
      json delta = json::object();
      st->FlushHeld(index, delta);
      if (delta.empty()) continue;
      json chunk = {{"id", st->request_id},
                    {"object", "chat.completion.chunk"},
                    {"created", NowSeconds()},
                    {"model", st->model}};
      chunk["choices"] =
          json::array({json{{"index", index}, {"delta", delta}, {"finish_reason", nullptr}}});
      tail += "data: " + DumpJson(chunk) + "\n\n";
    }
    for (auto& [index, c] : st->choices) {
      std::string rest = st->FinishChoice(index);
      if (rest.empty()) continue;
      json chunk = {{"id", st->request_id},
                    {"object", st->chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", NowSeconds()},
                    {"model", st->model}};
      chunk["choices"] = json::array(
          {st->chat
               ? json{{"index", index}, {"delta", {{"content", rest}}}, {"finish_reason", nullptr}}
               : json{{"index", index}, {"text", rest}, {"finish_reason", nullptr}}});
      tail += "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
    }
    st->SettleCounts(st->streamed_pieces);
    if (!st->model_failure.empty())
      st->actions.push_back("model failed: " + ModelErrorDetail(st->model_failure));
    bool ok = ch->error == 0 && !st->stream_broken;
    if (st->response_unredactable) {
      Finish(*st, 502, st->prompt_tokens + st->completion_tokens, st->ResponseText());
      json err = json::parse(ErrorBody(
          502, "Upstream answered with " + st->response_block_reason + ".", "upstream_error"));
      tail += "data: " + DumpJson(err) + "\n\n";
    } else if (st->response_blocked) {
      // The answer so far was sent; it ends with an error the client can see.
      Finish(*st, 403, st->prompt_tokens + st->completion_tokens, st->ResponseText());
      json err = json::parse(ErrorBody(
          403, "Response blocked by policy: " + st->response_block_reason, "policy_violation"));
      tail += "data: " + DumpJson(err) + "\n\n";
    } else {
      // Cancelled by a drain past its deadline: 503, charged what was produced.
      if (!ok && cancel_all.load()) st->actions.push_back("cancelled: server shutting down");
      Finish(*st, ok ? 200 : (cancel_all.load() ? 503 : 502),
             st->prompt_tokens + st->completion_tokens, st->ResponseText());
    }
    if (!ok && !st->response_blocked) {
      json err = json::parse(ErrorBody(502, "Upstream stream ended abnormally.", "upstream_error"));
      tail += "data: " + DumpJson(err) + "\n\n";
    }
    tail += "data: [DONE]\n\n";
    *done = true;
    if (!sink.write(tail.data(), tail.size())) return false;
    sink.done();
    return true;
  };
  res.set_chunked_content_provider(
      "text/event-stream",
      [provide, ch](std::size_t offset, DataSink& sink) {
        try {
          return provide(offset, sink);
        } catch (const std::exception& e) {
          // Ends the connection; the releaser below settles the request.
          std::fprintf(stderr, "airlock serve: stream error: %s\n", e.what());
          ch->Cancel();
          return false;
        }
      },
      [this, st, ch, done](bool) {
        ch->Cancel();
        if (!*done) {
          // Client went away mid-stream: charge the whole reservation, record it.
          std::int64_t charged = st->reservation ? st->reservation->tokens : 0;
          if (cancel_all.load()) st->actions.push_back("cancelled: server shutting down");
          Finish(*st, 499, charged, st->ResponseText());
        }
      });
}

}  // namespace airlock::server
