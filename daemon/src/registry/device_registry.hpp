#pragma once
// The registry as the ingest path sees it: the current snapshot (see registry_snapshot.hpp), kept
// fresh by a background thread that reloads it from MySQL every refresh interval and registers the
// devices that auto_register factories accepted. MySQL down: the last snapshot stays in use, the
// failure is counted, logged and shown on /health, and the thread keeps retrying.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "config/config.hpp"
#include "control/health.hpp"
#include "control/metrics.hpp"
#include "registry/registry_snapshot.hpp"

namespace plantd {

class RegistryStore;

class DeviceRegistry {
  public:
    DeviceRegistry(const RegistryConfig& config, Metrics& metrics, Health& health);
    ~DeviceRegistry();

    void start();
    void stop();
    // The current snapshot; nullptr until the first load succeeded.
    std::shared_ptr<const RegistrySnapshot> snapshot() const { return snapshot_.load(); }
    // A snapshot exists (cheaper to ask than snapshot(): no reference count).
    bool ready() const { return ready_.load(std::memory_order_acquire); }
    // Queues a device of an auto_register factory for registration; false when the backlog is full
    // (the record is then rejected). This bounds the queue and, with one registration round a
    // second, the rate at which an auto_register factory's registry can grow; not its final size.
    bool request_auto_register(std::string_view factory_id, std::string_view device_id);
    // How long the last successful load from MySQL took (ms; -1 before the first).
    int64_t last_load_ms() const { return last_load_ms_.load(); }

  private:
    void run();
    bool load();

    const RegistryConfig& config_;
    Metrics& metrics_;
    Health& health_;
    std::unique_ptr<RegistryStore> store_;
    std::atomic<std::shared_ptr<const RegistrySnapshot>> snapshot_;
    std::atomic<int64_t> last_load_ms_{-1};
    std::atomic<bool> ready_{false};

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::set<std::string, std::less<>> pending_;  // "factory/device" ('/' is in no identifier)
    std::thread thread_;
};

}  // namespace plantd
