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
    // The registry: not in use (false, false), in use and current, or in use and failing to load
    // (the last snapshot stays in use; before the first one, records wait).
    std::atomic<bool> registry_enabled{false};
    std::atomic<bool> registry_failing{false};
    std::atomic<bool> registry_from_cache{false};  // the snapshot came from Redis (MySQL unreachable)
    std::atomic<bool> redis_enabled{false};
    std::atomic<bool> redis_failing{false};
    // Rules: off, or in use; a reload that failed (the previous rules still run), records dropped
    // because the engine fell behind, state not saved to Redis, an alert destination retrying.
    std::atomic<bool> rules_enabled{false};
    std::atomic<bool> rules_reload_failed{false};
    std::atomic<bool> rules_behind{false};
    std::atomic<bool> rules_state_failing{false};
    std::atomic<bool> alerts_failing{false};
    std::atomic<size_t> rule_warnings{0};  // rules whose metric no device sent, or whose factory is unknown
    // Durability: the write-ahead log cannot be written (disk full, I/O error) or holds wal_max_bytes;
    // the disk buffer holds buffer_max_bytes. Either way plantd stops taking messages (or, for the
    // buffer with drop_oldest, drops the oldest batches).
    std::atomic<bool> wal_failing{false};
    std::atomic<bool> wal_full{false};
    std::atomic<bool> buffer_full{false};
    std::atomic<int> influx_failing_destinations{0};  // across writers; influx_failing = (> 0)
    std::atomic<bool> wal_enabled{false};
    std::atomic<bool> wal_replaying{false};  // the start-up replay of the log is still running
    std::atomic<bool> buffer_enabled{false};
    std::atomic<bool> buffer_in_use{false};  // batches are on disk (InfluxDB down or behind)

    // Cluster mode: this member, the members it saw and what it owns (JSON; "" = not a cluster member).
    void set_cluster_json(std::string json) {
        std::lock_guard lock(mutex_);
        cluster_json_ = std::move(json);
    }
    std::string cluster_json() const {
        std::lock_guard lock(mutex_);
        return cluster_json_;
    }
    void set_influx_error(std::string error) {
        std::lock_guard lock(mutex_);
        influx_error_ = std::move(error);
    }
    std::string influx_error() const {
        std::lock_guard lock(mutex_);
        return influx_error_;
    }
    // The registry's last MySQL error ("" while it works).
    void set_registry_error(std::string error) {
        std::lock_guard lock(mutex_);
        registry_error_ = std::move(error);
    }
    std::string registry_error() const {
        std::lock_guard lock(mutex_);
        return registry_error_;
    }
    // Ready: receiving (subscribed) and able to write.
    bool ready() const {
        return mqtt_subscribed && !influx_failing && !draining && !wal_failing && !wal_full;
    }
    bool degraded() const {
        return !mqtt_connected || !mqtt_subscribed || influx_failing || registry_failing || redis_failing ||
               rules_reload_failed || rules_behind || rules_state_failing || alerts_failing || wal_failing ||
               wal_full || buffer_full;
    }

  private:
    mutable std::mutex mutex_;
    std::string influx_error_;
    std::string cluster_json_;
    std::string registry_error_;
};

}  // namespace plantd
