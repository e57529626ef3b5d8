#include "registry/device_registry.hpp"

#include "registry/device_registry_keys.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/identifiers.hpp"
#include "registry/mysql_session.hpp"
#include "registry/redis_channel_listener.hpp"
#include "registry/registry_cache.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

using namespace registry_detail;

namespace {

bool same_device_ids(const RegistryFactory* a, const RegistryFactory* b) {
    if (!a || !b) return a == b;
    if (a->devices.size() != b->devices.size()) return false;
    return std::all_of(a->devices.begin(), a->devices.end(),
                       [&](const auto& entry) { return b->devices.count(entry.first) > 0; });
}

}  // namespace

DeviceRegistry::DeviceRegistry(const RegistryConfig& config, Health& health)
    : config_(config), health_(health) {
    health_.registry_enabled = true;
    if (!config_.redis_host.empty()) {
        cache_ = std::make_unique<RegistryCache>(config_);
        health_.redis_enabled = true;
    }
}

DeviceRegistry::~DeviceRegistry() {
    stop();
}

void DeviceRegistry::start() {
    if (cache_) {
        notifications_ = std::make_unique<RedisChannelListener>(
            config_, cache_->channel(), "plantd-regnotify",
            // Only an identifier or "*" counts: anyone who can publish may send anything.
            [](const std::string& factory_id) {
                return factory_id == "*" || is_valid_identifier(factory_id);
            },
            [this](const std::string& factory_id) { on_change(factory_id); });
        notifications_->start();
    }
    thread_ = std::thread([this] {
        name_this_thread("plantd-registry");
        run();
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
    if (notifications_) notifications_->stop();
}

void DeviceRegistry::on_change(const std::string& factory_id) {
    if (factory_id != "*") counters_.notifications.fetch_add(1);
    std::lock_guard lock(mutex_);
    changed_.insert(factory_id);
    // What was unknown in this factory may exist now.
    const std::string prefix = factory_id + "/";
    std::erase_if(negative_, [&](const auto& entry) {
        return factory_id == "*" || std::string_view(entry.first).starts_with(prefix);
    });
    work_ = true;
    wake_.notify_all();
}

size_t DeviceRegistry::pending_lookups() const {
    std::lock_guard lock(mutex_);
    size_t waiting = lookups_.size();
    for (const auto& [key, discovered] : discovered_types_) waiting += discovered.settled ? 0 : 1;
    return waiting;
}

bool DeviceRegistry::notifications_subscribed() const {
    return notifications_ && notifications_->subscribed();
}

bool DeviceRegistry::request_auto_register(std::string_view factory_id, std::string_view device_id) {
    std::string key = key_of(factory_id, device_id);
    std::lock_guard lock(mutex_);
    if (registrations_.find(key) != registrations_.end()) return true;
    if (registrations_.size() >= config_.auto_register_backlog) return false;
    registrations_.insert(std::move(key));
    // Woken now (the round itself runs at most once a second), not at the next full refresh.
    work_ = true;
    wake_.notify_all();
    return true;
}

void DeviceRegistry::run() {
    while (true) {
        try {
            turn();
        } catch (const std::exception& e) {
            // Allocation failures only (MySQL and Redis errors are values): keep going.
            counters_.internal_errors.fetch_add(1);
            counters_.load_failures.fetch_add(1);
            health_.registry_failing = true;
            spdlog::error("registry: refresh failed: {}", e.what());
        }
        ready_.store(snapshot() != nullptr, std::memory_order_release);
        std::unique_lock lock(mutex_);
        if (stopping_) return;
        const bool waiting = !registrations_.empty() || !discovered_.empty() || !lookups_.empty() ||
                             !changed_.empty() || redis_copy_stale_;
        int64_t wait_ms = std::max<int64_t>(0, next_full_load_ms_ - steady_clock_ms());
        if (waiting || !snapshot()) wait_ms = std::min(wait_ms, retry_ms);
        wake_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stopping_ || work_; });
        if (stopping_) return;
    }
}

void DeviceRegistry::turn() {
    std::set<std::string, std::less<>> changed;
    {
        std::lock_guard lock(mutex_);
        changed.swap(changed_);
        work_ = false;
    }
    turn_failed_ = false;
    const bool mysql = connect_mysql();
    if (!snapshot()) {
        if (mysql) load_full();
        if (!snapshot() && cache_) load_from_redis();
    } else if (mysql) {
        // Every step checks store_ again: a step that lost the connection drops it for the rest of
        // the turn (the next turn connects again).
        const int64_t now = steady_clock_ms();
        if (store_ && now - last_registration_round_ms_ >= retry_ms) register_devices(changed);
        if (store_ && now - last_parameter_round_ms_ >= retry_ms) record_parameters(changed);
        // "*": notifications (re)subscribed, perhaps to a Redis that restarted empty: reload (changes
        // may have been missed meanwhile) unless the snapshot is seconds old, and write it all again.
        const bool everything = changed.count("*") > 0;
        const bool rewrite = everything || redis_copy_stale_;
        if (cache_ && rewrite) cache_->forget_written();
        const bool fresh = now - snapshot()->loaded_ms < 2'000;
        if (store_ && (now >= next_full_load_ms_ || (everything && !fresh) || snapshot()->from_cache)) {
            load_full();
        } else if (store_) {
            if (rewrite) write_to_redis(*snapshot(), nullptr);
            if (!changed.empty()) reload_factories(changed);
        }
        if (!store_ || turn_failed_) {  // failed half way: try these factories again
            std::lock_guard lock(mutex_);
            changed_.insert(changed.begin(), changed.end());
        }
    } else if (!changed.empty()) {
        std::lock_guard lock(mutex_);
        changed_.insert(changed.begin(), changed.end());
    }
    answer_lookups();
    count_store();
}

bool DeviceRegistry::connect_mysql() {
    if (store_) return true;
    const int64_t now = steady_clock_ms();
    if (now < next_connect_ms_) return false;
    auto connected = RegistryStore::connect(config_);
    if (!connected) {
        next_connect_ms_ = now + retry_ms;
        mysql_failed("cannot connect", connected.error());
        return false;
    }
    store_ = std::move(*connected);
    counted_retries_ = counted_reconnects_ = 0;
    if (connected_before_) counters_.mysql_reconnects.fetch_add(1);
    connected_before_ = true;
    return true;
}

void DeviceRegistry::drop_if_lost() {
    if (!store_ || store_->connected()) return;
    count_store();
    store_.reset();  // no statement of it is alive: they live only inside its calls
    next_connect_ms_ = steady_clock_ms() + retry_ms;
}

void DeviceRegistry::count_store() {
    if (!store_) return;
    counters_.mysql_retries.fetch_add(store_->transient_retries() - counted_retries_);
    counters_.mysql_reconnects.fetch_add(store_->reconnects() - counted_reconnects_);
    counted_retries_ = store_->transient_retries();
    counted_reconnects_ = store_->reconnects();
}

void DeviceRegistry::mysql_failed(const std::string& what, const std::string& error) {
    counters_.load_failures.fetch_add(1);
    turn_failed_ = true;
    next_full_load_ms_ = 0;
    health_.set_registry_error(fmt::format("{}: {}", what, error));
    if (is_access_denied_text(error) && !health_.registry_failing.exchange(true)) {
        // Not an outage: retrying will not help until someone fixes the credentials or grants.
        spdlog::error(
            "registry: configuration error: MySQL refused plantd ({}: {}); fix [registry] mysql_user, "
            "mysql_password or the grants; {}",
            what, error,
            snapshot() ? "known devices keep flowing meanwhile" : "records wait until the registry loads");
        return;
    }
    if (!health_.registry_failing.exchange(true)) {
        spdlog::error("registry: MySQL: {}: {}; {}", what, error,
                      snapshot()
                          ? "known devices keep flowing; records of devices that need a lookup are held"
                          : "records wait until the registry loads");
    }
}

void DeviceRegistry::redis_failed(const std::string& what, const std::string& error) {
    counters_.redis_errors.fetch_add(1);
    if (!health_.redis_failing.exchange(true))
        spdlog::warn("registry: Redis: {}: {}; running on MySQL and the in-process snapshot", what, error);
}

void DeviceRegistry::redis_ok() {
    if (health_.redis_failing.exchange(false)) spdlog::info("registry: Redis is reachable again");
}

void DeviceRegistry::harvest_seen(const RegistryFactory& factory, const std::string& factory_id,
                                  std::vector<SeenParameter>& out) const {
    for (const auto& [name, parameter] : factory.parameters) {
        const int64_t seen = parameter.seen_minute.load(std::memory_order_relaxed);
        if (seen > parameter.stored_minute) out.push_back(SeenParameter{factory_id, name, seen});
    }
}

void DeviceRegistry::touch_seen(const std::vector<SeenParameter>& seen) {
    if (seen.empty() || !store_) return;
    if (auto problem = store_->touch_parameters(seen); !problem.empty()) {
        mysql_failed("updating parameters' last_seen", problem);
        drop_if_lost();
    }
}

void DeviceRegistry::load_full() {
    const auto previous = snapshot();
    std::vector<SeenParameter> seen;
    if (previous) {
        for (const auto& [id, factory] : previous->factories) harvest_seen(*factory, id, seen);
    }
    touch_seen(seen);
    if (!store_) return;
    size_t skipped_tags = 0;
    const int64_t started = steady_clock_ms();
    auto loaded = store_->load_snapshot(skipped_tags);
    if (!loaded) {
        mysql_failed("cannot load", loaded.error());
        drop_if_lost();
        return;
    }
    (*loaded)->loaded_ms = steady_clock_ms();
    (*loaded)->sequence = ++snapshot_sequence_;
    last_load_ms_.store((*loaded)->loaded_ms - started);
    const size_t devices = (*loaded)->device_count;
    const size_t factories = (*loaded)->factories.size();
    std::shared_ptr<const RegistrySnapshot> next = std::move(*loaded);
    snapshot_.store(next);
    generation_.fetch_add(1, std::memory_order_release);
    counters_.loads.fetch_add(1);
    {
        std::lock_guard lock(mutex_);
        forget_discovered(*next, nullptr);
    }
    const bool was_cache = health_.registry_from_cache.exchange(false);
    health_.set_registry_error({});
    if (health_.registry_failing.exchange(false) || !previous || was_cache)
        spdlog::info("registry: loaded {} factories, {} devices from MySQL", factories, devices);
    if (skipped_tags > 0)
        spdlog::warn("registry: left out {} tags that are not valid InfluxDB tags", skipped_tags);
    next_full_load_ms_ = steady_clock_ms() + (notifications_subscribed() ? config_.full_refresh_interval_ms
                                                                         : config_.refresh_interval_ms);
    write_to_redis(*next, nullptr);
}

void DeviceRegistry::load_from_redis() {
    size_t skipped = 0;
    auto loaded = cache_->load_all(skipped);
    if (!loaded) {
        redis_failed("reading the registry's copy", loaded.error());
        return;
    }
    redis_ok();
    if (loaded->empty()) return;  // nothing cached yet: records wait for MySQL
    auto next = std::make_shared<RegistrySnapshot>();
    for (auto& [id, factory] : *loaded) {
        if (!factory->destination.empty() && destination_trusted_ &&
            !destination_trusted_(id, factory->destination)) {
            counters_.untrusted_destinations.fetch_add(1);
            spdlog::error(
                "registry: the copy in Redis routes factory {} to {}, which is neither its configured "
                "database nor in [registry] allowed_destinations; its records are rejected as "
                "unknown_factory (and "
                "kept as dead letters) until MySQL answers",
                id, printable(factory->destination));
            continue;
        }
        next->factories.emplace(id, std::move(factory));
    }
    recount_devices(*next);
    next->loaded_ms = steady_clock_ms();
    next->from_cache = true;
    next->sequence = ++snapshot_sequence_;
    spdlog::warn(
        "registry: MySQL is unreachable; running on the copy in Redis ({} factories, {} devices, {} "
        "entries skipped); devices it does not hold wait for MySQL",
        next->factories.size(), next->device_count, skipped);
    snapshot_.store(std::shared_ptr<const RegistrySnapshot>(std::move(next)));
    generation_.fetch_add(1, std::memory_order_release);
    health_.registry_from_cache = true;
    counters_.loads_from_redis.fetch_add(1);
}

void DeviceRegistry::reload_factories(const std::set<std::string, std::less<>>& factories) {
    const auto current = snapshot();
    if (!store_ || !current) return;
    StringMap<std::shared_ptr<const RegistryFactory>> replaced;
    std::vector<SeenParameter> seen;
    bool recount = false;
    for (const std::string& factory_id : factories) {
        if (factory_id == "*") continue;
        size_t skipped_tags = 0;
        auto loaded = store_->load_factories(factory_id, skipped_tags);
        if (!loaded) {
            mysql_failed(fmt::format("cannot reload factory {}", factory_id), loaded.error());
            drop_if_lost();
            return;
        }
        const RegistryFactory* before = current->factory(factory_id);
        if (before) harvest_seen(*before, factory_id, seen);
        auto found = loaded->find(factory_id);
        std::shared_ptr<const RegistryFactory> after =
            found == loaded->end() ? nullptr
                                   : std::shared_ptr<const RegistryFactory>(std::move(found->second));
        recount = recount || !same_device_ids(before, after.get());
        replaced.emplace(factory_id, std::move(after));
        counters_.factory_reloads.fetch_add(1);
    }
    health_.registry_failing = false;
    publish(std::move(replaced), recount);
    {
        std::lock_guard lock(mutex_);
        forget_discovered(*snapshot(), &factories);
    }
    touch_seen(seen);
    write_to_redis(*snapshot(), &factories);
}

void DeviceRegistry::publish(StringMap<std::shared_ptr<const RegistryFactory>> changed, bool recount) {
    auto next = std::make_shared<RegistrySnapshot>(*snapshot());  // copies pointers, not factories
    for (auto& [id, factory] : changed) {
        if (factory)
            next->factories[id] = std::move(factory);
        else
            next->factories.erase(id);
    }
    if (recount) recount_devices(*next);
    next->sequence = ++snapshot_sequence_;
    snapshot_.store(std::shared_ptr<const RegistrySnapshot>(std::move(next)));
    generation_.fetch_add(1, std::memory_order_release);
}

void DeviceRegistry::write_to_redis(const RegistrySnapshot& snapshot,
                                    const std::set<std::string, std::less<>>* only) {
    if (!cache_) return;
    for (const auto& [id, factory] : snapshot.factories) {
        if (only && only->count(id) == 0) continue;
        if (auto problem = cache_->store_factory(id, *factory); !problem.empty()) {
            redis_failed("writing the registry's copy", problem);
            redis_copy_stale_ = true;
            return;
        }
    }
    // Factories MySQL no longer has (an operator removed them) leave the copy too: a later start
    // while MySQL is down must not accept them again.
    std::vector<std::string> removed;
    if (only) {
        for (const auto& id : *only)
            if (id != "*" && !snapshot.factory(id)) removed.push_back(id);
    } else {
        auto cached = cache_->factory_ids();
        if (!cached) {
            redis_failed("reading the registry's copy", cached.error());
            redis_copy_stale_ = true;
            return;
        }
        for (auto& id : *cached)
            if (!snapshot.factory(id)) removed.push_back(std::move(id));
    }
    if (auto problem = cache_->remove_factories(removed); !problem.empty()) {
        redis_failed("removing factories from the registry's copy", problem);
        redis_copy_stale_ = true;
        return;
    }
    if (!only) redis_copy_stale_ = false;
    redis_ok();
}

void DeviceRegistry::register_devices(std::set<std::string, std::less<>>& changed) {
    if (!store_) return;
    std::vector<std::string> keys;
    {
        std::lock_guard lock(mutex_);
        keys.assign(registrations_.begin(), registrations_.end());
    }
    if (keys.empty()) return;
    last_registration_round_ms_ = steady_clock_ms();
    std::vector<std::pair<std::string, std::string>> batch;
    for (const auto& key : keys)
        batch.emplace_back(key.substr(0, key.find('/')), key.substr(key.find('/') + 1));
    size_t registered = 0;
    if (std::string problem = store_->auto_register_devices(batch, registered); !problem.empty()) {
        // Counted and shown on /health, but never a reason to stop refreshing; tried again next round.
        mysql_failed(fmt::format("auto-registering {} devices", batch.size()), problem);
        drop_if_lost();
        return;
    }
    counters_.auto_registered.fetch_add(registered);
    {
        std::lock_guard lock(mutex_);
        for (const auto& key : keys) registrations_.erase(key);
    }
    std::set<std::string, std::less<>> factories;
    for (const auto& [factory_id, device_id] : batch) factories.insert(factory_id);
    announce(factories, changed);
}

void DeviceRegistry::announce(const std::set<std::string, std::less<>>& factories,
                              std::set<std::string, std::less<>>& changed) {
    changed.insert(factories.begin(), factories.end());
    if (!cache_) return;
    for (const auto& factory_id : factories) {
        if (auto problem = cache_->publish_change(factory_id); !problem.empty()) {
            redis_failed("publishing a change", problem);
            return;
        }
    }
}

}  // namespace plantd
