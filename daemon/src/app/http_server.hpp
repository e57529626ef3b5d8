#pragma once
// GET /metrics (Prometheus text), /health and /ready on the configured local address.
#include <memory>
#include <string>
#include <thread>

#include <atomic>
#include "control/health.hpp"

#include "control/accounting.hpp"
#include "control/metrics_registry.hpp"

namespace httplib {
class Server;
}

namespace plantd {

class ControlServer {
  public:
    // Registers its own counter with `metrics`; /health shows the points `accounting` holds buffered.
    ControlServer(MetricsRegistry& metrics, const Accounting& accounting, Health& health);
    ~ControlServer();
    // Binds "host:port" (port 0 picks a free one). Returns an error message, or "" on success.
    std::string start(const std::string& listen);
    void stop();
    int port() const { return port_; }

    std::string health_json() const;

  private:
    MetricsRegistry& metrics_;
    const Accounting& accounting_;
    Health& health_;
    std::atomic<uint64_t> internal_errors_{0};
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;
};

}  // namespace plantd
