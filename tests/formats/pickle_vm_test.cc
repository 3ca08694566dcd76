// Per-opcode tests of the pickle emulator (formats::pickle::Parse) on hand-written streams.
#include <gtest/gtest.h>

#include <string>

#include "formats/pickle.h"
#include "pickle_test_util.h"

namespace {

namespace pk = airlock::formats::pickle;
using namespace airlock::testing::pkl;

pk::ParseResult Emu(const std::string& s, pk::Limits limits = {}) {
  return pk::Parse(Bytes(s), 0, limits);
}
// Literals may hold NUL bytes: keep their full length.
template <std::size_t N>
pk::ParseResult Emu(const char (&s)[N], pk::Limits limits = {}) {
  return Emu(std::string(s, N - 1), limits);
}

std::vector<const pk::Event*> Of(const pk::ParseResult& r, pk::EventKind k) {
  std::vector<const pk::Event*> out;
  for (const auto& e : r.events) {
    if (e.kind == k) out.push_back(&e);
  }
  return out;
}

std::string Imported(const pk::ParseResult& r, std::size_t i = 0) {
  auto v = Of(r, pk::EventKind::kImport);
  if (i >= v.size()) return "<none>";
  return v[i]->ref.module + "." + v[i]->ref.qualname;
}

TEST(PickleVm, Protocol0ListHasNoEvents) {
  auto r = Emu("(lp0\nVa\np1\naVb\np2\na.");
  EXPECT_TRUE(r.ok()) << r.error_message;
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(r.result.kind, pk::ResultValue::Kind::kList);
  EXPECT_EQ(r.result.str_items, (std::vector<std::string>{"a", "b"}));
}

TEST(PickleVm, GlobalRecordsImportWithOffsetAndOpcode) {
  auto r = Emu("N0cos\nsystem\n(S'id'\ntR.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  auto imports = Of(r, pk::EventKind::kImport);
  ASSERT_EQ(imports.size(), 1u);
  EXPECT_EQ(imports[0]->offset, 2u);
  EXPECT_EQ(imports[0]->opcode, 'c');
  EXPECT_EQ(Imported(r), "os.system");
  auto calls = Of(r, pk::EventKind::kCall);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]->ref.Display(), "os.system");
  EXPECT_EQ(calls[0]->args, "('id')");
}

TEST(PickleVm, GlobalNameMustBeUtf8AndNewlineTerminated) {
  auto r = Emu("cmod\n\xf8\n.");
  EXPECT_EQ(r.error, pk::ErrorKind::kCorrupt);
  EXPECT_TRUE(Of(r, pk::EventKind::kImport).empty());
  auto t = Emu("cos\nsystem");
  EXPECT_EQ(t.error, pk::ErrorKind::kCorrupt);
  EXPECT_NE(t.error_message.find("truncated"), std::string::npos);
}

TEST(PickleVm, InstImportsAndCalls) {
  auto r = Emu("(S'print(1)'\ni__builtin__\nexec\n.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "__builtin__.exec");
  ASSERT_EQ(Of(r, pk::EventKind::kCall).size(), 1u);
  EXPECT_EQ(Of(r, pk::EventKind::kCall)[0]->opcode, 'i');
}

TEST(PickleVm, StackGlobalOperandsFromMemo) {
  // 'os' and 'system' memoized, the stack cleared, then fetched back with BINGET.
  std::string p = Proto(4) + U("os") + "q\x05" + "0" + U("system") + "q\x06" + "0" + "h\x05" +
                  "h\x06" + kStackGlobal + ".";
  auto r = Emu(p);
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "os.system");
  EXPECT_FALSE(Of(r, pk::EventKind::kImport)[0]->ref.computed);
}

TEST(PickleVm, StackGlobalOperandsFromProtocol0Strings) {
  auto r = Emu("S'os'\nS'system'\n\x93.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "os.system");
}

TEST(PickleVm, StackGlobalRejectsNonStrOperands) {
  auto r = Emu(Proto(4) + "K\x01" + U("system") + kStackGlobal + ".");
  EXPECT_EQ(r.error, pk::ErrorKind::kCorrupt);
  EXPECT_NE(r.error_message.find("requires str"), std::string::npos);
}

TEST(PickleVm, StackGlobalWithComputedOperandsIsMarkedComputed) {
  // module name = builtins.str('os') (a call result): unknowable statically.
  std::string p = Proto(4) + U("builtins") + U("str") + kStackGlobal + U("os") + kTuple1 + "R" +
                  U("system") + kStackGlobal + ".";
  auto r = Emu(p);
  ASSERT_TRUE(r.ok()) << r.error_message;
  auto imports = Of(r, pk::EventKind::kImport);
  ASSERT_EQ(imports.size(), 2u);
  EXPECT_TRUE(imports[1]->ref.computed);
}

TEST(PickleVm, MemoizeStoresUnderEntryCountNotMaxIndex) {
  // PUT 5 ('torch'), MEMOIZE stores 'os' under 1 (one entry so far), not 6.
  std::string p = Proto(4) + U("torch") + "q\x05" + U("os") + kMemoize + "0" + "0" + U("x") + "0" +
                  "h\x01" + U("system") + kStackGlobal + ".";
  auto r = Emu(p);
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "os.system");
  auto missing = Emu(Proto(4) + U("a") + "q\x05" + U("b") + kMemoize + "h\x06" + ".");
  EXPECT_EQ(missing.error, pk::ErrorKind::kCorrupt);
  EXPECT_NE(missing.error_message.find("Memo value not found at index 6"), std::string::npos);
}

TEST(PickleVm, PutStoresUnderItsArgument) {
  // The imaginaryCTF "Safe Pickle" layout: PUT 2/3 hold os/system, PUT 0/1 hold a decoy.
  auto r = Emu("Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n\x93(Vid\ntR.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "os.system");
}

TEST(PickleVm, TextMemoIndexParsesLikeCPython) {
  // Underscores, spaces and an embedded NUL (the C string ends there) are accepted.
  auto r = Emu("Vos\np1_0\n0Vsystem\np 11 \n0g10\ng11\x00junk\n\x93.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  auto bad = Emu("Vos\np-1\n.");
  EXPECT_EQ(bad.error, pk::ErrorKind::kCorrupt);
  EXPECT_NE(bad.error_message.find("negative PUT"), std::string::npos);
}

TEST(PickleVm, StringQuotingAndEscapes) {
  auto r = Emu("S'o\\x73'\nS\"sys\\164em\"\n\x93.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "os.system");
  EXPECT_EQ(Emu("Sos\n.").error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Emu("S'os\"\n.").error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Emu("S'\\x4'\n.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, UnicodeRawEscape) {
  auto r = Emu("V\\u006fs\nVsys\\u0074em\n\x93.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "os.system");
  // An even run of backslashes is not an escape.
  auto lit = Emu("V\\\\u0041\n.");
  EXPECT_TRUE(lit.ok());
  EXPECT_EQ(Emu("V\\u00\n.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, BinUnicodeMustBeUtf8) {
  EXPECT_EQ(Emu(Proto(4) + "\x8c\x02\xff\xfe.").error, pk::ErrorKind::kCorrupt);
  // surrogatepass: a lone surrogate is accepted.
  EXPECT_TRUE(Emu(Proto(4) + "\x8c\x03\xed\xa0\x80.").ok());
}

TEST(PickleVm, MarkFenceAndPopMark) {
  // MARK then REDUCE: CPython refuses to pop below the mark.
  auto r = Emu("cos\nsystem\n(Vx\n\x85(R.");
  EXPECT_EQ(r.error, pk::ErrorKind::kCorrupt);
  EXPECT_NE(r.error_message.find("unexpected MARK found"), std::string::npos);
  // POP on an empty mark pops the mark; POP_MARK drops everything above it.
  EXPECT_TRUE(Emu("N(0.").ok());
  EXPECT_TRUE(Emu("N(NNN1.").ok());
  EXPECT_EQ(Emu("N1.").error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Emu("0.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, DupAndTuples) {
  auto r = Emu(Proto(2) +
               "K\x01"
               "2"
               "\x86"
               ")"
               "\x86"
               ".");
  EXPECT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Emu(Proto(2) + "K\x01\x87.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, DictsAndSetitems) {
  EXPECT_TRUE(Emu("(Va\nI1\nd.").ok());
  EXPECT_EQ(Emu("(Va\nd.").error, pk::ErrorKind::kCorrupt);
  EXPECT_TRUE(Emu("}(Va\nI1\nVb\nI2\nu.").ok());
  EXPECT_EQ(Emu("}(Va\nu.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, SetitemsOnAnObjectIsAMethodCall) {
  auto r = Emu("ccollections\nOrderedDict\n)RVk\nI1\ns.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  auto calls = Of(r, pk::EventKind::kCall);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1]->ref.root_module + "." + calls[1]->ref.root_qualname,
            "collections.OrderedDict");
  EXPECT_NE(calls[1]->ref.origin.find("__setitem__"), std::string::npos);
  // On a str there is no __setitem__: CPython fails.
  EXPECT_EQ(Emu("Vx\nVk\nI1\ns.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, AppendsOnAnObjectIsAMethodCall) {
  auto r = Emu("cbuiltins\nset\n)R(I1\ne.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Of(r, pk::EventKind::kCall).size(), 2u);
  EXPECT_TRUE(Emu("](I1\nI2\ne.").ok());
}

TEST(PickleVm, SetsAndFrozensets) {
  EXPECT_TRUE(Emu(Proto(4) + "\x8f(K\x01K\x02\x90.").ok());
  EXPECT_TRUE(Emu(Proto(4) + "(K\x01K\x02\x91.").ok());
}

TEST(PickleVm, ReduceRequiresCallableAndTuple) {
  EXPECT_EQ(Emu("Vx\n)R.").error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Emu("cos\nsystem\nI1\nR.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, NewObjNewObjExAndObj) {
  auto r = Emu(Proto(4) + U("m") + U("C") + kStackGlobal + ")" + kNewObj + ".");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Of(r, pk::EventKind::kCall).size(), 1u);
  auto ex = Emu(Proto(4) + U("m") + U("C") + kStackGlobal + ")}" + kNewObjEx + ".");
  ASSERT_TRUE(ex.ok()) << ex.error_message;
  EXPECT_EQ(Of(ex, pk::EventKind::kCall)[0]->opcode, 0x92);
  EXPECT_EQ(Emu(Proto(4) + U("m") + ")" + kNewObj + ".").error, pk::ErrorKind::kCorrupt);
  // OBJ followed by POP: the call is recorded even though its result is discarded.
  auto obj = Emu("(csmtplib\nSMTP\nV127.0.0.1\no0N.");
  ASSERT_TRUE(obj.ok()) << obj.error_message;
  EXPECT_EQ(Of(obj, pk::EventKind::kCall).size(), 1u);
}

TEST(PickleVm, BuildIsRecorded) {
  auto r = Emu("ccollections\nOrderedDict\n)R}b.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Of(r, pk::EventKind::kBuild).size(), 1u);
  EXPECT_EQ(Emu("]}b.").error, pk::ErrorKind::kCorrupt);
  EXPECT_TRUE(Emu("]Nb.").ok());
}

TEST(PickleVm, IntegersAndLongs) {
  auto magic = Emu(Proto(2) + "\x8a\x0al\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
  ASSERT_TRUE(magic.ok());
  EXPECT_EQ(magic.result.kind, pk::ResultValue::Kind::kBigInt);
  EXPECT_EQ(magic.result.big_int_le.size(), 10u);
  auto j = Emu("J\xff\xff\xff\xff.");
  EXPECT_EQ(j.result.int_value, -1);
  EXPECT_EQ(Emu("M\xe9\x03.").result.int_value, 1001);
  EXPECT_EQ(Emu("I01\n.").result.int_value, 1);
  EXPECT_EQ(Emu("L123L\n.").result.int_value, 123);
  EXPECT_EQ(Emu("\x8a\x01\xff.").result.int_value, -1);
  EXPECT_EQ(Emu("\x8b\xff\xff\xff\xff.").error, pk::ErrorKind::kCorrupt);
  EXPECT_TRUE(Emu("F1.5\n.").ok());
  EXPECT_TRUE(Emu("G\x3f\xf0\0\0\0\0\0\0.").ok());
}

TEST(PickleVm, BytesOpcodesCheckLengthsAgainstInput) {
  EXPECT_TRUE(Emu(Proto(3) + C("abc") + ".").ok());
  EXPECT_EQ(Emu(Proto(3) + "B\xff\xff\xff\x7f" + "abc.").error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Emu(Proto(4) + "\x8e" + Le(~0ull, 8) + ".").error, pk::ErrorKind::kCorrupt);
  EXPECT_TRUE(Emu(Proto(5) + "\x96" + Le(2, 8) + "ab.").ok());
  EXPECT_EQ(Emu("T\xff\xff\xff\xff.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, FrameStraddleIsAnAnomaly) {
  // A 3-byte frame that ends inside the SHORT_BINUNICODE argument.
  std::string p = Proto(4) + Frame(3) + U("os") + U("system") + kStackGlobal + ".";
  auto r = Emu(p);
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Of(r, pk::EventKind::kAnomaly).size(), 1u);
  EXPECT_EQ(Imported(r), "os.system");
}

TEST(PickleVm, ShortFrameIsFollowedLikeThePythonUnpickler) {
  std::string p = Proto(4) + Frame(100) + U("os") + U("system") + kStackGlobal + ".";
  auto r = Emu(p);
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Imported(r), "os.system");
  ASSERT_FALSE(Of(r, pk::EventKind::kAnomaly).empty());
  EXPECT_NE(Of(r, pk::EventKind::kAnomaly)[0]->detail.find("FRAME length"), std::string::npos);
}

TEST(PickleVm, ProtoChecks) {
  EXPECT_EQ(Emu(Proto(6) + "N.").error, pk::ErrorKind::kUnsupported);
  auto r = Emu("N0" + Proto(4) + "N.");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Of(r, pk::EventKind::kAnomaly).size(), 1u);
}

TEST(PickleVm, ExtensionCodes) {
  auto r = Emu(Proto(2) + "\x82\x05.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Of(r, pk::EventKind::kExtension).size(), 1u);
  EXPECT_EQ(Emu(Proto(2) + "\x84" + Le(0, 4) + ".").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, PersistentIdsDescribeTorchStorages) {
  std::string p =
      Proto(2) + "(" + X("storage") + "ctorch\nFloatStorage\n" + X("0") + "Vcpu\nK\x06tQ.";
  auto r = Emu(p);
  ASSERT_TRUE(r.ok()) << r.error_message;
  auto ids = Of(r, pk::EventKind::kPersistentId);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0]->storage_type, "FloatStorage");
  EXPECT_EQ(ids[0]->storage_key, "0");
  EXPECT_EQ(ids[0]->storage_numel, 6);
  auto text = Emu("P0\n.");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(Of(text, pk::EventKind::kPersistentId).size(), 1u);
}

TEST(PickleVm, OutOfBandBuffers) {
  auto r = Emu(Proto(5) + "\x97\x98.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(Of(r, pk::EventKind::kBuffer).size(), 1u);
  EXPECT_EQ(Emu(Proto(5) + "\x98.").error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, EventsBeforeAnErrorAreKept) {
  auto r = Emu("cbuiltins\nexec\n(Vx\ntR\xff");
  EXPECT_EQ(r.error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Imported(r), "builtins.exec");
  EXPECT_EQ(Of(r, pk::EventKind::kCall).size(), 1u);
  EXPECT_EQ(r.error_offset, 21u);
}

TEST(PickleVm, ConcatenatedStreams) {
  std::string p = Proto(4) + "N." + Proto(4) + U("os") + U("system") + kStackGlobal + ".";
  auto first = pk::Parse(Bytes(p), 0, {});
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first.events.empty());
  EXPECT_TRUE(pk::LooksLikePickleStart(Bytes(p), first.end));
  auto second = pk::Parse(Bytes(p), first.end, {});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(Imported(second), "os.system");
}

TEST(PickleVm, BytesArgumentsThroughCodecsEncode) {
  // pickle.loads(_codecs.encode('I1\n.', 'latin1')): the nested stream is exposed.
  auto r = Emu("cpickle\nloads\n(c_codecs\nencode\n(VI1\\u000a.\nVlatin1\ntRtR.");
  ASSERT_TRUE(r.ok()) << r.error_message;
  auto calls = Of(r, pk::EventKind::kCall);
  ASSERT_EQ(calls.size(), 2u);
  ASSERT_EQ(calls[1]->byte_args.size(), 1u);
  std::string inner(reinterpret_cast<const char*>(calls[1]->byte_args[0].data()),
                    calls[1]->byte_args[0].size());
  EXPECT_EQ(inner, "I1\n.");
}

TEST(PickleVm, EmbeddedPicklesInLiterals) {
  std::string inner = Proto(4) + U("os") + U("system") + kStackGlobal + ".";
  std::string hex;
  for (unsigned char c : inner) {
    static const char* d = "0123456789abcdef";
    hex += d[c >> 4];
    hex += d[c & 15];
  }
  auto raw = Emu(Proto(4) + C(inner) + ".");
  ASSERT_EQ(Of(raw, pk::EventKind::kEmbedded).size(), 1u);
  EXPECT_EQ(Of(raw, pk::EventKind::kEmbedded)[0]->detail, "raw");
  auto h = Emu(Proto(4) + U(hex) + ".");
  ASSERT_EQ(Of(h, pk::EventKind::kEmbedded).size(), 1u);
  EXPECT_EQ(Of(h, pk::EventKind::kEmbedded)[0]->byte_args[0].size(), inner.size());
  auto b64 = Emu(Proto(4) + U("gASVDAAAAAAAAACMAm9zlIwGc3lzdGVtlJOULg==") + ".");
  ASSERT_EQ(Of(b64, pk::EventKind::kEmbedded).size(), 1u);
  EXPECT_EQ(Of(b64, pk::EventKind::kEmbedded)[0]->detail, "base64");
}

TEST(PickleVm, JoblibArrayDataIsSkipped) {
  // NumpyArrayWrapper with shape (2,), dtype f8, alignment padding of 3 bytes, 16 data bytes,
  // then the rest of the stream.
  std::string w = Proto(4) + U("joblib.numpy_pickle") + U("NumpyArrayWrapper") + kStackGlobal +
                  ")" + kNewObj + "}(" + U("shape") + "K\x02" + kTuple1 + U("dtype") + U("numpy") +
                  U("dtype") + kStackGlobal + U("f8") + "\x89\x88" + "\x87" + "R" +
                  U("numpy_array_alignment_bytes") + "K\x10" + "ub";
  std::string data = std::string("\x03", 1) + "\xff\xff\xff" + std::string(16, '\x41');
  std::string p = w + data + "0N.";
  auto r = Emu(p);
  ASSERT_TRUE(r.ok()) << r.error_message;
  auto arrays = Of(r, pk::EventKind::kJoblibArray);
  ASSERT_EQ(arrays.size(), 1u);
  EXPECT_EQ(arrays[0]->length, 20u);
  EXPECT_EQ(r.end, p.size());
  // Data shorter than the shape says: an error, not a read past the end.
  auto shortr = Emu(w + data.substr(0, 10));
  EXPECT_EQ(shortr.error, pk::ErrorKind::kCorrupt);
}

TEST(PickleVm, LimitsStopWork) {
  pk::Limits l;
  l.max_ops = 10;
  auto r = Emu(std::string(20, 'N') + ".", l);
  EXPECT_EQ(r.error, pk::ErrorKind::kLimit);
  pk::Limits m;
  m.max_memo = 2;
  EXPECT_EQ(Emu("Np1\np2\np3\n.", m).error, pk::ErrorKind::kLimit);
  pk::Limits v;
  v.max_values = 5;
  EXPECT_EQ(Emu(std::string(10, 'N') + ".", v).error, pk::ErrorKind::kLimit);
  pk::Limits st;
  st.max_stack = 4;
  EXPECT_EQ(Emu(std::string(10, '(') + ".", st).error, pk::ErrorKind::kLimit);
  // A huge memo index is an anomaly, never an allocation.
  auto huge = Emu("Nr\xff\xff\xff\xff.");
  EXPECT_TRUE(huge.ok());
  auto hugetext = Emu("Np99999999999999\n.");
  EXPECT_TRUE(hugetext.ok());
  EXPECT_EQ(Of(hugetext, pk::EventKind::kAnomaly).size(), 1u);
}

TEST(PickleVm, InvalidOpcodeAndEmptyInput) {
  auto r = Emu("\xff");
  EXPECT_EQ(r.error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(r.ops, 1u);
  EXPECT_EQ(Emu("").error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Emu("N").error, pk::ErrorKind::kCorrupt);
  EXPECT_EQ(Emu(".").error, pk::ErrorKind::kCorrupt);
}

}  // namespace
