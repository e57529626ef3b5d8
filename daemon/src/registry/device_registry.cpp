#include "registry/device_registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/identifiers.hpp"
#include "registry/redis_channel_listener.hpp"
#include "registry/registry_cache.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

namespace {

constexpr size_t lookups_per_turn = 2048;
constexpr int64_t retry_ms = 1'000;         // a failed lookup, a MySQL connect, a round
constexpr size_t max_discovered = 100'000;  // parameters waiting to be recorded, all factories

std::string key_of(std::string_view a, std::string_view b) {
    std::string key;
    key.reserve(a.size() + 1 + b.size());
    key.append(a).append(1, '/').append(b);
    return key;
}

size_t negative_capacity(const RegistryConfig& config) {
    return std::max<size_t>(config.lookup_backlog * 10, 100'000);
}

bool same_device_ids(const RegistryFactory* a, const RegistryFactory* b) {
    if (!a || !b) return a == b;
    if (a->devices.size() != b->devices.size()) return false;
    return std::all_of(a->devices.begin(), a->devices.end(),
                       [&](const auto& entry) { return b->devices.count(entry.first) > 0; });
}

}  // namespace

ParameterType DeviceRegistry::discovered_type(FieldKind kind) {
    switch (kind) {
        case FieldKind::boolean:
            return ParameterType::boolean;
        case FieldKind::string:
            return ParameterType::string;
        case FieldKind::number:
            break;
    }
    return ParameterType::float_number;
}

DeviceRegistry::DeviceRegistry(const RegistryConfig& config, Metrics& metrics, Health& health)
    : config_(config), metrics_(metrics), health_(health) {
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
    if (factory_id != "*") metrics_.registry_notifications.fetch_add(1);
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
    return lookups_.size() + discovered_.size();
}

bool DeviceRegistry::notifications_subscribed() const {
    return notifications_ && notifications_->subscribed();
}

LookupAnswer DeviceRegistry::unknown_device(std::string_view factory_id, std::string_view device_id) {
    std::string key = key_of(factory_id, device_id);
    const int64_t now = steady_clock_ms();
    std::lock_guard lock(mutex_);
    if (auto negative = negative_.find(key); negative != negative_.end()) {
        if (negative->second > now) {
            metrics_.registry_negative_hits.fetch_add(1, std::memory_order_relaxed);
            return LookupAnswer::unknown;
        }
        negative_.erase(negative);
    }
    if (lookups_.count(key) > 0) return LookupAnswer::pending;
    if (lookups_.size() >= config_.lookup_backlog) return LookupAnswer::overflow;
    lookups_.emplace(std::move(key), Lookup{std::string(factory_id), std::string(device_id), 0});
    work_ = true;
    wake_.notify_all();
    return LookupAnswer::pending;
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

ParameterAnswer DeviceRegistry::discover_parameter(std::string_view factory_id, std::string_view name,
                                                   FieldKind kind, std::string_view device_id) {
    std::string key = key_of(factory_id, name);  // factory ids have no '/': the key is unambiguous
    const auto current = snapshot();
    const RegistryFactory* factory = current ? current->factory(factory_id) : nullptr;
    // MySQL decides while it answers; the snapshot's factory (or a Redis copy) is what we have otherwise.
    const bool mysql_decides =
        !health_.registry_failing.load(std::memory_order_relaxed) && !(current && current->from_cache);
    auto answer = [&](ParameterType type) {
        return mysql_decides ? ParameterAnswer{ParameterAnswer::State::pending, type}
                             : ParameterAnswer{ParameterAnswer::State::typed, type};
    };
    std::lock_guard lock(mutex_);
    if (auto known = discovered_types_.find(key); known != discovered_types_.end())
        return answer(known->second);
    auto count = discovered_per_factory_.find(factory_id);
    const size_t pending = count == discovered_per_factory_.end() ? 0 : count->second;
    const size_t recorded = factory ? factory->parameters.size() : 0;
    if (recorded + pending >= config_.max_parameters_per_factory || discovered_.size() >= max_discovered)
        return ParameterAnswer{ParameterAnswer::State::full};
    const ParameterType type =
        type_in_destination(current.get(), factory_id, factory, name).value_or(discovered_type(kind));
    discovered_.push_back(
        DiscoveredParameter{std::string(factory_id), std::string(name), type, std::string(device_id)});
    discovered_types_.emplace(std::move(key), type);
    ++discovered_per_factory_[std::string(factory_id)];
    work_ = true;  // recorded in this turn, not at the next refresh
    wake_.notify_all();
    return answer(type);
}

std::optional<ParameterType> DeviceRegistry::type_in_destination(const RegistrySnapshot* snapshot,
                                                                 std::string_view factory_id,
                                                                 const RegistryFactory* factory,
                                                                 std::string_view name) const {
    if (!destination_of_) return std::nullopt;
    const std::string mine = destination_of_(factory_id, factory);
    if (snapshot) {
        for (const auto& [id, other] : snapshot->factories) {
            if (id == factory_id) continue;
            auto parameter = other->parameters.find(name);
            if (parameter != other->parameters.end() && destination_of_(id, other.get()) == mine)
                return parameter->second.type;
        }
    }
    // Discovered and not in the snapshot yet (waiting to be recorded, or recorded and not reloaded).
    for (const auto& [key, type] : discovered_types_) {
        const std::string_view other_factory = std::string_view(key).substr(0, key.find('/'));
        if (std::string_view(key).substr(other_factory.size() + 1) == name && other_factory != factory_id &&
            destination_of_(other_factory, snapshot ? snapshot->factory(other_factory) : nullptr) == mine)
            return type;
    }
    return std::nullopt;
}

void DeviceRegistry::forget_discovered(const RegistrySnapshot& snapshot,
                                       const std::set<std::string, std::less<>>* only) {
    // An entry answers until its parameter is in the snapshot: one discovered while the round that
    // just ran was under way is not recorded yet, and must not be discovered (and counted) again.
    std::erase_if(discovered_types_, [&](const auto& entry) {
        const std::string_view key = entry.first;
        const std::string_view factory_id = key.substr(0, key.find('/'));
        if (only && only->find(factory_id) == only->end()) return false;
        const RegistryFactory* factory = snapshot.factory(factory_id);
        if (!factory) return !only;  // a factory that is gone (after a full load)
        return factory->parameters.find(key.substr(factory_id.size() + 1)) != factory->parameters.end();
    });
}

void DeviceRegistry::run() {
    while (true) {
        try {
            turn();
        } catch (const std::exception& e) {
            // Allocation failures only (MySQL and Redis errors are values): keep going.
            metrics_.internal_errors.fetch_add(1);
            metrics_.registry_load_failures.fetch_add(1);
            health_.registry_failing = true;
            spdlog::error("registry: refresh failed: {}", e.what());
        }
        ready_.store(snapshot() != nullptr, std::memory_order_release);
        std::unique_lock lock(mutex_);
        if (stopping_) return;
        const bool waiting =
            !registrations_.empty() || !discovered_.empty() || !lookups_.empty() || !changed_.empty();
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
        if (cache_ && everything) cache_->forget_written();
        const bool fresh = now - snapshot()->loaded_ms < 2'000;
        if (store_ && (now >= next_full_load_ms_ || (everything && !fresh) || snapshot()->from_cache)) {
            load_full();
        } else if (store_) {
            if (everything) write_to_redis(*snapshot(), nullptr);
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
    if (connected_before_) metrics_.registry_mysql_reconnects.fetch_add(1);
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
    metrics_.registry_mysql_retries.fetch_add(store_->transient_retries() - counted_retries_);
    metrics_.registry_mysql_reconnects.fetch_add(store_->reconnects() - counted_reconnects_);
    counted_retries_ = store_->transient_retries();
    counted_reconnects_ = store_->reconnects();
}

void DeviceRegistry::mysql_failed(const std::string& what, const std::string& error) {
    metrics_.registry_load_failures.fetch_add(1);
    turn_failed_ = true;
    next_full_load_ms_ = 0;
    if (!health_.registry_failing.exchange(true)) {
        spdlog::error("registry: MySQL: {}: {}; {}", what, error,
                      snapshot()
                          ? "known devices keep flowing; records of devices that need a lookup are held"
                          : "records wait until the registry loads");
    }
}

void DeviceRegistry::redis_failed(const std::string& what, const std::string& error) {
    metrics_.registry_redis_errors.fetch_add(1);
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
    last_load_ms_.store((*loaded)->loaded_ms - started);
    const size_t devices = (*loaded)->device_count;
    const size_t factories = (*loaded)->factories.size();
    std::shared_ptr<const RegistrySnapshot> next = std::move(*loaded);
    snapshot_.store(next);
    generation_.fetch_add(1, std::memory_order_release);
    metrics_.registry_loads.fetch_add(1);
    {
        std::lock_guard lock(mutex_);
        forget_discovered(*next, nullptr);
    }
    const bool was_cache = health_.registry_from_cache.exchange(false);
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
    for (auto& [id, factory] : *loaded) next->factories.emplace(id, std::move(factory));
    recount_devices(*next);
    next->loaded_ms = steady_clock_ms();
    next->from_cache = true;
    spdlog::warn(
        "registry: MySQL is unreachable; running on the copy in Redis ({} factories, {} devices, {} "
        "entries skipped); devices it does not hold wait for MySQL",
        next->factories.size(), next->device_count, skipped);
    snapshot_.store(std::shared_ptr<const RegistrySnapshot>(std::move(next)));
    generation_.fetch_add(1, std::memory_order_release);
    health_.registry_from_cache = true;
    metrics_.registry_loads_from_redis.fetch_add(1);
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
        metrics_.registry_factory_reloads.fetch_add(1);
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
            return;
        }
    }
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
    metrics_.registry_auto_registered.fetch_add(registered);
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

void DeviceRegistry::record_parameters(std::set<std::string, std::less<>>& changed) {
    if (!store_) return;
    std::vector<DiscoveredParameter> batch;
    {
        std::lock_guard lock(mutex_);
        batch = discovered_;
    }
    if (batch.empty()) return;
    last_parameter_round_ms_ = steady_clock_ms();
    size_t recorded = 0;
    if (std::string problem = store_->record_parameters(batch, recorded); !problem.empty()) {
        mysql_failed(fmt::format("recording {} parameters", batch.size()), problem);
        drop_if_lost();
        return;
    }
    metrics_.parameters_discovered.fetch_add(recorded);
    std::set<std::string, std::less<>> factories;
    {
        std::lock_guard lock(mutex_);
        // Recorded: they leave the queue (discovered_types_ keeps answering until the reload).
        discovered_.erase(discovered_.begin(),
                          discovered_.begin() + static_cast<std::ptrdiff_t>(batch.size()));
        for (const auto& parameter : batch) {
            factories.insert(parameter.factory_id);
            auto count = discovered_per_factory_.find(parameter.factory_id);
            if (count != discovered_per_factory_.end() && --count->second == 0)
                discovered_per_factory_.erase(count);
        }
    }
    announce(factories, changed);
}

void DeviceRegistry::answer_lookups() {
    const int64_t now = steady_clock_ms();
    std::vector<Lookup> batch;
    bool more = false;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [key, lookup] : lookups_) {
            if (lookup.next_try_ms > now) continue;
            if (batch.size() >= lookups_per_turn) {
                more = true;  // a flood: take the next batch right away, not after a pause
                break;
            }
            batch.push_back(lookup);
        }
        if (more) work_ = true;
    }
    if (batch.empty()) return;
    const auto current = snapshot();
    StringMap<std::vector<std::pair<std::string, RegistryDevice>>> found;  // by factory
    std::vector<std::string> unknown, failed, answered;
    // Redis first, for the whole batch in one round trip; what it does not know goes to MySQL.
    std::vector<const Lookup*> for_mysql;
    std::vector<RegistryCache::DeviceKey> keys;
    for (const Lookup& lookup : batch) keys.emplace_back(lookup.factory_id, lookup.device_id);
    std::optional<std::vector<CachedLookup>> cached;
    if (cache_) {
        auto answers = cache_->lookup(keys, wall_clock_ms());
        if (answers)
            cached = std::move(*answers);
        else
            redis_failed("looking devices up", answers.error());
    }
    for (size_t i = 0; i < batch.size(); ++i) {
        const Lookup& lookup = batch[i];
        const auto outcome = cached ? (*cached)[i].outcome : CachedLookup::Outcome::miss;
        if (outcome == CachedLookup::Outcome::found) {
            metrics_.registry_redis_found.fetch_add(1);
            found[lookup.factory_id].emplace_back(lookup.device_id, std::move((*cached)[i].device));
            answered.push_back(key_of(lookup.factory_id, lookup.device_id));
        } else if (outcome == CachedLookup::Outcome::unknown) {
            metrics_.registry_redis_unknown.fetch_add(1);
            unknown.push_back(key_of(lookup.factory_id, lookup.device_id));
        } else {
            for_mysql.push_back(&lookup);
        }
    }
    // MySQL, a few statements per factory.
    StringMap<std::vector<std::string>> by_factory;
    for (const Lookup* lookup : for_mysql) by_factory[lookup->factory_id].push_back(lookup->device_id);
    std::vector<RegistryCache::DeviceKey> remember;
    for (auto& [factory_id, device_ids] : by_factory) {
        auto rows = store_ ? store_->find_devices(factory_id, device_ids)
                           : Result<StringMap<RegistryDevice>>(fail(std::string("not connected")));
        if (!rows) {
            if (store_) {
                mysql_failed("looking devices up", rows.error());
                drop_if_lost();
            }
            metrics_.registry_lookup_failures.fetch_add(device_ids.size());
            for (const auto& device_id : device_ids) failed.push_back(key_of(factory_id, device_id));
            continue;
        }
        for (const auto& device_id : device_ids) {
            auto row = rows->find(device_id);
            if (row != rows->end()) {
                metrics_.registry_mysql_found.fetch_add(1);
                found[factory_id].emplace_back(device_id, std::move(row->second));
                answered.push_back(key_of(factory_id, device_id));
            } else {
                metrics_.registry_mysql_unknown.fetch_add(1);
                unknown.push_back(key_of(factory_id, device_id));
                remember.emplace_back(factory_id, device_id);
            }
        }
    }
    if (cache_ && !remember.empty()) {
        if (auto problem = cache_->store_unknown(remember, wall_clock_ms() + config_.negative_ttl_ms);
            !problem.empty())
            redis_failed("remembering unknown devices", problem);
    }
    // Devices found extend their factories (a factory the snapshot does not have is left out: its
    // records are rejected before any device lookup, and its next reload brings everything).
    StringMap<std::shared_ptr<const RegistryFactory>> extended;
    for (auto& [factory_id, devices] : found) {
        const RegistryFactory* before = current ? current->factory(factory_id) : nullptr;
        if (!before) continue;
        auto after = std::make_shared<RegistryFactory>(*before);
        for (auto& [device_id, device] : devices)
            after->devices.insert_or_assign(device_id, std::move(device));
        extended.emplace(factory_id, std::move(after));
    }
    if (!extended.empty()) {
        std::set<std::string, std::less<>> factories;
        for (const auto& [factory_id, factory] : extended) factories.insert(factory_id);
        publish(std::move(extended), true);
        write_to_redis(*snapshot(), &factories);
    }
    {
        std::lock_guard lock(mutex_);
        for (const auto& key : answered) lookups_.erase(key);
        if (negative_.size() + unknown.size() > negative_capacity(config_))
            std::erase_if(negative_, [&](const auto& entry) { return entry.second <= now; });
        for (const auto& key : unknown) {
            lookups_.erase(key);
            if (negative_.size() < negative_capacity(config_)) negative_[key] = now + config_.negative_ttl_ms;
        }
        for (const auto& key : failed) {
            auto lookup = lookups_.find(key);
            if (lookup != lookups_.end()) lookup->second.next_try_ms = now + retry_ms;
        }
    }
    generation_.fetch_add(1, std::memory_order_release);
}

}  // namespace plantd
