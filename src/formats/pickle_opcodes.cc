// The opcode table: every opcode of protocols 0-5 with its pickletools name and the Machine::Step*
// family that executes it.
#include <array>

#include "formats/internal/pickle_vm.h"

namespace airlock::formats::pickle {

namespace internal {
namespace {

constexpr OpcodeInfo kOpcodes[] = {
    {kMark, "MARK", OpFamily::kControl},
    {kStop, "STOP", OpFamily::kControl},
    {kPop, "POP", OpFamily::kControl},
    {kPopMark, "POP_MARK", OpFamily::kControl},
    {kDup, "DUP", OpFamily::kControl},
    {kFloat, "FLOAT", OpFamily::kLiteral},
    {kInt, "INT", OpFamily::kLiteral},
    {kBinInt, "BININT", OpFamily::kLiteral},
    {kBinInt1, "BININT1", OpFamily::kLiteral},
    {kLong, "LONG", OpFamily::kLiteral},
    {kBinInt2, "BININT2", OpFamily::kLiteral},
    {kNone, "NONE", OpFamily::kLiteral},
    {kPersId, "PERSID", OpFamily::kCall},
    {kBinPersId, "BINPERSID", OpFamily::kCall},
    {kReduce, "REDUCE", OpFamily::kCall},
    {kString, "STRING", OpFamily::kLiteral},
    {kBinString, "BINSTRING", OpFamily::kLiteral},
    {kShortBinString, "SHORT_BINSTRING", OpFamily::kLiteral},
    {kUnicode, "UNICODE", OpFamily::kLiteral},
    {kBinUnicode, "BINUNICODE", OpFamily::kLiteral},
    {kAppend, "APPEND", OpFamily::kContainer},
    {kBuild, "BUILD", OpFamily::kCall},
    {kGlobal, "GLOBAL", OpFamily::kCall},
    {kDict, "DICT", OpFamily::kContainer},
    {kEmptyDict, "EMPTY_DICT", OpFamily::kContainer},
    {kAppends, "APPENDS", OpFamily::kContainer},
    {kGet, "GET", OpFamily::kMemo},
    {kBinGet, "BINGET", OpFamily::kMemo},
    {kInst, "INST", OpFamily::kCall},
    {kLongBinGet, "LONG_BINGET", OpFamily::kMemo},
    {kList, "LIST", OpFamily::kContainer},
    {kEmptyList, "EMPTY_LIST", OpFamily::kContainer},
    {kObj, "OBJ", OpFamily::kCall},
    {kPut, "PUT", OpFamily::kMemo},
    {kBinPut, "BINPUT", OpFamily::kMemo},
    {kLongBinPut, "LONG_BINPUT", OpFamily::kMemo},
    {kSetItem, "SETITEM", OpFamily::kContainer},
    {kTuple, "TUPLE", OpFamily::kContainer},
    {kEmptyTuple, "EMPTY_TUPLE", OpFamily::kContainer},
    {kSetItems, "SETITEMS", OpFamily::kContainer},
    {kBinFloat, "BINFLOAT", OpFamily::kLiteral},
    {kProto, "PROTO", OpFamily::kControl},
    {kNewObj, "NEWOBJ", OpFamily::kCall},
    {kExt1, "EXT1", OpFamily::kCall},
    {kExt2, "EXT2", OpFamily::kCall},
    {kExt4, "EXT4", OpFamily::kCall},
    {kTuple1, "TUPLE1", OpFamily::kContainer},
    {kTuple2, "TUPLE2", OpFamily::kContainer},
    {kTuple3, "TUPLE3", OpFamily::kContainer},
    {kNewTrue, "NEWTRUE", OpFamily::kLiteral},
    {kNewFalse, "NEWFALSE", OpFamily::kLiteral},
    {kLong1, "LONG1", OpFamily::kLiteral},
    {kLong4, "LONG4", OpFamily::kLiteral},
    {kBinBytes, "BINBYTES", OpFamily::kLiteral},
    {kShortBinBytes, "SHORT_BINBYTES", OpFamily::kLiteral},
    {kShortBinUnicode, "SHORT_BINUNICODE", OpFamily::kLiteral},
    {kBinUnicode8, "BINUNICODE8", OpFamily::kLiteral},
    {kBinBytes8, "BINBYTES8", OpFamily::kLiteral},
    {kEmptySet, "EMPTY_SET", OpFamily::kContainer},
    {kAddItems, "ADDITEMS", OpFamily::kContainer},
    {kFrozenSet, "FROZENSET", OpFamily::kContainer},
    {kNewObjEx, "NEWOBJ_EX", OpFamily::kCall},
    {kStackGlobal, "STACK_GLOBAL", OpFamily::kCall},
    {kMemoize, "MEMOIZE", OpFamily::kMemo},
    {kFrame, "FRAME", OpFamily::kControl},
    {kByteArray8, "BYTEARRAY8", OpFamily::kLiteral},
    {kNextBuffer, "NEXT_BUFFER", OpFamily::kLiteral},
    {kReadonlyBuffer, "READONLY_BUFFER", OpFamily::kLiteral},
};

constexpr std::array<const OpcodeInfo*, 256> IndexByByte() {
  std::array<const OpcodeInfo*, 256> index{};
  for (const OpcodeInfo& info : kOpcodes) index[info.op] = &info;
  return index;
}

constexpr std::array<const OpcodeInfo*, 256> kByByte = IndexByByte();

}  // namespace

const OpcodeInfo* FindOpcode(std::uint8_t op) { return kByByte[op]; }

}  // namespace internal

std::string OpcodeName(std::uint8_t op) {
  const internal::OpcodeInfo* info = internal::FindOpcode(op);
  return info != nullptr ? std::string(info->name) : internal::Hex2(op);
}

}  // namespace airlock::formats::pickle
