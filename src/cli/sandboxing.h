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
// inside a Hugging Face cache snapshot also reads that cache's blobs), writes only its `outputs`.
// Each output file is staged: a private folder is created beside it, the process forks, the child
// is confined with write rights in the staging folders only and returns to run the command (which
// writes to OutputPath(output)); the parent stays unconfined, parses nothing, and once the child
// exits renames each completed output into place, removes the staging folders and exits with the
// child's status. An output that is a device or FIFO (-o /dev/stdout) is written in place, granted
// alone. Without outputs there is no fork. Prints every degradation as a warning, and a warning
// when --no-sandbox was given. Then runs the test attempts of $AIRLOCK_TEST_SANDBOX_ATTEMPT, if
// set. Returns false after printing an error: the command must stop with its tool-error exit code
// (fail closed).
bool EnterSandbox(const char* command, const std::vector<std::string>& inputs,
                  const std::vector<std::string>& outputs = {});

// Where the command writes `output` (one of EnterSandbox's outputs): its staged path inside the
// sandbox, `output` itself otherwise (--no-sandbox, devices).
const std::string& OutputPath(const std::string& output);

}  // namespace airlock::cli
