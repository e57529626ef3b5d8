#pragma once
// What /health and /ready report: the state of each dependency, set by the stage that owns it.
#include <atomic>
#include <mutex>
#include <string>

namespace plantd {

class Health {
  public:
    std::atomic<bool> mqtt_connected{false};
    std::atomic<bool> mqtt_subscribed{false};
    std::atomic<bool> influx_failing{false};
    std::atomic<bool> draining{false};

    void set_influx_error(std::string error) {
        std::lock_guard lock(mutex_);
        influx_error_ = std::move(error);
    }
    std::string influx_error() const {
        std::lock_guard lock(mutex_);
        return influx_error_;
    }
    // Ready: receiving (subscribed) and able to write.
    bool ready() const { return mqtt_subscribed && !influx_failing && !draining; }

  private:
    mutable std::mutex mutex_;
    std::string influx_error_;
};

}  // namespace plantd
