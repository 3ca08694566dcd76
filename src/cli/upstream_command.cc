// `airlock upstream pin URL`: connects to a live https endpoint and prints the SPKI SHA-256 pins
// (RFC 7469 format) of the certificate chain it presents, as a TOML line for the policy's
// `spki_sha256` with the subject and issuer of each certificate as comments. Run once, reviewed by
// a person: the output is only as trustworthy as the network path it was fetched over, which is
// why it also says whether the chain verifies against the system CAs for that host name.
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "core/spki_pin.h"
#include "core/status.h"
#include "core/text.h"

namespace airlock::cli {
namespace {

struct PinArgs {
  std::string url;
  int timeout_s = 10;
  std::string servername;
};

struct Endpoint {
  std::string host;
  std::string port = "443";
};

// https://host[:port][/path], with [v6]:port for IPv6 literals.
Result<Endpoint> ParseHttpsUrl(const std::string& url) {
  constexpr std::string_view kScheme = "https://";
  if (url.rfind(kScheme, 0) != 0) return InvalidArgument("the URL must start with https://");
  std::string rest = url.substr(kScheme.size());
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (rest.find('@') != std::string::npos) return InvalidArgument("the URL must not hold userinfo");
  Endpoint e;
  if (!rest.empty() && rest[0] == '[') {
    std::size_t close = rest.find(']');
    if (close == std::string::npos) return InvalidArgument("unterminated [IPv6] host");
    e.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return InvalidArgument("junk after the [IPv6] host");
      e.port = rest.substr(1);
    }
  } else {
    std::size_t colon = rest.rfind(':');
    e.host = rest.substr(0, colon);
    if (colon != std::string::npos) e.port = rest.substr(colon + 1);
  }
  if (e.host.empty()) return InvalidArgument("the URL has no host");
  if (e.port.empty() || e.port.size() > 5 ||
      e.port.find_first_not_of("0123456789") != std::string::npos || std::stoi(e.port) == 0 ||
      std::stoi(e.port) > 65535)
    return InvalidArgument("the port must be 1-65535");
  return e;
}

Result<int> Connect(const Endpoint& e, int timeout_s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(e.host.c_str(), e.port.c_str(), &hints, &found); rc != 0)
    return Unavailable("cannot resolve " + e.host + ": " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  std::string last = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    timeval tv{timeout_s, 0};  // bounds connect() too on Linux (SO_SNDTIMEO)
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    last = std::strerror(errno);
    ::close(fd);
  }
  return Unavailable("cannot connect to " + e.host + ":" + e.port + ": " + last);
}

std::string NameOf(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "?";
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  // Chosen by the peer: one line, no terminal controls, so it cannot leave the TOML comment.
  std::string out = core::TerminalSafe(std::string_view(data, len > 0 ? len : 0));
  BIO_free(bio);
  return out;
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

int RunPin(const PinArgs& a) {
  auto endpoint = ParseHttpsUrl(a.url);
  if (!endpoint) {
    std::fprintf(stderr, "airlock upstream pin: %s\n", endpoint.error().message().c_str());
    return kExitError;
  }
  const std::string servername = a.servername.empty() ? endpoint->host : a.servername;
  auto fd = Connect(*endpoint, a.timeout_s);
  if (!fd) {
    std::fprintf(stderr, "airlock upstream pin: %s\n", fd.error().message().c_str());
    return kExitError;
  }
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(ctx ? SSL_new(ctx.get()) : nullptr, SSL_free);
  if (!ssl) {
    ::close(*fd);
    std::fprintf(stderr, "airlock upstream pin: %s\n", OpenSslError().c_str());
    return kExitError;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_default_verify_paths(ctx.get());
  // Verified for the report, not enforced: pinning a private CA's or a self-signed upstream is
  // exactly what a person running this may want, and the comment says what the check found.
  SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
  SSL_set1_host(ssl.get(), servername.c_str());
  SSL_set_tlsext_host_name(ssl.get(), servername.c_str());
  SSL_set_fd(ssl.get(), *fd);
  if (SSL_connect(ssl.get()) != 1) {
    std::fprintf(stderr, "airlock upstream pin: TLS handshake with %s failed: %s\n",
                 core::TerminalSafe(a.url).c_str(), OpenSslError().c_str());
    ::close(*fd);
    return kExitError;
  }
  STACK_OF(X509)* sent = SSL_get_peer_cert_chain(ssl.get());  // the leaf first, client side
  std::vector<X509*> chain;
  for (int i = 0; sent != nullptr && i < sk_X509_num(sent); ++i)
    chain.push_back(sk_X509_value(sent, i));
  if (chain.empty()) {
    std::fprintf(stderr, "airlock upstream pin: the server sent no certificate\n");
    ::close(*fd);
    return kExitError;
  }
  const long verify = SSL_get_verify_result(ssl.get());
  std::printf("# airlock upstream pin %s (%s, server name %s)\n", core::TerminalSafe(a.url).c_str(),
              SSL_get_version(ssl.get()), core::TerminalSafe(servername).c_str());
  if (verify == X509_V_OK) {
    std::printf("# the chain verifies against the system CAs for this server name\n");
  } else {
    std::printf(
        "# WARNING: the chain does NOT verify against the system CAs for this server "
        "name: %s\n# check these keys with the provider by another channel before "
        "trusting them\n",
        X509_verify_cert_error_string(verify));
  }
  std::string toml = "spki_sha256 = [";
  for (std::size_t i = 0; i < chain.size(); ++i) {
    auto pin = core::SpkiSha256Pin(chain[i]);
    if (!pin) {
      std::fprintf(stderr, "airlock upstream pin: certificate %zu: %s\n", i,
                   pin.error().message().c_str());
      ::close(*fd);
      return kExitError;
    }
    std::printf("# [%zu] %s\n#     subject: %s\n#     issuer:  %s\n#     pin:     %s\n", i,
                i == 0 ? "leaf" : "chain", NameOf(X509_get_subject_name(chain[i])).c_str(),
                NameOf(X509_get_issuer_name(chain[i])).c_str(), pin->c_str());
    toml += (i == 0 ? "\"" : ", \"") + *pin + "\"";
  }
  std::printf("%s]\n", toml.c_str());
  SSL_shutdown(ssl.get());
  ::close(*fd);
  return 0;
}

}  // namespace

void AddUpstreamCommand(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("upstream", "Tools for the upstreams the gateway forwards to");
  cmd->require_subcommand(1);
  auto args = std::make_shared<PinArgs>();
  CLI::App* pin = cmd->add_subcommand(
      "pin", "Print the SPKI SHA-256 pins (RFC 7469) of a live https endpoint for the policy");
  pin->footer(
      "Prints one comment block per certificate the server sends (leaf first: subject, issuer,\n"
      "pin) and a TOML line `spki_sha256 = [...]` with all of them. Keep the pins you trust\n"
      "(the leaf's key, or an intermediate's to survive leaf rotation) and add a spare one for\n"
      "the next key. The pins are only as trustworthy as the network they were fetched over:\n"
      "confirm them with the provider. The gateway checks them (and an expected `subject`,\n"
      "as printed here) before it sends any byte to the upstream (docs/policy.md).\n"
      "Exit codes: 0 printed; 3 usage, network or TLS error.\n"
      "Example:\n"
      "  airlock upstream pin https://api.deepseek.com/\n");
  pin->add_option("url", args->url, "https://host[:port][/path]")->required();
  pin->add_option("--timeout", args->timeout_s, "Seconds to wait for connect and each read")
      ->check(CLI::Range(1, 300))
      ->capture_default_str();
  pin->add_option("--servername", args->servername,
                  "Server name to send (SNI) and verify (default: the URL's host)");
  pin->callback([args, exit_code] { *exit_code = RunPin(*args); });
}

}  // namespace airlock::cli
