// Upstream identity pins: core::SpkiSha256Pin / ChainMatchesPins against the pin computed
// independently by the openssl tool, and `airlock upstream pin` against a real TLS server (an
// `openssl s_server` process this test starts) presenting a throwaway chain made here.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/spki_pin.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

using airlock::testing::Quote;

// stdout of a shell command, and its exit code.
std::string Shell(const std::string& command, int* code = nullptr) {
  auto [status, out] = airlock::testing::RunShellStdout(command);
  if (code != nullptr) *code = status;
  return out;
}

// The RFC 7469 pin of a PEM certificate, computed by the openssl tool alone.
std::string OpensslPin(const fs::path& cert) {
  std::string pin = Shell("openssl x509 -in " + Quote(cert) +
                          " -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst "
                          "-sha256 -binary | base64");
  while (!pin.empty() && pin.back() == '\n') pin.pop_back();
  return pin;
}

// A throwaway CA and a leaf it signed, made with the openssl tool.
struct TestChain {
  fs::path ca_cert, ca_key, leaf_cert, leaf_key;
};

TestChain MakeChain(const fs::path& dir) {
  TestChain c{dir / "ca.pem", dir / "ca.key", dir / "leaf.pem", dir / "leaf.key"};
  const std::string quiet = " 2>/dev/null";
  int code = 0;
  Shell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -keyout " +
            Quote(c.ca_key) + " -out " + Quote(c.ca_cert) + " -subj '/O=Airlock Test/CN=Test CA'" +
            quiet,
        &code);
  EXPECT_EQ(code, 0);
  Shell("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
            Quote(c.leaf_key) + " -out " + Quote(dir / "leaf.csr") + " -subj '/CN=localhost'" +
            quiet,
        &code);
  EXPECT_EQ(code, 0);
  Shell("openssl x509 -req -days 1 -in " + Quote(dir / "leaf.csr") + " -CA " + Quote(c.ca_cert) +
            " -CAkey " + Quote(c.ca_key) + " -CAcreateserial -out " + Quote(c.leaf_cert) + quiet,
        &code);
  EXPECT_EQ(code, 0);
  return c;
}

X509* LoadCert(const fs::path& p) {
  FILE* f = std::fopen(p.c_str(), "r");
  if (f == nullptr) return nullptr;
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return x;
}

bool Accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// `openssl s_server` on 127.0.0.1, stopped when this object goes.
class TlsServer {
 public:
  TlsServer(const fs::path& cert, const fs::path& key, const fs::path& chain) {
    port_ = airlock::testing::UnusedLoopbackPort();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::freopen("/dev/null", "w", stdout);
      std::freopen("/dev/null", "w", stderr);
      const std::string accept = "127.0.0.1:" + std::to_string(port_);
      std::vector<std::string> args = {"openssl", "s_server", "-quiet",      "-www", "-accept",
                                       accept,    "-cert",    cert.string(), "-key", key.string()};
      if (!chain.empty()) {
        args.push_back("-cert_chain");
        args.push_back(chain.string());
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("openssl", argv.data());
      ::_exit(127);
    }
    // Readiness, not timing: wait until it accepts, or until the process is gone.
    for (int i = 0; i < 500 && !ready_; ++i) {
      if (Accepts(port_))
        ready_ = true;
      else if (::waitpid(pid_, nullptr, WNOHANG) == pid_)
        break;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~TlsServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool ready() const { return ready_; }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool ready_ = false;
};

TEST(SpkiPin, EqualsTheOpensslToolsPin) {
  airlock::testing::TempDir dir("pin");
  TestChain chain = MakeChain(dir.path());
  for (const fs::path& p : {chain.leaf_cert, chain.ca_cert}) {
    X509* cert = LoadCert(p);
    ASSERT_NE(cert, nullptr);
    auto pin = airlock::core::SpkiSha256Pin(cert);
    ASSERT_TRUE(pin.has_value()) << pin.error().message();
    EXPECT_EQ(*pin, OpensslPin(p));
    EXPECT_TRUE(airlock::core::ValidateSpkiPin(*pin).ok());
    X509_free(cert);
  }
}

// The fingerprint, subject and organizations the gateway checks and audits equal what the openssl
// tool prints for the same certificate (the policy's `subject` is copied from such output).
TEST(SpkiPin, FingerprintSubjectAndOrganizationEqualTheOpensslTools) {
  airlock::testing::TempDir dir("pin-subject");
  TestChain chain = MakeChain(dir.path());
  X509* ca = LoadCert(chain.ca_cert);
  ASSERT_NE(ca, nullptr);
  int code = 0;
  std::string fp =
      Shell("openssl x509 -in " + Quote(chain.ca_cert) + " -noout -fingerprint -sha256", &code);
  std::string hex;
  for (char c : fp.substr(fp.find('=') + 1))
    if (std::isxdigit(static_cast<unsigned char>(c)))
      hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto mine = airlock::core::CertificateSha256(ca);
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(*mine, hex);
  std::string subject = Shell(
      "openssl x509 -in " + Quote(chain.ca_cert) + " -noout -subject -nameopt RFC2253", &code);
  subject = subject.substr(subject.find('=') + 1);
  while (!subject.empty() && (subject.back() == '\n' || subject.back() == '\r')) subject.pop_back();
  EXPECT_EQ(airlock::core::SubjectRfc2253(ca), subject);
  EXPECT_EQ(airlock::core::SubjectRfc2253(ca), "CN=Test CA,O=Airlock Test");
  EXPECT_EQ(airlock::core::SubjectOrganizations(ca), std::vector<std::string>{"Airlock Test"});
  EXPECT_FALSE(airlock::core::CertificateSha256(nullptr).has_value());
  X509_free(ca);
}

TEST(SpkiPin, AChainWithAnotherKeyDoesNotMatch) {
  airlock::testing::TempDir dir("pin-chain");
  TestChain pinned = MakeChain(dir.path());
  fs::create_directories(dir.path() / "impostor");
  TestChain impostor = MakeChain(dir.path() / "impostor");
  X509* leaf = LoadCert(pinned.leaf_cert);
  X509* ca = LoadCert(pinned.ca_cert);
  X509* fake_leaf = LoadCert(impostor.leaf_cert);
  X509* fake_ca = LoadCert(impostor.ca_cert);
  ASSERT_TRUE(leaf && ca && fake_leaf && fake_ca);
  const std::vector<std::string> leaf_pin = {OpensslPin(pinned.leaf_cert)};
  const std::vector<std::string> ca_pin = {OpensslPin(pinned.ca_cert)};
  std::vector<X509*> real = {leaf, ca};
  std::vector<X509*> fake = {fake_leaf, fake_ca};
  // Same names, same shape, other keys: a man in the middle with its own CA.
  EXPECT_TRUE(airlock::core::ChainMatchesPins(real, leaf_pin));
  EXPECT_TRUE(airlock::core::ChainMatchesPins(real, ca_pin));
  EXPECT_FALSE(airlock::core::ChainMatchesPins(fake, leaf_pin));
  EXPECT_FALSE(airlock::core::ChainMatchesPins(fake, ca_pin));
  EXPECT_FALSE(airlock::core::ChainMatchesPins(real, std::vector<std::string>{}));
  for (X509* x : {leaf, ca, fake_leaf, fake_ca}) X509_free(x);
}

TEST(SpkiPin, MalformedPinsAreRejected) {
  using airlock::core::ValidateSpkiPin;
  EXPECT_TRUE(ValidateSpkiPin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").ok());  // SHA-256("")
  EXPECT_FALSE(ValidateSpkiPin("").ok());
  EXPECT_FALSE(ValidateSpkiPin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU").ok());
  EXPECT_FALSE(ValidateSpkiPin("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=").ok());  // URL-safe
  EXPECT_FALSE(ValidateSpkiPin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=").ok());  // bits
  EXPECT_FALSE(ValidateSpkiPin("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").ok());
  EXPECT_FALSE(airlock::core::SpkiSha256Pin(nullptr).has_value());
}

TEST(UpstreamPinCommand, PrintsThePinsOfALiveServersChain) {
  airlock::testing::TempDir dir("pin-live");
  TestChain chain = MakeChain(dir.path());
  TlsServer server(chain.leaf_cert, chain.leaf_key, chain.ca_cert);
  ASSERT_TRUE(server.ready()) << "openssl s_server did not start";
  int code = -1;
  const std::string out = Shell(std::string(AIRLOCK_EXE) + " upstream pin https://127.0.0.1:" +
                                    std::to_string(server.port()) + "/v1 2>&1",
                                &code);
  EXPECT_EQ(code, 0) << out;
  const std::string expected = "spki_sha256 = [\"" + OpensslPin(chain.leaf_cert) + "\", \"" +
                               OpensslPin(chain.ca_cert) + "\"]\n";
  EXPECT_NE(out.find(expected), std::string::npos) << out;
  EXPECT_NE(out.find("#     subject: CN=localhost\n"), std::string::npos) << out;
  EXPECT_NE(out.find("#     issuer:  CN=Test CA,O=Airlock Test\n"), std::string::npos) << out;
  // A private CA is not in the system store: said, not hidden.
  EXPECT_NE(out.find("# WARNING: the chain does NOT verify"), std::string::npos) << out;
}

TEST(UpstreamPinCommand, HostileSubjectCannotInjectPolicyLines) {
  // A certificate whose subject carries a newline, a fake TOML line and a terminal escape.
  airlock::testing::TempDir dir("pin-hostile");
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  const std::string cn = "evil\n]\nspki_sha256 = [\"AAAA\"]\n\x1b[2J";
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.data()),
                             static_cast<int>(cn.size()), -1, 0);
  X509_set_issuer_name(x, name);
  ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
  const fs::path cert = dir.path() / "evil.pem", key_path = dir.path() / "evil.key";
  FILE* f = std::fopen(cert.c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);

  TlsServer server(cert, key_path, {});
  ASSERT_TRUE(server.ready()) << "openssl s_server did not start";
  int code = -1;
  const std::string out = Shell(std::string(AIRLOCK_EXE) + " upstream pin https://127.0.0.1:" +
                                    std::to_string(server.port()) + " 2>/dev/null",
                                &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  // Every line is a comment but the one TOML line, which holds the real pin only.
  std::istringstream lines(out);
  std::string line;
  int toml_lines = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("#", 0) == 0) continue;
    ++toml_lines;
    EXPECT_EQ(line, "spki_sha256 = [\"" + OpensslPin(cert) + "\"]");
  }
  EXPECT_EQ(toml_lines, 1) << out;
}

TEST(UpstreamPinCommand, RefusesWhatIsNotAnHttpsUrl) {
  int code = -1;
  Shell(std::string(AIRLOCK_EXE) + " upstream pin http://127.0.0.1:1/ 2>/dev/null", &code);
  EXPECT_EQ(code, 3);
  Shell(std::string(AIRLOCK_EXE) + " upstream pin https://127.0.0.1:99999/ 2>/dev/null", &code);
  EXPECT_EQ(code, 3);
  Shell(std::string(AIRLOCK_EXE) + " upstream pin https://user@127.0.0.1/ 2>/dev/null", &code);
  EXPECT_EQ(code, 3);
}

}  // namespace
