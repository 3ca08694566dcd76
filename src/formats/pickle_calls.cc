// The opcodes that import, call or build: each records an Event at the offset where CPython
// would act, before anything that can fail afterwards.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "formats/internal/pickle_vm.h"

namespace airlock::formats::pickle::internal {

// Imports, calls, BUILD, extensions and persistent ids: every event the VM records.
bool Machine::StepCall() {
  switch (op_) {
    case kGlobal: {
      std::string_view module = ReadLine();
      if (module.size() + 1 < 2) Truncated();
      if (!ValidUtf8(module, false)) Corrupt("GLOBAL module name is not valid UTF-8");
      std::string_view name = ReadLine();
      if (name.size() + 1 < 2) Truncated();
      if (!ValidUtf8(name, false)) Corrupt("GLOBAL name is not valid UTF-8");
      FindClass(std::string(module), std::string(name), false);
      return false;
    }
    case kStackGlobal: {
      std::uint32_t name = PopValue();
      std::uint32_t module = PopValue();
      bool str_ok = IsStr(name) && IsStr(module);
      if (!str_ok && !((IsStr(name) || Opaque(name)) && (IsStr(module) || Opaque(module)))) {
        Corrupt("STACK_GLOBAL requires str");
      }
      if (str_ok) {
        FindClass(std::string(StrOf(module)), std::string(StrOf(name)), false);
      } else {
        // Operands computed at load time (e.g. results of calls): the name is unknowable.
        FindClass(IsStr(module) ? std::string(StrOf(module)) : RefOf(module).Display(),
                  IsStr(name) ? std::string(StrOf(name)) : RefOf(name).Display(), true);
      }
      return false;
    }
    case kInst: {
      std::size_t m = Marker();
      std::string_view module = ReadLine();
      if (module.size() + 1 < 2) Truncated();
      for (char c : module) {
        if (static_cast<unsigned char>(c) >= 0x80) Corrupt("INST module name is not ASCII");
      }
      std::string_view name = ReadLine();
      if (name.size() + 1 < 2) Truncated();
      for (char c : name) {
        if (static_cast<unsigned char>(c) >= 0x80) Corrupt("INST class name is not ASCII");
      }
      std::uint32_t g = NewGlobal(std::string(module), std::string(name), false);
      EmitImport(g);
      std::uint32_t args = PopTuple(m);
      Push(EmitCall(g, args));
      return false;
    }
    case kExt1:
    case kExt2:
    case kExt4: {
      int w = op_ == kExt1 ? 1 : op_ == kExt2 ? 2 : 4;
      std::int64_t code =
          w == 4 ? static_cast<std::int32_t>(ReadUint(4)) : static_cast<std::int64_t>(ReadUint(w));
      if (code <= 0) Corrupt("EXT specifies code <= 0");
      Event e;
      e.kind = EventKind::kExtension;
      e.offset = op_offset_;
      e.opcode = op_;
      e.detail = "extension code " + std::to_string(code) +
                 " (copyreg's registry is empty by default; a registered code imports "
                 "whatever global it names)";
      Emit(std::move(e));
      Push(NewValue(VK::kExt));
      return false;
    }
    // ---- calls
    case kReduce: {
      std::uint32_t args = PopValue();
      std::uint32_t callable = PopValue();
      RequireCallable(callable);
      if (values_[args].kind != VK::kTuple && !Opaque(args)) {
        Corrupt("argument list must be a tuple");
      }
      Push(EmitCall(callable, args));
      return false;
    }
    case kNewObj:
    case kNewObjEx: {
      std::uint32_t kwargs = op_ == kNewObjEx ? PopValue() : kNoValue;
      std::uint32_t args = PopValue();
      std::uint32_t cls = PopValue();
      if (!Opaque(cls)) Corrupt("NEWOBJ class argument must be a type");
      if (values_[args].kind != VK::kTuple && !Opaque(args)) {
        Corrupt("NEWOBJ args argument must be a tuple");
      }
      if (kwargs != kNoValue && values_[kwargs].kind != VK::kDict && !Opaque(kwargs)) {
        Corrupt("NEWOBJ_EX kwargs argument must be a dict");
      }
      Push(EmitCall(cls, args, kwargs != kNoValue ? " **" + Summary(kwargs) : std::string()));
      return false;
    }
    case kObj: {
      std::size_t m = Marker();
      if (stack_.size() < m + 1) Underflow();
      std::uint32_t args = PopTuple(m + 1);
      std::uint32_t cls = PopValue();
      RequireCallable(cls);
      Push(EmitCall(cls, args));
      return false;
    }
    case kBuild: {
      if (stack_.size() < 2 || stack_.size() - 2 < Fence()) Underflow();
      std::uint32_t state = PopValue();
      std::uint32_t inst = stack_.back();
      Event e;
      e.kind = EventKind::kBuild;
      e.offset = op_offset_;
      e.opcode = op_;
      e.ref = RefOf(inst);
      e.args = Summary(state);
      CollectBytes(state, e.byte_args);
      Emit(std::move(e));
      VK ik = values_[inst].kind;
      if (!Opaque(inst) && values_[state].kind != VK::kNone) {
        // Builtin values have no __setstate__ and no __dict__: CPython fails.
        Corrupt(std::string("cannot BUILD a ") + std::string(KindName(ik)));
      }
      if (IsDtypeObject(inst)) dtype_state_[inst] = state;
      if (IsJoblibWrapper(inst)) JoblibReadArray(inst, state);
      return false;
    }
    case kPersId: {
      std::string_view line = ReadLine();
      for (char c : line) {
        if (static_cast<unsigned char>(c) >= 0x80) {
          Corrupt("persistent IDs in protocol 0 must be ASCII strings");
        }
      }
      Event e;
      e.kind = EventKind::kPersistentId;
      e.offset = op_offset_;
      e.opcode = op_;
      e.detail = "'" + Printable(line) + "'";
      Emit(std::move(e));
      Push(NewValue(VK::kPersistent));
      return false;
    }
    case kBinPersId: {
      std::uint32_t pid = PopValue();
      Event e;
      e.kind = EventKind::kPersistentId;
      e.offset = op_offset_;
      e.opcode = op_;
      e.detail = Summary(pid);
      DescribeStorage(pid, e);
      CollectBytes(pid, e.byte_args);
      Emit(std::move(e));
      Push(NewValue(VK::kPersistent));
      return false;
    }
    default:
      // Unreachable: FindOpcode(op_) named this family.
      Corrupt("invalid load key, '" + Hex2(op_) + "'");
  }
}

std::uint32_t Machine::EmitCall(std::uint32_t callee, std::uint32_t args, std::string extra) {
  Event e;
  e.kind = EventKind::kCall;
  e.offset = op_offset_;
  e.opcode = op_;
  e.ref = RefOf(callee);
  if (args != kNoValue) {
    e.args = Summary(args);
    CollectBytes(args, e.byte_args);
    const Ref* g = GlobalOf(callee);
    bool describe =
        !limits_.describe_args_of || (g != nullptr && limits_.describe_args_of(g->qualname));
    // Events past max_events are dropped (and reported); the per-stream node budget keeps a
    // stream of many such calls from costing memory per call. Past it, arguments stay
    // unknown (args_known false), which the scanner treats as not known statically.
    bool kept = out_.events.size() < limits_.max_events;
    if (describe && kept && arg_nodes_left_ > 0 && values_[args].kind == VK::kTuple) {
      const auto* items = Items(args);
      e.args_known = items != nullptr && items->size() == values_[args].count;
      int budget = kMaxArgNodes;
      if (items != nullptr) {
        for (std::size_t k = 0; k < items->size() && k < kMaxArgItems; ++k) {
          e.call_args.push_back(DescribeArg((*items)[k], 0, budget));
        }
        if (items->size() > kMaxArgItems) e.args_known = false;
      }
      arg_nodes_left_ -=
          std::min<std::uint64_t>(arg_nodes_left_, kMaxArgNodes - std::max(budget, 0));
    }
  }
  if (!extra.empty()) e.args += extra;
  Emit(std::move(e));
  std::uint32_t r = NewValue(VK::kCallResult);
  values_[r].callee = callee;
  values_[r].args = args;
  if (args != kNoValue) CarryBytes(r, callee, args);
  return r;
}

// A method called on an object that is not a builtin container (APPEND/SETITEM/ADDITEMS).
void Machine::EmitMethodCall(std::uint32_t obj, std::string_view method, std::uint32_t arg) {
  Event e;
  e.kind = EventKind::kCall;
  e.offset = op_offset_;
  e.opcode = op_;
  e.ref = RefOf(obj);
  if (e.ref.is_global) {
    e.ref.qualname += "." + std::string(method);
  } else {
    e.ref.origin += "." + std::string(method);
  }
  if (arg != kNoValue) {
    e.args = Summary(arg);
    CollectBytes(arg, e.byte_args);
  }
  Emit(std::move(e));
}

// PyTorch's persistent ids: ('storage', <storage type>, key, location, numel).
void Machine::DescribeStorage(std::uint32_t pid, Event& e) {
  if (values_[pid].kind != VK::kTuple) return;
  const auto* items = Items(pid);
  if (items == nullptr || items->size() < 5 || !IsStr((*items)[0]) ||
      StrOf((*items)[0]) != "storage") {
    return;
  }
  if (const Ref* g = GlobalOf((*items)[1])) e.storage_type = g->qualname;
  if (IsStr((*items)[2])) e.storage_key = std::string(StrOf((*items)[2]));
  if (values_[(*items)[4]].kind == VK::kInt) e.storage_numel = values_[(*items)[4]].i;
}

}  // namespace airlock::formats::pickle::internal
