#pragma once
// GET /metrics (Prometheus text), /health and /ready on the configured local address.
#include <memory>
#include <string>
#include <thread>

#include "control/health.hpp"
#include "control/metrics.hpp"

namespace httplib {
class Server;
}

namespace plantd {

class ControlServer {
  public:
    ControlServer(Metrics& metrics, Health& health);
    ~ControlServer();
    // Binds "host:port" (port 0 picks a free one). Returns an error message, or "" on success.
    std::string start(const std::string& listen);
    void stop();
    int port() const { return port_; }

    std::string health_json() const;

  private:
    Metrics& metrics_;
    Health& health_;
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;
};

}  // namespace plantd
