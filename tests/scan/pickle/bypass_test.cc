// One crafted pickle per bypass class of the research notes' catalogue (scanners.md §2.1),
// scanned end to end with scan::ScanBuffer. Container-level classes (zip flag bits, CRC, name
// mismatches, duplicate members, 7z) are the zip/archive analyzers' and are tested there.
#include <gtest/gtest.h>

#include <string>

#include "pickle_test_util.h"
#include "scan/scan.h"

namespace {

using airlock::scan::Verdict;
using namespace airlock::testing::pkl;

airlock::scan::FileReport Scan(const std::string& bytes, const std::string& name = "model.pkl") {
  airlock::scan::ScanOptions options;
  return airlock::scan::ScanBuffer(Bytes(bytes), name, options);
}
template <std::size_t N>
airlock::scan::FileReport Scan(const char (&bytes)[N], const std::string& name = "model.pkl") {
  return Scan(std::string(bytes, N - 1), name);
}

bool HasRule(const airlock::scan::FileReport& r, const std::string& rule) {
  for (const auto& f : r.findings) {
    if (f.rule_id == rule) return true;
  }
  return false;
}

// Protocol 4: module.name(arg) with a str argument.
std::string CallStr(std::string_view module, std::string_view name, std::string_view arg) {
  return U(module) + U(name) + kStackGlobal + U(arg) + kTuple1 + "R";
}
std::string P4(const std::string& body) { return Proto(4) + body + "."; }

// A PyTorch-like protocol 2 state dict: OrderedDict of one tensor rebuilt from a storage.
std::string TorchStateDict() {
  return Proto(2) + S("ccollections\nOrderedDict\nq\x00)Rq\x01X\x06\x00\x00\x00weightq\x02") +
         S("ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04"
           "ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x00"
           "0q\x06X\x03\x00\x00\x00"
           "cpuq\x07K\x04tq\x08"
           "QK\x00K\x04\x85K\x01\x85\x89"
           "ccollections\nOrderedDict\n)Rtq\tRq\ns.");
}

TEST(PickleBypass, BenignStateDictIsClean) {
  std::string p = TorchStateDict();
  auto r = Scan(p);
  EXPECT_EQ(r.verdict, Verdict::kClean) << Dump(r);
}

TEST(PickleBypass, NumpyArrayIsClean) {
  std::string p = Proto(2) +
                  S("cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
                    "C\x01"
                    "b\x87R(K\x01K\x02\x85"
                    "cnumpy\ndtype\nX\x02\x00\x00\x00"
                    "f8\x89\x88\x87R"
                    "(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
                    "C\x10") +
                  std::string(16, '\0') + "tb.";
  auto r = Scan(p);
  EXPECT_EQ(r.verdict, Verdict::kClean) << Dump(r);
}

// CVE-2025-1716: pip.main as the REDUCE callable.
TEST(PickleBypass, PipMain) {
  auto r = Scan("cpip\nmain\n((Vinstall\nVevil\nltR.");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.dangerous-import"));
}

// CVE-2025-1889 / CVE-2025-10155: routing by content, not by name.
TEST(PickleBypass, PickleUnderAnyName) {
  std::string p = P4(CallStr("os", "system", "id"));
  for (const char* name : {"data.txt", "model.bin", "weights.pt", "README", "x.json"}) {
    EXPECT_EQ(Scan(p, name).verdict, Verdict::kMalicious) << name;
  }
}

// A protocol 0 pickle with trailing junk, named like a text file, is still routed by content.
TEST(PickleBypass, TextPickleWithJunkAndTextName) {
  auto r = Scan("cos\nsystem\n(S'id'\ntR.and some trailing words\n", "notes.txt");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  // Ordinary text that happens to start with a pickle opcode stays text.
  auto t = Scan("(c) 2024 Example Corp\nAll rights reserved.\nMore text here\n", "LICENSE");
  EXPECT_EQ(t.verdict, Verdict::kClean) << Dump(t);
}

// nullifAI: the payload runs, then the stream is broken.
TEST(PickleBypass, BrokenStreamAfterPayload) {
  std::string p = Proto(2) + "cbuiltins\nexec\n(Vprint(1)\ntR" + "\xff\xff garbage";
  auto r = Scan(p);
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.parse-error"));
  // Same with a truncated BINUNICODE after the payload.
  auto t =
      Scan(S("cbuiltins\nexec\n(X\xff\xff\x00\x00"
             "abc"));
  EXPECT_EQ(t.verdict, Verdict::kMalicious) << Dump(t);
}

// CVE-2025-10157: a class method of a deny-listed package's submodule.
TEST(PickleBypass, SubmoduleClassMethod) {
  auto r = Scan(P4(CallStr("asyncio.unix_events", "_UnixSubprocessTransport._start", "x")));
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
}

// GHSA-9gvj-pp9x-gcfr: STACK_GLOBAL operands from STRING opcodes, as the very first ops.
TEST(PickleBypass, StackGlobalFromStringOpcodes) {
  auto r = Scan("S'os'\nS'system'\n\x93(S'id'\ntR.");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  auto b = Scan("T\x02\x00\x00\x00osU\x06system\x93.");
  EXPECT_EQ(b.verdict, Verdict::kMalicious) << Dump(b);
}

// Memo tricks: PUT n stores under n; a missing BINGET after the payload; an int in the memo.
TEST(PickleBypass, MemoTricks) {
  auto put = Scan("Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n\x93(Vid\ntR.");
  EXPECT_EQ(put.verdict, Verdict::kMalicious) << Dump(put);
  auto keyerror = Scan(Proto(4) + "cos\nsystem\n" + U("id") + kTuple1 + "R0h\x09.");
  EXPECT_EQ(keyerror.verdict, Verdict::kMalicious) << Dump(keyerror);
  EXPECT_TRUE(HasRule(keyerror, "pickle.parse-error"));
  auto confusion = Scan(Proto(4) + "cos\nsystem\n" + U("id") + kTuple1 + "R0K\x05q\x01h\x01" +
                        U("x") + kStackGlobal + ".");
  EXPECT_EQ(confusion.verdict, Verdict::kMalicious) << Dump(confusion);
}

// Computed names: STACK_GLOBAL operands produced by earlier calls.
TEST(PickleBypass, ComputedNames) {
  std::string p = P4(U("builtins") + U("str") + kStackGlobal + U("os") + kTuple1 + "R" +
                     U("system") + kStackGlobal + U("id") + kTuple1 + "R");
  auto r = Scan(p);
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.computed-import"));
}

// Dotted qualnames resolved by attribute walking.
TEST(PickleBypass, DottedAndDunderNames) {
  for (auto [m, n] : {std::pair<const char*, const char*>{"pathlib", "os.system"},
                      {"builtins", "print.__class__.__base__.__subclasses__"},
                      {"collections", "OrderedDict.__init__.__globals__"},
                      {"os.path", "__class__"},
                      {"torch", "_utils.builtins.eval"},
                      {"__builtins__", "eval"},
                      {"__builtin__", "getattr"},
                      {"torch._utils", "_rebuild_tensor_v2.__globals__"}}) {
    auto r = Scan(P4(CallStr(m, n, "x")));
    EXPECT_EQ(r.verdict, Verdict::kMalicious) << m << "." << n << Dump(r);
  }
}

// "Suspicious is not dangerous": everything not allow-listed keeps the file from being clean.
TEST(PickleBypass, UnknownImportsAreNeverClean) {
  auto gadget = Scan(P4(CallStr("importlib", "import_module", "os") + "0" +
                        CallStr("inspect", "getattr_static", "system")));
  EXPECT_EQ(gadget.verdict, Verdict::kMalicious) << Dump(gadget);
  auto unknown = Scan(P4(CallStr("mypackage.models", "CustomLayer", "cfg")));
  EXPECT_EQ(unknown.verdict, Verdict::kInconclusive) << Dump(unknown);
  EXPECT_TRUE(HasRule(unknown, "pickle.unknown-import"));
  // Exception-oriented programming: an exception class is not allow-listed either.
  auto eop = Scan(P4(CallStr("somelib.errors", "ConfigError", "x")));
  EXPECT_NE(eop.verdict, Verdict::kClean);
}

// Universal resolvers and the gadget zoo.
TEST(PickleBypass, GadgetZoo) {
  for (auto [m, n] : {std::pair<const char*, const char*>{"pkgutil", "resolve_name"},
                      {"pydoc", "locate"},
                      {"operator", "attrgetter"},
                      {"_operator", "methodcaller"},
                      {"functools", "partial"},
                      {"timeit", "timeit"},
                      {"cProfile", "run"},
                      {"profile", "Profile.runctx"},
                      {"trace", "Trace.run"},
                      {"bdb", "Bdb.run"},
                      {"code", "InteractiveInterpreter.runcode"},
                      {"idlelib.pyshell", "ModifiedInterpreter.runcode"},
                      {"lib2to3.pgen2.grammar", "Grammar.loads"},
                      {"doctest", "debug_script"},
                      {"ensurepip", "_run_pip"},
                      {"venv", "create"},
                      {"distutils.file_util", "write_file"},
                      {"ctypes", "CDLL"},
                      {"pty", "spawn"},
                      {"numpy.f2py.crackfortran", "getlincoef"},
                      {"numpy.testing._private.utils", "runstring"},
                      {"uuid", "_get_command_stdout"},
                      {"_osx_support", "_read_output"},
                      {"_aix_support", "_read_cmd_output"},
                      {"imaplib", "IMAP4_stream"},
                      {"_pyrepl.pager", "pipe_pager"},
                      {"test.support.script_helper", "assert_python_ok"},
                      {"logging", "FileHandler"},
                      {"_io", "FileIO"},
                      {"urllib.request", "urlopen"},
                      {"ssl", "get_server_certificate"},
                      {"types", "CodeType"},
                      {"cloudpickle.cloudpickle", "_make_function"},
                      {"torch._inductor.codecache", "compile_file"},
                      {"torch.utils.bottleneck.__main__", "run_cprofile"},
                      {"torch._dynamo.guards", "GuardBuilder.get"},
                      {"torch.jit.unsupported_tensor_ops", "execWrapper"},
                      {"torch.utils.collect_env", "run"},
                      {"torch.serialization", "load"},
                      {"webbrowser", "open"},
                      {"subprocess", "Popen"},
                      {"nt", "system"},
                      {"posix", "system"},
                      {"runpy", "_run_code"},
                      {"sys", "exit"},
                      {"socket", "create_connection"},
                      {"shutil", "rmtree"},
                      {"builtins", "getattr"},
                      {"builtins", "__import__"},
                      {"builtins", "open"},
                      {"picklescan", "scanner"}}) {
    auto r = Scan(P4(CallStr(m, n, "x")));
    EXPECT_EQ(r.verdict, Verdict::kMalicious) << m << "." << n << Dump(r);
  }
}

// Nested pickles passed as bytes to loaders are scanned.
TEST(PickleBypass, NestedPicklesInLoaderArguments) {
  std::string inner = P4(CallStr("os", "system", "id"));
  auto loads = Scan(P4(U("pickle") + U("loads") + kStackGlobal + C(inner) + kTuple1 + "R"));
  EXPECT_EQ(loads.verdict, Verdict::kMalicious) << Dump(loads);
  // torch.storage._load_from_bytes is allow-listed, but its argument is scanned.
  auto from_bytes = Scan(Proto(2) + "ctorch.storage\n_load_from_bytes\nB" + Le(inner.size(), 4) +
                         inner + "\x85R.");
  EXPECT_EQ(from_bytes.verdict, Verdict::kMalicious) << Dump(from_bytes);
  bool child = false;
  for (const auto& f : from_bytes.findings) {
    if (f.rule_id == "pickle.dangerous-import" && f.member.find("nested@") == 0) child = true;
  }
  EXPECT_TRUE(child) << Dump(from_bytes);
  std::string benign = P4(U("a") + U("b") + kTuple2);
  auto benign_from_bytes = Scan(Proto(2) + "ctorch.storage\n_load_from_bytes\nB" +
                                Le(benign.size(), 4) + benign + "\x85R.");
  EXPECT_EQ(benign_from_bytes.verdict, Verdict::kClean) << Dump(benign_from_bytes);
  // An allow-listed loader whose argument is not a literal (here a call result): not clean.
  auto opaque =
      Scan(Proto(2) + "ctorch.storage\n_load_from_bytes\nccollections\nOrderedDict\n)R\x85R.");
  EXPECT_EQ(opaque.verdict, Verdict::kInconclusive) << Dump(opaque);
  // Protocol 0/2 style: pickle.loads(_codecs.encode('...', 'latin1')).
  auto encoded = Scan(
      "c_pickle\nloads\n(c_codecs\nencode\n(Vcos\\u000asystem\\u000a(Vid\\u000atR.\n"
      "Vlatin1\ntRtR.");
  EXPECT_EQ(encoded.verdict, Verdict::kMalicious) << Dump(encoded);
  bool inner_found = false;
  for (const auto& f : encoded.findings) {
    if (f.member.find("nested@") == 0 && f.message.find("os.system") != std::string::npos) {
      inner_found = true;
    }
  }
  EXPECT_TRUE(inner_found) << Dump(encoded);
}

// Pickles hidden in data literals (raw, hex, base64) are found and scanned.
TEST(PickleBypass, PicklesHiddenInData) {
  std::string inner = P4(CallStr("builtins", "print", "hi"));
  std::string hex;
  for (unsigned char c : inner) {
    static const char* d = "0123456789abcdef";
    hex += d[c >> 4];
    hex += d[c & 15];
  }
  auto raw = Scan(P4("}" + U("blob") + C(inner) + "s"));
  EXPECT_EQ(raw.verdict, Verdict::kMalicious) << Dump(raw);
  auto h = Scan(P4("}" + U("blob") + X(hex) + "s"));
  EXPECT_EQ(h.verdict, Verdict::kMalicious) << Dump(h);
  // A benign nested stream is still not clean: nothing legitimate hides pickles in data.
  auto benign = Scan(P4("}" + U("blob") + C(P4(U("a") + U("b") + kTuple2)) + "s"));
  EXPECT_EQ(benign.verdict, Verdict::kInconclusive) << Dump(benign);
}

// Legacy torch.save: magic, protocol, sys_info, main pickle, storage keys, raw storages.
std::string Legacy(const std::string& main_pickle, const std::string& storages,
                   const std::string& keys = S("]q\x00X\x01\x00\x00\x00"
                                               "0q\x01"
                                               "a.")) {
  std::string magic = Proto(2) + S("\x8a\x0al\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
  std::string protocol = Proto(2) + S("M\xe9\x03.");
  std::string sys_info = Proto(2) + S("}q\x00(X\x0d\x00\x00\x00little_endianq\x01\x88u.");
  return magic + protocol + sys_info + main_pickle + Proto(2) + keys + storages;
}

TEST(PickleBypass, LegacyTorchFiles) {
  std::string storage = Le(4, 8) + std::string(16, '\x01');
  auto ok = Scan(Legacy(TorchStateDict(), storage), "pytorch_model.bin");
  EXPECT_EQ(ok.verdict, Verdict::kClean) << Dump(ok);
  // Every stacked pickle is scanned, not just the first (the modelscan gap).
  auto evil_main = Scan(Legacy(Proto(2) + S("cposix\nsystem\nX\x02\x00\x00\x00id\x85R."), storage),
                        "pytorch_model.bin");
  EXPECT_EQ(evil_main.verdict, Verdict::kMalicious) << Dump(evil_main);
  auto evil_keys =
      Scan(Legacy(TorchStateDict(), storage, S("cos\nsystem\nX\x02\x00\x00\x00id\x85R.")),
           "pytorch_model.bin");
  EXPECT_EQ(evil_keys.verdict, Verdict::kMalicious) << Dump(evil_keys);
  // Storage section that does not match the declared storages: not clean.
  auto short_storage = Scan(Legacy(TorchStateDict(), Le(4, 8) + std::string(8, '\x01')));
  EXPECT_EQ(short_storage.verdict, Verdict::kInconclusive) << Dump(short_storage);
  auto trailing = Scan(Legacy(TorchStateDict(), storage + "junk"));
  EXPECT_EQ(trailing.verdict, Verdict::kInconclusive) << Dump(trailing);
  // Magic number computed by eval (GHSA-97f8-7cmv-76j2): caught on the first pickle.
  auto magic_bypass = Scan(Proto(2) +
                           S("c__builtin__\neval\nX\x16\x00\x00\x00"
                             "0x1950A86A20F9469CFC6C"
                             "\x85R.") +
                           Proto(2) + S("cposix\nsystem\nX\x02\x00\x00\x00id\x85R."));
  EXPECT_EQ(magic_bypass.verdict, Verdict::kMalicious) << Dump(magic_bypass);
}

// Legacy tar torch.save members ('storages', 'tensors'): records of pickles and raw data.
TEST(PickleBypass, LegacyTarMembers) {
  std::string record = Proto(2) + "(" + X("0") + X("cpu") + "ctorch\nFloatStorage\nt.";
  std::string views = Proto(2) + "].";
  std::string storages = Proto(2) + "K\x01." + record + Le(3, 8) + std::string(12, '\x02') + views;
  auto ok = Scan(storages, "storages");
  EXPECT_EQ(ok.verdict, Verdict::kClean) << Dump(ok);
  auto bad_size =
      Scan(Proto(2) + "K\x01." + record + Le(300, 8) + std::string(12, '\x02') + views, "storages");
  EXPECT_EQ(bad_size.verdict, Verdict::kInconclusive) << Dump(bad_size);
  std::string evil = Proto(2) + "(" + X("0") + X("cpu") + "cposix\nsystem\nt.";
  auto evil_type =
      Scan(Proto(2) + "K\x01." + evil + Le(3, 8) + std::string(12, '\x02') + views, "storages");
  EXPECT_EQ(evil_type.verdict, Verdict::kMalicious) << Dump(evil_type);
  std::string tensor = Proto(2) + "(" + X("t0") + X("0") + "ctorch\nFloatTensor\nt.";
  std::string dims = Le(2, 4) + Le(0, 4) + Le(3, 8) + Le(4, 8) + Le(4, 8) + Le(1, 8) + Le(0, 8);
  auto tensors = Scan(Proto(2) + "K\x01." + tensor + dims, "archive/tensors");
  EXPECT_EQ(tensors.verdict, Verdict::kClean) << Dump(tensors);
  auto tensors_evil = Scan(
      Proto(2) + "K\x02." + tensor + dims + P4(CallStr("os", "system", "x")) + dims, "tensors");
  EXPECT_EQ(tensors_evil.verdict, Verdict::kMalicious) << Dump(tensors_evil);
}

// Concatenated streams: a benign first stream does not hide a malicious second one.
TEST(PickleBypass, ConcatenatedStreams) {
  auto r = Scan(P4("]") + P4(CallStr("requests.api", "get", "https://x")));
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  auto junk = Scan(P4("]") + "\x01\x02\x03\x04");
  EXPECT_EQ(junk.verdict, Verdict::kInconclusive) << Dump(junk);
  EXPECT_TRUE(HasRule(junk, "pickle.trailing-data"));
}

// FRAME boundary divergence: an opcode straddles the frame end.
TEST(PickleBypass, FrameStraddle) {
  std::string body = U("collections") + U("OrderedDict") + kStackGlobal + ")R";
  auto r = Scan(Proto(4) + Frame(5) + body + ".");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.frame-violation"));
}

// OBJ + POP: the call is judged even though its result is discarded.
TEST(PickleBypass, ObjPopInvisibility) {
  auto r = Scan("(csmtplib\nSMTP\nV127.0.0.1\no0N.");
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
}

// BUILD on a module-level object (monkey-patching).
TEST(PickleBypass, BuildOnGlobal) {
  auto r = Scan(P4(U("torch") + U("_utils") + kStackGlobal + "}" + U("x") + "K\x01sb"));
  EXPECT_EQ(r.verdict, Verdict::kMalicious) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.build-global"));
}

// Extension codes, out-of-band buffers and caps: never clean.
TEST(PickleBypass, UnresolvableConstructsAndCaps) {
  EXPECT_EQ(Scan(Proto(2) + "\x82\x07)R.").verdict, Verdict::kInconclusive);
  EXPECT_EQ(Scan(Proto(5) + "\x97.").verdict, Verdict::kInconclusive);
  airlock::scan::ScanOptions small;
  small.limits.max_pickle_ops = 100;
  std::string many = Proto(4) + "]" + std::string(200, 'N') + ".";
  auto capped = airlock::scan::ScanBuffer(Bytes(many), "x.pkl", small);
  EXPECT_EQ(capped.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(HasRule(capped, "pickle.limit"));
  auto memo = Scan("Np99999999999999\n.");
  EXPECT_EQ(memo.verdict, Verdict::kInconclusive);
}

// Not a pickle at all (binary junk named .pt): the unpickler fails before doing anything. (A PNG
// named .pt is recognised as an image before the pickle analyzer sees it.)
TEST(PickleBypass, NotAPickle) {
  auto r = Scan(std::string("\xff\xfe\x00\x01junk", 8), "bad.pt");
  EXPECT_EQ(r.verdict, Verdict::kClean) << Dump(r);
  EXPECT_TRUE(HasRule(r, "pickle.not-a-pickle"));
}

// joblib: pickles interleaved with raw array bytes.
std::string JoblibArray(const std::string& dtype, int n, const std::string& data) {
  return U("joblib.numpy_pickle") + U("NumpyArrayWrapper") + kStackGlobal + ")" + kNewObj + "}(" +
         U("subclass") + U("numpy") + U("ndarray") + kStackGlobal + U("shape") + "K" +
         static_cast<char>(n) + kTuple1 + U("order") + U("C") + U("dtype") + U("numpy") +
         U("dtype") + kStackGlobal + U(dtype) + "\x89\x88\x87R" + U("allow_mmap") + "\x88" +
         U("numpy_array_alignment_bytes") + "K\x10" + "ub" + data;
}

TEST(PickleBypass, JoblibFiles) {
  std::string arr = JoblibArray("f8", 2, std::string("\x00", 1) + std::string(16, '\x80'));
  auto ok = Scan(Proto(4) + "}" + U("coef") + arr + "s.", "model.joblib");
  EXPECT_EQ(ok.verdict, Verdict::kClean) << Dump(ok);
  auto evil =
      Scan(Proto(4) + "}" + U("coef") + arr + "s" + U("x") + CallStr("os", "system", "id") + "s.",
           "model.joblib");
  EXPECT_EQ(evil.verdict, Verdict::kMalicious) << Dump(evil);
  // Non-seekable targets write numpy_array_alignment_bytes=None and no padding byte.
  std::string unaligned = U("joblib.numpy_pickle") + U("NumpyArrayWrapper") + kStackGlobal + ")" +
                          kNewObj + "}(" + U("shape") + "K\x03" + kTuple1 + U("dtype") +
                          U("numpy") + U("dtype") + kStackGlobal + U("u1") + "\x89\x88\x87R" +
                          U("numpy_array_alignment_bytes") + "N" + "ub" + "abc";
  EXPECT_EQ(Scan(Proto(4) + unaligned + ".", "m.joblib").verdict, Verdict::kClean);
  // Protocol 2 without NEWOBJ for the wrapper: copyreg._reconstructor(cls, object, None).
  std::string p2 = Proto(2) + "cjoblib.numpy_pickle\nNumpyArrayWrapper\n" +
                   "ccopy_reg\n_reconstructor\n" + "(" +
                   "cjoblib.numpy_pickle\nNumpyArrayWrapper\n" + "c__builtin__\nobject\nNtR}(" +
                   U("shape") + "K\x02" + kTuple1 + U("dtype") + "cnumpy\ndtype\n" + U("i4") +
                   "\x89\x88\x87R" + "ub" + std::string(8, '\x07') + "0.";
  auto r2 = Scan(p2, "old.joblib");
  EXPECT_EQ(r2.verdict, Verdict::kClean) << Dump(r2);
  // Object arrays carry a nested pickle right after the wrapper.
  std::string obj = JoblibArray("O", 1, P4(CallStr("os", "system", "id")));
  auto nested = Scan(Proto(4) + obj + ".", "model.joblib");
  EXPECT_EQ(nested.verdict, Verdict::kMalicious) << Dump(nested);
}

}  // namespace
