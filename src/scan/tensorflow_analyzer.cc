// TensorFlow SavedModel (saved_model.pb) and frozen GraphDef files: walk every NodeDef in the
// graph and in its function library and judge the op names. Python-callback ops run arbitrary
// Python when the graph executes; file I/O ops can read or overwrite files on the host.
#include <array>
#include <string>

#include "formats/protobuf.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {
namespace {

using formats::protobuf::Field;
using formats::protobuf::FieldReader;
using formats::protobuf::WireType;

// Field numbers from tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
// framework/graph.proto, function.proto and node_def.proto.
constexpr std::uint32_t kSavedModelMetaGraphs = 2;
constexpr std::uint32_t kMetaGraphGraphDef = 2;
constexpr std::uint32_t kGraphNode = 1;
constexpr std::uint32_t kGraphLibrary = 2;
constexpr std::uint32_t kLibraryFunction = 1;
constexpr std::uint32_t kFunctionNodeDef = 3;
constexpr std::uint32_t kNodeName = 1;
constexpr std::uint32_t kNodeOp = 2;

struct OpRule {
  std::string_view op;
  Severity severity;
  std::string_view why;
};

constexpr std::array kOpRules = {
    OpRule{"PyFunc", Severity::kCritical,
           "runs an arbitrary Python function when the graph executes"},
    OpRule{"PyFuncStateless", Severity::kCritical,
           "runs an arbitrary Python function when the graph executes"},
    OpRule{"EagerPyFunc", Severity::kCritical,
           "runs an arbitrary Python function when the graph executes"},
    OpRule{"ReadFile", Severity::kHigh, "reads a file from the host file system"},
    OpRule{"WriteFile", Severity::kHigh, "writes a file on the host file system"},
    OpRule{"MatchingFiles", Severity::kHigh, "lists files on the host file system"},
    OpRule{"ImmutableConst", Severity::kMedium, "memory-maps a file named in the graph"},
};

class GraphWalker {
 public:
  GraphWalker(Scanner& s, const Target& t) : s_(s), t_(t) {}

  std::size_t nodes() const { return nodes_; }
  bool failed() const { return failed_; }

  // `base` is the offset of `msg` within t_.data, for findings.
  void WalkGraph(std::span<const std::byte> msg, std::uint64_t base) {
    FieldReader r(msg);
    while (auto f = r.Next()) {
      if (f->type != WireType::kLen) continue;
      if (f->number == kGraphNode) WalkNode(f->bytes, base + Offset(msg, f->bytes));
      if (f->number == kGraphLibrary) WalkLibrary(f->bytes, base + Offset(msg, f->bytes));
    }
    Check(r, base);
  }

  void WalkSavedModel(std::span<const std::byte> msg) {
    FieldReader r(msg);
    while (auto f = r.Next()) {
      if (f->number != kSavedModelMetaGraphs || f->type != WireType::kLen) continue;
      FieldReader meta(f->bytes);
      std::uint64_t meta_base = Offset(t_.data, f->bytes);
      while (auto g = meta.Next()) {
        if (g->number == kMetaGraphGraphDef && g->type == WireType::kLen)
          WalkGraph(g->bytes, Offset(t_.data, g->bytes));
      }
      Check(meta, meta_base);
    }
    Check(r, 0);
  }

 private:
  std::uint64_t Offset(std::span<const std::byte> outer, std::span<const std::byte> inner) {
    return static_cast<std::uint64_t>(inner.data() - outer.data());
  }

  void Check(const FieldReader& r, std::uint64_t base) {
    if (!r.error().ok() && !failed_) {
      failed_ = true;
      s_.Incomplete(t_, "tensorflow.parse-error",
                    "malformed TensorFlow protobuf: " + r.error().message(), base);
    }
  }

  void WalkLibrary(std::span<const std::byte> msg, std::uint64_t base) {
    FieldReader r(msg);
    while (auto f = r.Next()) {
      if (f->number != kLibraryFunction || f->type != WireType::kLen) continue;
      FieldReader fn(f->bytes);
      while (auto g = fn.Next()) {
        if (g->number == kFunctionNodeDef && g->type == WireType::kLen)
          WalkNode(g->bytes, Offset(t_.data, g->bytes));
      }
      Check(fn, base);
    }
    Check(r, base);
  }

  void WalkNode(std::span<const std::byte> msg, std::uint64_t offset) {
    ++nodes_;
    std::string_view name, op;
    FieldReader r(msg);
    while (auto f = r.Next()) {
      if (f->type != WireType::kLen) continue;
      if (f->number == kNodeName) name = f->AsString();
      if (f->number == kNodeOp) op = f->AsString();
    }
    Check(r, offset);
    for (const OpRule& rule : kOpRules) {
      if (op == rule.op) {
        s_.Add(t_, "tensorflow.dangerous-op", rule.severity,
               "graph node '" + std::string(name.substr(0, 200)) + "' uses op " + std::string(op) +
                   ", which " + std::string(rule.why),
               offset);
      }
    }
  }

  Scanner& s_;
  const Target& t_;
  std::size_t nodes_ = 0;
  bool failed_ = false;
};

}  // namespace

void AnalyzeTfGraph(Scanner& s, const Target& t) {
  GraphWalker saved(s, t);
  saved.WalkSavedModel(t.data);
  if (saved.failed() || saved.nodes() > 0) return;
  // Not a SavedModel with nodes: try a frozen GraphDef.
  GraphWalker graph(s, t);
  graph.WalkGraph(t.data, 0);
  if (graph.failed()) return;
  if (graph.nodes() == 0) {
    s.Incomplete(t, "tensorflow.no-graph",
                 "no TensorFlow graph nodes found in this .pb file: content could not be vetted", 0,
                 Severity::kLow);
  }
}

}  // namespace airlock::scan::internal
