#pragma once
// Listens to one Redis pub/sub channel on its own connection and thread: registry change
// notifications (RegistryCache::channel(): a factory id or "*") and alert acknowledgements. Anyone
// who can publish may send anything, so only messages `accept` approves reach `on_message`. After
// every (re)subscription `on_message("*")` runs too: whatever was published while we were not
// listening can then be caught up on. Redis down: reconnects with capped backoff (1 s .. 30 s).
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.hpp"
#include "util/service.hpp"

namespace plantd {

class RedisChannelListener final : public Service {
  public:
    using OnMessage = std::function<void(const std::string& message)>;
    using Accept = std::function<bool(const std::string& message)>;

    RedisChannelListener(const RegistryConfig& config, std::string channel, std::string thread_name,
                         Accept accept, OnMessage on_message);
    ~RedisChannelListener();

    void start() override;
    void stop();
    void stop(Deadline) override { stop(); }
    bool subscribed() const { return subscribed_.load(); }
    uint64_t received() const { return received_.load(); }

  private:
    void run();
    std::string listen_once();  // why it ended ("" when stopping)
    bool stopping() const { return stopping_.load(); }

    const RegistryConfig& config_;
    std::string channel_;
    std::string thread_name_;
    Accept accept_;
    OnMessage on_change_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> subscribed_{false};
    std::atomic<uint64_t> received_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::thread thread_;
};

}  // namespace plantd
