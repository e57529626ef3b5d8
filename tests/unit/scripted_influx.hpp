#pragma once
// A scripted InfluxDB in the test process, on a loopback port: each /write is answered as the test's
// script says (status, Retry-After, a delay, or a connection cut in the middle of the response), and
// every request is noted. A real InfluxDB cannot be made to answer so on purpose.
#include <httplib.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace plantd::test {

class ScriptedInflux {
  public:
    struct Reply {
        Reply(int status_ = 204, std::string body_ = {}, std::string retry_after_ = {},
              std::chrono::milliseconds delay_ = {}, bool cut_ = false)
            : status(status_),
              body(std::move(body_)),
              retry_after(std::move(retry_after_)),
              delay(delay_),
              cut(cut_) {}
        int status;
        std::string body;
        std::string retry_after;  // "" = no header
        std::chrono::milliseconds delay;
        bool cut;  // the response ends after a few bytes of its body (connection reset)
    };
    // The reply to the n-th /write (from 0), given its body.
    using Script = std::function<Reply(size_t n, const std::string& body)>;

    explicit ScriptedInflux(std::vector<Reply> replies)
        : ScriptedInflux(
              [replies](size_t n, const std::string&) { return replies[std::min(n, replies.size() - 1)]; }) {}
    explicit ScriptedInflux(Script script) : script_(std::move(script)) {
        server_.Post("/write", [this](const httplib::Request& request, httplib::Response& response) {
            Reply reply;
            {
                std::lock_guard lock(mutex_);
                writes_.push_back(
                    {request.get_param_value("db"), request.body, std::chrono::steady_clock::now()});
                reply = script_(writes_.size() - 1, request.body);
            }
            if (reply.delay.count() > 0) std::this_thread::sleep_for(reply.delay);
            response.status = reply.status;
            if (!reply.retry_after.empty()) response.set_header("Retry-After", reply.retry_after);
            if (reply.cut) {
                response.set_content_provider(1000, "application/json",
                                              [](size_t, size_t, httplib::DataSink& sink) {
                                                  sink.write("{\"err", 5);
                                                  return false;  // the connection ends here
                                              });
                return;
            }
            response.set_content(reply.body, "application/json");
        });
        server_.Post("/query", [this](const httplib::Request& request, httplib::Response& response) {
            std::lock_guard lock(mutex_);
            queries_.push_back(request.has_param("q") ? request.get_param_value("q") : request.body);
            response.set_content(R"({"results":[{"statement_id":0}]})", "application/json");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ~ScriptedInflux() {
        server_.stop();
        thread_.join();
    }
    std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
    struct Write {
        std::string database, body;
        std::chrono::steady_clock::time_point at;
    };
    std::vector<Write> writes() const {
        std::lock_guard lock(mutex_);
        return writes_;
    }
    std::vector<std::string> queries() const {
        std::lock_guard lock(mutex_);
        return queries_;
    }

  private:
    httplib::Server server_;
    Script script_;
    mutable std::mutex mutex_;
    std::vector<Write> writes_;
    std::vector<std::string> queries_;
    int port_ = 0;
    std::thread thread_;
};

}  // namespace plantd::test
