// Issue #12: gadget chains through allow-listed callables (class 1), resource attacks on the real
// unpickler (class 3) and numpy dtype semantics in joblib files (class 2). Each attack is
// hand-built here, byte by byte, and scanned end to end with scan::ScanBuffer. The same attacks,
// detonated against the real libraries, are in tools/oracle (docs/pickle-scanning.md).
#include <gtest/gtest.h>

#include <string>

#include "container_builders.h"
#include "pickle_test_util.h"
#include "scan/scan.h"

namespace {

using airlock::scan::Severity;
using airlock::scan::Verdict;
using namespace airlock::testing::pkl;

airlock::scan::FileReport Scan(const std::string& bytes, const std::string& name = "model.pt") {
  airlock::scan::ScanOptions options;
  return airlock::scan::ScanBuffer(Bytes(bytes), name, options);
}

bool HasRule(const airlock::scan::FileReport& r, const std::string& rule) {
  for (const auto& f : r.findings) {
    if (f.rule_id == rule) return true;
  }
  return false;
}

// A finding in a nested member (the bytes a loader deserializes) naming `what`.
bool NestedFinding(const airlock::scan::FileReport& r, const std::string& what) {
  for (const auto& f : r.findings) {
    if (f.member.find("nested@") != std::string::npos &&
        f.message.find(what) != std::string::npos && f.severity >= Severity::kHigh) {
      return true;
    }
  }
  return false;
}

// BINBYTES with a 4-byte length.
std::string B(const std::string& s) { return "B" + Le(s.size(), 4) + s; }

// Payloads without a PROTO header: protocol 0 (text opcodes) and protocol 1 (binary opcodes).
const std::string kProto0System = "cos\nsystem\n(S'id'\ntR.";
const std::string kProto1System = S("cos\nsystem\nq\x00(U\x02idtR.");

// torch._tensor._rebuild_from_type_v2(func, new_type, args, state), protocol 2 text globals.
std::string RebuildFromType(const std::string& func, const std::string& args) {
  return "ctorch._tensor\n_rebuild_from_type_v2\n(" + func + "ctorch\nTensor\n" + args + "}tR";
}
const std::string kLoadFromBytes = "ctorch.storage\n_load_from_bytes\n";

// ---- class 1: allow-listed callables that call their arguments -------------------------------

TEST(GadgetClass1, RebuildFromTypeV2CallsLoadFromBytesWithProtocol0Pickle) {
  auto r = Scan(Proto(2) + RebuildFromType(kLoadFromBytes, "(" + B(kProto0System) + "t") + ".");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.gadget-call")) << Dump(r);
  EXPECT_TRUE(NestedFinding(r, "os.system")) << Dump(r);
}

TEST(GadgetClass1, RebuildFromTypeV2CallsLoadFromBytesWithProtocol1Pickle) {
  auto r = Scan(Proto(2) + RebuildFromType(kLoadFromBytes, "(" + B(kProto1System) + "t") + ".");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(NestedFinding(r, "os.system")) << Dump(r);
}

TEST(GadgetClass1, WholeFileInProtocol0) {
  // The outer pickle has no header either; the bytes are a STRING literal (escaped).
  std::string escaped = "cos\\nsystem\\n(S\\'id\\'\\ntR.";
  auto r = Scan(
      "ctorch._tensor\n_rebuild_from_type_v2\n(ctorch.storage\n_load_from_bytes\n"
      "ctorch\nTensor\n(c_codecs\nencode\n(S'" +
          escaped + "'\nS'latin1'\ntRt(dtR.",
      "model.bin");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(NestedFinding(r, "os.system")) << Dump(r);
}

TEST(GadgetClass1, NestedRebuildFromTypeV2Chains) {
  std::string inner = RebuildFromType(kLoadFromBytes, "(" + B(kProto0System) + "t");
  // _rebuild_from_type_v2(_rebuild_from_type_v2, Tensor, (_load_from_bytes, Tensor, (b,), {}), {})
  std::string outer =
      "ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._tensor\n_rebuild_from_type_v2\n"
      "ctorch\nTensor\n(" +
      kLoadFromBytes + "ctorch\nTensor\n(" + B(kProto0System) + "t}t}tR";
  auto r = Scan(Proto(2) + outer + ".");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(NestedFinding(r, "os.system")) << Dump(r);
  (void)inner;
}

TEST(GadgetClass1, MemoIndirectionOfTheLoader) {
  // The loader is memoized first (q\x05) and fetched back (h\x05) as the func argument.
  std::string p = Proto(2) + kLoadFromBytes + "q\x05" + "0" +
                  "ctorch._tensor\n_rebuild_from_type_v2\n(h\x05" + "ctorch\nTensor\n(" +
                  B(kProto0System) + "t}tR.";
  auto r = Scan(p);
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(NestedFinding(r, "os.system")) << Dump(r);
}

TEST(GadgetClass1, Protocol4AndListArguments) {
  // STACK_GLOBAL names, a list instead of a tuple for args, protocol 4 framing-free.
  std::string p = Proto(4) + U("torch._tensor") + U("_rebuild_from_type_v2") + kStackGlobal + "(" +
                  U("torch.storage") + U("_load_from_bytes") + kStackGlobal + U("torch") +
                  U("Tensor") + kStackGlobal + "]" + B(kProto1System) + "a}tR.";
  auto r = Scan(p);
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(NestedFinding(r, "os.system")) << Dump(r);
}

TEST(GadgetClass1, GadgetCalledThroughObjAndInst) {
  // OBJ: MARK callable args... OBJ; INST: MARK args... INST module\nname\n.
  std::string args = kLoadFromBytes + "ctorch\nTensor\n(" + B(kProto0System) + "t}";
  auto obj = Scan(Proto(2) + "(ctorch._tensor\n_rebuild_from_type_v2\n" + args + "o.");
  EXPECT_EQ(obj.verdict, Verdict::kMalicious) << Dump(obj);
  EXPECT_TRUE(NestedFinding(obj, "os.system")) << Dump(obj);
  auto inst = Scan("(" + args + "itorch._tensor\n_rebuild_from_type_v2\n.");
  EXPECT_EQ(inst.verdict, Verdict::kMalicious) << Dump(inst);
  EXPECT_TRUE(NestedFinding(inst, "os.system")) << Dump(inst);
}

TEST(GadgetClass1, LoaderOutsideTheAllowListReachedThroughAGadget) {
  auto r = Scan(Proto(2) + RebuildFromType("cpickle\nloads\n", "(" + B(kProto0System) + "t") + ".");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(NestedFinding(r, "os.system")) << Dump(r);
}

TEST(GadgetClass1, DirectLoaderBytesAreAPickleWhateverTheirFirstByte) {
  auto p0 = Scan(Proto(2) + kLoadFromBytes + B(kProto0System) + "\x85R.");
  EXPECT_EQ(p0.verdict, Verdict::kMalicious) << Dump(p0);
  EXPECT_TRUE(NestedFinding(p0, "os.system")) << Dump(p0);
  auto p1 = Scan(Proto(2) + "c_pickle\nloads\n" + B(kProto1System) + "\x85R.");
  EXPECT_TRUE(NestedFinding(p1, "os.system")) << Dump(p1);
}

TEST(GadgetClass1, UnknownCallableOrBytesAreInconclusive) {
  // func is a call result: what it is cannot be known statically.
  auto func = Scan(Proto(2) + RebuildFromType("ccollections\nOrderedDict\n)R", "(t") + ".");
  EXPECT_EQ(func.verdict, Verdict::kInconclusive) << Dump(func);
  // The bytes the loader gets are a call result.
  auto bytes =
      Scan(Proto(2) + RebuildFromType(kLoadFromBytes, "(ccollections\nOrderedDict\n)Rt") + ".");
  EXPECT_NE(bytes.verdict, Verdict::kClean) << Dump(bytes);
  // args itself is a call result.
  auto args =
      Scan(Proto(2) + RebuildFromType(kLoadFromBytes, "ccollections\nOrderedDict\n)R") + ".");
  EXPECT_NE(args.verdict, Verdict::kClean) << Dump(args);
  // codecs.encode with a codec other than Latin-1/UTF-8 transforms the text: not known.
  auto codec = Scan(Proto(2) + kLoadFromBytes + S("c_codecs\nencode\nX\x05\x00\x00\x00hello") +
                    S("X\x06\x00\x00\x00utf-16\x86R\x85R."));
  EXPECT_NE(codec.verdict, Verdict::kClean) << Dump(codec);
}

TEST(GadgetClass1, LoaderGivenAsATypeOrAStoredCallable) {
  // numpy's _reconstruct instantiates its first argument; defaultdict keeps a callable.
  auto reconstruct = Scan(Proto(2) + "cnumpy.core.multiarray\n_reconstruct\n" + kLoadFromBytes +
                          S("K\x00\x85") + "C\x01" + "b\x87R.");
  EXPECT_NE(reconstruct.verdict, Verdict::kClean) << Dump(reconstruct);
  auto factory = Scan(Proto(2) + "ccollections\ndefaultdict\n" + kLoadFromBytes + "\x85R.");
  EXPECT_NE(factory.verdict, Verdict::kClean) << Dump(factory);
  auto copyreg = Scan(Proto(2) + "ccopy_reg\n_reconstructor\n(" + kLoadFromBytes +
                      "c__builtin__\nobject\nNtR.");
  EXPECT_NE(copyreg.verdict, Verdict::kClean) << Dump(copyreg);
}

TEST(GadgetClass1, BenignTensorSubclassRebuildStaysClean) {
  // What torch.save writes for a Parameter subclass: func = _rebuild_tensor_v2 (pure).
  std::string p = Proto(2) + "ctorch._tensor\n_rebuild_from_type_v2\n(" +
                  "ctorch._utils\n_rebuild_tensor_v2\n" + "ctorch.nn.parameter\nParameter\n" +
                  S("((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
                    "0X\x03\x00\x00\x00"
                    "cpuK\x04tQK\x00K\x04\x85K\x01\x85\x89"
                    "ccollections\nOrderedDict\n)Rt}tR.");
  auto r = Scan(p);
  EXPECT_EQ(r.verdict, Verdict::kClean) << Dump(r);
  EXPECT_FALSE(HasRule(r, "pickle.gadget-call")) << Dump(r);
}

// ---- class 3: resource attacks on the real unpickler -----------------------------------------

TEST(GadgetClass3, LongBinPutNear2To32IsFlagged) {
  auto r = Scan(Proto(2) + "N" + "r" + Le(0xfffffff0u, 4) + "0N.");
  EXPECT_NE(r.verdict, Verdict::kClean) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.memo-abuse")) << Dump(r);
  // Text PUT with the same index.
  auto text = Scan("Np4294967280\n0N.");
  EXPECT_TRUE(HasRule(text, "pickle.memo-abuse")) << Dump(text);
  // Ordinary memo numbering stays clean.
  auto ok = Scan(Proto(2) + S("Nq\x00") + "0N" + "r" + Le(1, 4) + "0N.");
  EXPECT_EQ(ok.verdict, Verdict::kClean) << Dump(ok);
}

TEST(GadgetClass3, LongBinGetNear2To32IsNotClean) {
  auto r = Scan(Proto(2) + S("Nq\x00") + "j" + Le(0xfffffff0u, 4) + ".");
  EXPECT_NE(r.verdict, Verdict::kClean) << Dump(r);
}

std::string TorchZip(std::int64_t numel, std::size_t record_bytes) {
  std::string pkl =
      Proto(2) + S("ccollections\nOrderedDict\n)RX\x06\x00\x00\x00weight") +
      S("ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
        "X\x01\x00\x00\x00"
        "0X\x03\x00\x00\x00"
        "cpu") +
      "J" + Le(static_cast<std::uint64_t>(numel), 4) +
      S("tQK\x00K\x01\x85K\x01\x85\x89"
        "ccollections\nOrderedDict\n)RtRs.");
  return airlock::testing::WriteZip(
      {{.name = "archive/data.pkl", .data = pkl},
       {.name = "archive/data/0", .data = std::string(record_bytes, '\1')},
       {.name = "archive/version", .data = "3\n"}});
}

TEST(GadgetClass3, TorchStorageLargerThanItsRecordIsFlagged) {
  auto ok = Scan(TorchZip(4, 16), "model.pt");
  EXPECT_EQ(ok.verdict, Verdict::kClean) << Dump(ok);
  auto big = Scan(TorchZip(1'000'000, 16), "model.pt");
  EXPECT_NE(big.verdict, Verdict::kClean) << Dump(big);
  EXPECT_TRUE(HasRule(big, "pickle.storage-overflow")) << Dump(big);
  auto negative = Scan(TorchZip(-1, 16), "model.pt");
  EXPECT_TRUE(HasRule(negative, "pickle.storage-overflow")) << Dump(negative);
}

TEST(GadgetClass3, StorageCheckSurvivesANestedTorchZip) {
  // data.pkl first loads a (benign) torch zip from bytes, then declares an oversized storage.
  std::string inner = TorchZip(4, 16);
  std::string pkl =
      Proto(2) + "}" + S("X\x01\x00\x00\x00") + "a" + kLoadFromBytes + B(inner) + "\x85Rs" +
      S("X\x01\x00\x00\x00") + "w" +
      S("ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
        "X\x01\x00\x00\x00"
        "0X\x03\x00\x00\x00"
        "cpu") +
      "J" + Le(1'000'000, 4) +
      S("tQK\x00K\x01\x85K\x01\x85\x89"
        "ccollections\nOrderedDict\n)RtRs.");
  auto r =
      Scan(airlock::testing::WriteZip({{.name = "archive/data.pkl", .data = pkl},
                                       {.name = "archive/data/0", .data = std::string(16, '\1')},
                                       {.name = "archive/version", .data = "3\n"}}),
           "model.pt");
  EXPECT_TRUE(HasRule(r, "pickle.storage-overflow")) << Dump(r);
}

// ---- class 2: numpy dtype semantics (joblib NumpyArrayWrapper) -------------------------------

// numpy.dtype(typestr, False, True) as pickled by numpy, with an optional BUILD state.
std::string Dtype(const std::string& typestr, const std::string& state = "") {
  return U("numpy") + U("dtype") + kStackGlobal + U(typestr) + "\x89\x88\x87R" +
         (state.empty() ? "" : state + "b");
}
// (version, endian, subarray, names, fields, elsize, alignment, flags)
std::string DtypeState(const std::string& subarray, const std::string& names,
                       const std::string& fields, int elsize, int flags) {
  return "(K\x03" + U("|") + subarray + names + fields + "J" +
         Le(static_cast<std::uint32_t>(elsize), 4) + "J" + Le(static_cast<std::uint32_t>(-1), 4) +
         "J" + Le(static_cast<std::uint32_t>(flags), 4) + "t";
}
std::string ObjectDtype() { return Dtype("O8", DtypeState("N", "N", "N", -1, 63)); }

// A joblib wrapper of one element of `dtype`, without alignment padding, followed by `data`.
std::string Wrapper(const std::string& dtype, const std::string& data) {
  return U("joblib.numpy_pickle") + U("NumpyArrayWrapper") + kStackGlobal + ")" + kNewObj + "}(" +
         U("shape") + "K\x01" + kTuple1 + U("order") + U("C") + U("dtype") + dtype +
         U("numpy_array_alignment_bytes") + "N" + "ub" + data;
}
const std::string kNestedSystem =
    Proto(4) + U("os") + U("system") + kStackGlobal + U("id") + kTuple1 + "R.";

std::string Joblib(const std::string& dtype, const std::string& data) {
  return Proto(4) + Wrapper(dtype, data) + ".";
}

TEST(GadgetClass2, VoidDtypeGivenAnObjectFieldThroughBuild) {
  // V8 looks like 8 raw bytes; BUILD gives it an object field, so dtype.hasobject is True and
  // joblib pickle.loads what follows.
  std::string fields = "}" + U("a") + "(" + ObjectDtype() + S("K\x00") + "t" + "s";
  std::string dtype = Dtype("V8", DtypeState("N", U("a") + kTuple1, fields, 8, 0));
  auto r = Scan(Joblib(dtype, kNestedSystem), "model.joblib");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  // Its flags (0) deny the object field: numpy 1.24 believes them and reads object pointers
  // from the raw bytes (the oracle saw joblib.load crash). Never clean, whatever the bytes.
  EXPECT_TRUE(HasRule(r, "pickle.dtype-mismatch")) << Dump(r);
  auto raw = Scan(Joblib(dtype, std::string(8, 'A')), "model.joblib");
  EXPECT_NE(raw.verdict, Verdict::kClean) << Dump(raw);
}

TEST(GadgetClass2, ObjectFlagInDtypeStateAlone) {
  auto r =
      Scan(Joblib(Dtype("V8", DtypeState("N", "N", "N", 8, 1)), kNestedSystem), "model.joblib");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
}

TEST(GadgetClass2, SubArrayOfObjects) {
  std::string subarray = "(" + ObjectDtype() + "K\x02" + kTuple1 + "t";
  auto r = Scan(Joblib(Dtype("V16", DtypeState(subarray, "N", "N", 16, 0)), kNestedSystem),
                "model.joblib");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
}

TEST(GadgetClass2, FieldListConstructorWithNestedObjectField) {
  // numpy.dtype([('a', '<i4'), ('b', [('c', 'O')])])
  std::string dtype = U("numpy") + U("dtype") + kStackGlobal + "](" + U("a") + U("<i4") + kTuple2 +
                      U("b") + "](" + U("c") + U("O") + kTuple2 + "e" + kTuple2 + "e" + kTuple1 +
                      "R";
  auto r = Scan(Joblib(dtype, kNestedSystem), "model.joblib");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
}

TEST(GadgetClass2, BenignStructuredDtypeStaysClean) {
  std::string f8 = Dtype("f8", DtypeState("N", "N", "N", -1, 0));
  std::string i4 = Dtype("i4", DtypeState("N", "N", "N", -1, 0));
  std::string fields = "}(" + U("a") + "(" + f8 + S("K\x00t") + U("b") + "(" + i4 + "K\x08tu";
  std::string dtype = Dtype("V12", DtypeState("N", U("a") + U("b") + kTuple2, fields, 12, 16));
  auto r = Scan(Joblib(dtype, std::string(12, '\x07')), "model.joblib");
  EXPECT_EQ(r.verdict, Verdict::kClean) << Dump(r);
  // The same array as an object array would be a different file: hasobject decides.
  auto plain = Scan(Joblib(Dtype("f8", DtypeState("N", "N", "N", -1, 0)), std::string(8, '\x07')),
                    "model.joblib");
  EXPECT_EQ(plain.verdict, Verdict::kClean) << Dump(plain);
}

TEST(GadgetClass2, DtypeStateThatCannotBeReadIsInconclusive) {
  std::string state = "(K\x03" + U("|") + "NNN" + "J" + Le(8, 4) + "J" + Le(1, 4) + U("x") + "t";
  auto r = Scan(Joblib(Dtype("V8", state), std::string(8, '\x07')), "model.joblib");
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Dump(r);
}

}  // namespace
