// Internal to the scan module: the pickle analyzer's policy. One allow-list of (module, qualname)
// globals with the declared effect of each (what the real function does with its arguments), a
// deny-list that only labels severity, and the judgement of one imported global. Thread-safety:
// the tables are built once (function-local statics) and read-only afterwards.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "formats/pickle.h"
#include "scan/scan.h"

namespace airlock::scan::internal {

// The allow-list and the declared effect of every name on it: ONE table. An allow-listed
// global is only safe if nothing it does with its arguments can run code, so each entry says
// what the real function does with what it is given (read from torch/_utils.py,
// torch/_tensor.py, torch/storage.py, copyreg.py, numpy's _reconstruct and collections):
//   (no effect)        pure: builds a value from data; calls nothing it is given
//   kValue             a constant (dtype, layout...): calling it fails
//   kConvertsBytes     returns its argument's bytes transformed (the emulator tracks them)
//   kCallsArg n, m     calls argument n with the items of argument m as positional arguments
//   kInstantiatesArg n creates an instance of the type in argument n (runs its __new__,
//                      __init__, __setstate__ or __array_finalize__)
//   kDeserializesArg n unpickles / torch.loads the bytes in argument n
//   kStoresCallable n  keeps argument n and calls it later (defaultdict's default_factory)
// Whatever reaches a call or a loader through such an argument is judged like a direct call
// (PickleAnalysis::ApplyEffects); names outside this table are not allowed.
struct Effect {
  enum Kind {
    kValue,
    kConvertsBytes,
    kCallsArg,
    kInstantiatesArg,
    kDeserializesArg,
    kStoresCallable,
  } kind;
  int arg = 0;         // the argument called / instantiated / deserialized / stored
  int args_from = -1;  // kCallsArg: the argument whose items are the call's arguments
};
using Effects = std::vector<Effect>;

// The allow-list: "module.qualname" -> its effects (empty: pure).
const std::unordered_map<std::string, Effects>& AllowList();

// True for callables whose bytes arguments are themselves deserialized (torch.load, pickle.loads...):
// those bytes are always scanned.
bool IsLoader(const std::string& full);

// The last dotted component of every allow-listed name with effects and of every loader: the
// calls whose arguments the emulator describes structurally (a superset is harmless).
const std::unordered_set<std::string_view>& EffectfulQualnames();

struct Judgement {
  enum Kind { kAllowed, kUnknown, kDangerous } kind = kUnknown;
  Severity severity = Severity::kMedium;
  std::string why;
};

// Allowed (on the allow-list), dangerous (computed, dunder or deny-listed: with its severity) or
// unknown (medium, needs review).
Judgement JudgeGlobal(const formats::pickle::Ref& ref);

}  // namespace airlock::scan::internal
