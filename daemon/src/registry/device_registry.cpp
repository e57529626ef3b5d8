#include "registry/device_registry.hpp"

#include <spdlog/spdlog.h>

#include <vector>

#include "registry/registry_store.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

DeviceRegistry::DeviceRegistry(const RegistryConfig& config, Metrics& metrics, Health& health)
    : config_(config), metrics_(metrics), health_(health) {
    health_.registry_enabled = true;
}

DeviceRegistry::~DeviceRegistry() {
    stop();
}

void DeviceRegistry::start() {
    thread_ = std::thread([this] {
        name_this_thread("plantd-registry");
        try {
            run();
        } catch (const std::exception& e) {
            metrics_.internal_errors.fetch_add(1);
            health_.registry_failing = true;
            spdlog::critical("registry: refresh thread failed: {}", e.what());
        }
    });
}

void DeviceRegistry::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool DeviceRegistry::request_auto_register(std::string_view factory_id, std::string_view device_id) {
    std::lock_guard lock(mutex_);
    std::string key;
    key.reserve(factory_id.size() + 1 + device_id.size());
    key.append(factory_id).append(1, '/').append(device_id);
    if (pending_.find(key) != pending_.end()) return true;
    if (pending_.size() >= config_.auto_register_backlog) return false;
    pending_.insert(std::move(key));
    wake_.notify_all();
    return true;
}

bool DeviceRegistry::load() {
    if (!store_) {
        auto connected = RegistryStore::connect(config_);
        if (!connected) {
            metrics_.registry_load_failures.fetch_add(1);
            if (!health_.registry_failing.exchange(true))
                spdlog::error("registry: {}; {}", connected.error(),
                              snapshot() ? "keeping the last snapshot" : "records wait until it loads");
            return false;
        }
        store_ = std::move(*connected);
    }
    // Register what auto_register factories accepted, then load: the snapshot then holds them.
    std::vector<std::string> keys;
    {
        std::lock_guard lock(mutex_);
        keys.assign(pending_.begin(), pending_.end());
    }
    std::vector<std::pair<std::string, std::string>> batch;
    for (const auto& key : keys)
        batch.emplace_back(key.substr(0, key.find('/')), key.substr(key.find('/') + 1));
    size_t registered = 0;
    bool registration_failed = false;
    if (!batch.empty()) {
        if (std::string problem = store_->auto_register_devices(batch, registered); !problem.empty()) {
            // Counted and shown on /health, but never a reason to stop refreshing: the snapshot still
            // loads (operators' changes must arrive), and the devices are asked for again by their
            // next records.
            registration_failed = true;
            metrics_.registry_load_failures.fetch_add(1);
            if (!health_.registry_failing.exchange(true))
                spdlog::error("registry: auto-registering {} devices: {}", batch.size(), problem);
        }
    }
    size_t skipped_tags = 0;
    const int64_t started = steady_clock_ms();
    auto loaded = store_->load_snapshot(skipped_tags);
    if (!loaded) {
        metrics_.registry_load_failures.fetch_add(1);
        if (!health_.registry_failing.exchange(true))
            spdlog::error("registry: cannot load: {}; {}", loaded.error(),
                          snapshot() ? "keeping the last snapshot" : "records wait until it loads");
        store_.reset();
        return false;
    }
    (*loaded)->loaded_ms = steady_clock_ms();
    last_load_ms_.store((*loaded)->loaded_ms - started);
    const size_t devices = (*loaded)->device_count;
    const size_t factories = (*loaded)->factories.size();
    const bool first = !snapshot();
    snapshot_.store(std::move(*loaded));
    metrics_.registry_loads.fetch_add(1);
    metrics_.registry_auto_registered.fetch_add(registered);
    {
        std::lock_guard lock(mutex_);
        for (const auto& key : keys) pending_.erase(key);
    }
    if ((!registration_failed && health_.registry_failing.exchange(false)) || first)
        spdlog::info("registry: loaded {} factories, {} devices", factories, devices);
    if (skipped_tags > 0)
        spdlog::warn("registry: left out {} tags that are not valid InfluxDB tags", skipped_tags);
    return true;
}

void DeviceRegistry::run() {
    while (true) {
        bool ok = false;
        try {
            ok = load();
        } catch (const std::exception& e) {
            // Allocation failures only (MySQL errors are values): keep refreshing.
            metrics_.internal_errors.fetch_add(1);
            metrics_.registry_load_failures.fetch_add(1);
            health_.registry_failing = true;
            spdlog::error("registry: refresh failed: {}", e.what());
        }
        ready_.store(snapshot() != nullptr);
        std::unique_lock lock(mutex_);
        // Retry a failed load sooner (but not in a tight loop); after a success, wait for the
        // refresh interval or for devices to register.
        const auto wait = std::chrono::milliseconds(
            ok ? config_.refresh_interval_ms : std::min<int64_t>(config_.refresh_interval_ms, 1000));
        wake_.wait_for(lock, wait, [&] { return stopping_ || (ok && !pending_.empty()); });
        if (stopping_) return;
        // Let registrations gather: each round costs a full reload, so at most one a second.
        if (!pending_.empty()) wake_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
        if (stopping_) return;
    }
}

}  // namespace plantd
