// Python 2 module names that CPython's unpickler maps to their Python 3 homes (fix_imports), so
// that an import is judged by the module it really loads.
#include <utility>

#include "formats/pickle.h"

namespace airlock::formats::pickle {

std::string CanonicalModule(std::string_view m) {
  static const std::pair<std::string_view, std::string_view> kMap[] = {
      {"__builtin__", "builtins"},
      {"copy_reg", "copyreg"},
      {"cPickle", "pickle"},
      {"exceptions", "builtins"},
      {"UserDict", "collections"},
      {"UserList", "collections"},
      {"UserString", "collections"},
      {"commands", "subprocess"},
      {"httplib", "http.client"},
      {"urllib2", "urllib.request"},
      {"cStringIO", "io"},
      {"StringIO", "io"},
      {"thread", "_thread"},
      {"dummy_thread", "_dummy_thread"},
      {"SocketServer", "socketserver"},
      {"xmlrpclib", "xmlrpc.client"},
      {"Queue", "queue"},
      {"urlparse", "urllib.parse"},
      {"BaseHTTPServer", "http.server"},
      {"SimpleHTTPServer", "http.server"},
      {"CGIHTTPServer", "http.server"},
      {"_winreg", "winreg"},
      {"repr", "reprlib"},
      {"ConfigParser", "configparser"},
      {"__builtins__", "builtins"},
  };
  for (const auto& [from, to] : kMap) {
    if (m == from) return std::string(to);
  }
  return std::string(m);
}

}  // namespace airlock::formats::pickle
