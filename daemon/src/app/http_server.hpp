#pragma once
// GET /metrics (Prometheus text), /health and /ready on the configured address, served by a
// bounded HTTP listener (control/http_listener.hpp: limits on size, time, connections and methods).
#include <memory>
#include <string>
#include <thread>

#include <atomic>
#include "control/health.hpp"

#include "control/accounting.hpp"
#include "control/http_listener.hpp"
#include "control/metrics_registry.hpp"

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
    std::unique_ptr<HttpListener> server_;
    int port_ = 0;
};

}  // namespace plantd
