// Saved-logits reader fuzz target (engine/perplexity.h LogitsFile::Parse): any bytes must be
// accepted or refused with a Status, never crash, hang or over-allocate. An accepted file is read
// back completely (tokens and every row) and one row is fed to the KL accumulator, as the
// --kl-divergence path does.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/perplexity.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto file = airlock::engine::LogitsFile::Parse(
      std::as_bytes(std::span<const std::uint8_t>(data, size)), "fuzz");
  if (!file.has_value()) return 0;
  const auto tokens = file->Tokens();
  (void)tokens;
  airlock::engine::KlAccumulator kl;
  for (std::uint64_t i = 0; i < file->rows(); ++i) {
    const auto row = file->Row(i);
    if (i == 0) {
      std::vector<float> logits(file->header().n_vocab > 4096 ? 4096 : file->header().n_vocab,
                                0.5f);
      (void)kl.Add(row, logits);
    }
  }
  (void)kl.Summarize();
  return 0;
}
