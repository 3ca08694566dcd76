// Shared by the gateway's end-to-end tests (reasoning_test.cc, reasoning_markers_test.cc,
// encoded_and_split_data_test.cc): cpp-httplib with the features `airlock serve` speaks, the
// common includes and names, and RecordingUpstream, a TEST DOUBLE of an upstream provider: an
// httplib server in the test process, on loopback at a free port, that keeps every request body
// as it arrived and answers as the test's handler says.
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "serve_process.h"
#include "test_util.h"

namespace airlock::testing {

class RecordingUpstream {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  // Serves POST /v1/chat/completions with `answer` after recording the body.
  explicit RecordingUpstream(Handler answer) : answer_(std::move(answer)) {
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   {
                     std::lock_guard<std::mutex> lock(mu_);
                     bodies_.push_back(req.body);
                   }
                   answer_(req, res);
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~RecordingUpstream() {
    server_.stop();
    thread_.join();
  }
  RecordingUpstream(const RecordingUpstream&) = delete;
  RecordingUpstream& operator=(const RecordingUpstream&) = delete;

  int port() const { return port_; }
  // Every body received, oldest first.
  std::vector<std::string> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  std::string last() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_.empty() ? std::string() : bodies_.back();
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_.size();
  }

 private:
  Handler answer_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::vector<std::string> bodies_;
};

}  // namespace airlock::testing
