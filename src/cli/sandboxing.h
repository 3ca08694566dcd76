// The sandbox (sandbox/sandbox.h) as the read-only commands use it: `--no-sandbox` on each of
// them, and one EnterSandbox call per command once its inputs and outputs are known and before
// it starts a thread or parses a byte of the model.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace airlock::cli {

// Adds --no-sandbox to scan, inspect, tokenize, run, chat, perplexity and verify (call after
// they are registered).
void AddSandboxFlags(CLI::App& app);

// Applies the sandbox for `command`: reads beneath `inputs` only (plus system files; a folder
// inside a Hugging Face cache snapshot also reads that cache's blobs), writes only in the folders
// of `outputs`. Prints every degradation as a warning, and a warning when --no-sandbox was given.
// Then runs the test attempts of $AIRLOCK_TEST_SANDBOX_ATTEMPT, if set. Returns false after
// printing an error: the command must stop with its tool-error exit code (fail closed).
bool EnterSandbox(const char* command, const std::vector<std::string>& inputs,
                  const std::vector<std::string>& outputs = {});

}  // namespace airlock::cli
