// The gateway's reader of its model worker (server/internal/worker_protocol.h): the worker runs a
// hostile model's code, so every byte it sends is fuzz input. The first byte picks how the rest is
// fed to the FrameDecoder (all at once, or in chunks of 1..255 bytes, so that frames split across
// reads are covered); every decoded frame goes through ParseWorkerMessage, and a worker's request
// decoding (GenerateRequestFromWire) and a result's round trip are checked too. Nothing may
// crash, hang or allocate a length a header claims; a frame after an error is never read.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/internal/worker_protocol.h"

using namespace airlock::server;
using namespace airlock::server::internal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = data[0] == 0 ? size : data[0];
  const char* p = reinterpret_cast<const char*>(data + 1);
  std::size_t left = size - 1;
  FrameDecoder decoder(kMaxWorkerFrameBytes);
  bool failed = false;
  while (left > 0 && !failed) {
    const std::size_t n = left < chunk ? left : chunk;
    decoder.Feed(p, n);
    p += n;
    left -= n;
    // Never more than one frame's limit plus one read of bytes waiting.
    if (decoder.buffered() > kMaxWorkerFrameBytes + 4 + n) std::abort();
    for (;;) {
      auto frame = decoder.Next();
      if (!frame) {
        failed = true;
        break;
      }
      if (!frame->has_value()) break;
      if ((*frame)->kind == 'J') {
        // The same JSON as a request the worker would decode.
        if (auto it = (*frame)->json.find("request"); it != (*frame)->json.end())
          (void)GenerateRequestFromWire(*it);
      }
      auto message = ParseWorkerMessage(std::move(**frame));
      if (message && message->op == WorkerMessage::Op::kDone) {
        // A validated result survives the round trip unchanged.
        auto again = GenerateResultFromWire(ToWire(message->result));
        if (!again || again->prompt_tokens != message->result.prompt_tokens ||
            again->completion_tokens != message->result.completion_tokens ||
            again->finish_reason != message->result.finish_reason)
          std::abort();
      }
      if (message && message->text.size() > kMaxWorkerFrameBytes) std::abort();
    }
  }
  return 0;
}
