#pragma once
// Listens for registry change notifications on Redis pub/sub (RegistryCache::channel()) on its own
// connection and thread. Each message names a factory (or "*"); `on_change` gets it. After every
// (re)subscription `on_change("*")` runs too: changes published while we were not listening are then
// not missed. Redis down: reconnects with capped backoff (1 s .. 30 s); the registry's periodic
// reload still brings changes in meanwhile.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.hpp"
#include "control/metrics.hpp"

namespace plantd {

class RegistryNotifications {
  public:
    using OnChange = std::function<void(const std::string& factory_id)>;

    RegistryNotifications(const RegistryConfig& config, std::string channel, OnChange on_change);
    ~RegistryNotifications();

    void start();
    void stop();
    bool subscribed() const { return subscribed_.load(); }
    uint64_t received() const { return received_.load(); }

  private:
    void run();
    std::string listen_once();  // why it ended ("" when stopping)
    bool stopping() const { return stopping_.load(); }

    const RegistryConfig& config_;
    std::string channel_;
    OnChange on_change_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> subscribed_{false};
    std::atomic<uint64_t> received_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::thread thread_;
};

}  // namespace plantd
