// deploy/kubernetes/ checked against the real `airlock serve` (scripts/check-manifests.py, with
// Debian's python3-yaml): probes on /health and /ready at the served port, flags that exist, the
// queue-depth metric the gateway exports, the drain grace period, secrets as read-only files; the
// policies in the ConfigMaps parse with Airlock's own parser; the Gateway API Inference Extension
// overlay (inference-extension/) selects and targets the workers defined beside it. Each invariant
// is also broken on purpose in a copy, and the check must then fail.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "policy/policy.h"
#include "test_util.h"

namespace {

using airlock::testing::ReadFileText;

namespace fs = std::filesystem;
using airlock::testing::TempDir;

const fs::path kManifests = fs::path(AIRLOCK_SOURCE_DIR) / "deploy" / "kubernetes";

std::pair<int, std::string> Check(const fs::path& dir) {
  return airlock::testing::RunShell("python3 '" + std::string(AIRLOCK_SOURCE_DIR) +
                                    "/scripts/check-manifests.py' '" + dir.string() + "' '" +
                                    AIRLOCK_EXE + "' '" + AIRLOCK_SOURCE_DIR + "'");
}

// A copy of the manifests with `from` replaced by `to` in `file` (which must contain it).
fs::path Mutated(const TempDir& dir, const std::string& file, const std::string& from,
                 const std::string& to) {
  fs::copy(kManifests, dir.path(), fs::copy_options::recursive);
  std::string text = ReadFileText(dir.path() / file);
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from << " not in " << file;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  std::ofstream(dir.path() / file) << text;
  return dir.path();
}

TEST(KubernetesManifests, EveryManifestParsesAndMatchesTheServeCommand) {
  ASSERT_TRUE(fs::is_directory(kManifests));
  auto r = Check(kManifests);
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_NE(r.second.find(", 0 problem(s)"), std::string::npos) << r.second;
  EXPECT_NE(r.second.find("2 workloads"), std::string::npos) << r.second;
}

// The policy.toml of each ConfigMap (a YAML block scalar) parses with Airlock's policy parser.
TEST(KubernetesManifests, ConfigMapPoliciesParse) {
  for (const char* file : {"gateway-config.yaml", "worker.yaml"}) {
    std::istringstream in(ReadFileText(kManifests / file));
    std::string line, toml;
    bool inside = false;
    while (std::getline(in, line)) {
      if (line.find("policy.toml: |") != std::string::npos) {
        inside = true;
        continue;
      }
      if (inside && !line.empty() && line.rfind("    ", 0) != 0) break;
      if (inside) toml += (line.size() > 4 ? line.substr(4) : "") + "\n";
    }
    ASSERT_FALSE(toml.empty()) << file;
    auto p = airlock::policy::ParsePolicy(toml, file);
    ASSERT_TRUE(p.ok()) << file << ": " << p.error().message();
    EXPECT_EQ(p->store.url.rfind("postgresql://", 0), 0u) << file;
    EXPECT_FALSE(p->store.password_file.empty()) << file;
    EXPECT_FALSE(p->server.tls_cert.empty()) << file;
  }
}

struct Breakage {
  const char* file;
  const char* from;
  const char* to;
  const char* expected;
};

TEST(KubernetesManifests, EachBrokenInvariantIsCaught) {
  const Breakage cases[] = {
      {"gateway.yaml", "path: /ready", "path: /readyz", "readinessProbe must GET /ready"},
      {"gateway.yaml", "path: /health", "path: /healthz", "livenessProbe must GET /health"},
      {"gateway.yaml", "\"--port\", \"8443\"", "\"--listen-port\", \"8443\"",
       "--listen-port is not an `airlock serve` flag"},
      {"gateway.yaml", "\"--port\", \"8443\"", "\"--port\", \"9443\"", "is not a container port"},
      {"gateway.yaml", "name: airlock_in_flight_requests", "name: airlock_queue_depth",
       "airlock_queue_depth is not exported"},
      {"gateway.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30",
       "must exceed drain_timeout_s"},
      {"gateway.yaml", "scheme: HTTPS", "scheme: HTTP", "must use HTTPS"},
      {"gateway.yaml", "      targetPort: https", "      targetPort: http",
       "targetPort http is no container port"},
      {"gateway.yaml",
       "              mountPath: /etc/airlock/postgres\n              readOnly: true",
       "              mountPath: /etc/airlock/postgres",
       "/etc/airlock/postgres/password is not on a read-only Secret/ConfigMap mount"},
      {"gateway-config.yaml", "postgresql://airlock@postgres",
       "postgresql://airlock:hunter2@postgres", "[store] url holds a password"},
      {"worker.yaml", "    kind: Deployment\n    name: airlock-worker",
       "    kind: Deployment\n    name: airlock-workers", "not defined here"},
      {"worker.yaml",
       "            requests:\n              cpu: \"4\"\n              memory: 2Gi\n", "",
       "requests and limits"},
      // The Gateway API Inference Extension overlay against the workers it routes to.
      {"inference-extension/inference-pool.yaml", "    - number: 8081", "    - number: 8080",
       "target port 8080 is no container port of the pool's pods"},
      {"inference-extension/inference-pool.yaml",
       "      app.kubernetes.io/component: worker\n  targetPorts",
       "      app.kubernetes.io/component: workers\n  targetPorts",
       "selects no Deployment defined here"},
      {"inference-extension/inference-pool.yaml",
       "          kind: InferencePool\n          name: airlock-workers",
       "          kind: InferencePool\n          name: airlock-worker",
       "backend airlock-worker names no InferencePool defined here"},
      {"inference-extension/inference-pool.yaml",
       "  parentRefs:\n    - name: airlock-inference-gateway\n",
       "  parentRefs:\n    - name: inference-gateway\n", "names no Gateway defined here"},
  };
  for (const Breakage& b : cases) {
    TempDir dir("manifests");
    fs::path copy = Mutated(dir, b.file, b.from, b.to);
    auto r = Check(copy);
    EXPECT_EQ(r.first, 1) << b.from << " -> " << b.to << "\n" << r.second;
    EXPECT_NE(r.second.find(b.expected), std::string::npos) << b.from << " -> " << b.to << "\n"
                                                            << r.second;
  }
}

}  // namespace
