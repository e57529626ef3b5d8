// DeviceRegistry: devices the snapshot does not hold, looked up in Redis and then MySQL in batches
// while the workers hold their messages.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "registry/device_registry.hpp"
#include "registry/device_registry_keys.hpp"
#include "registry/registry_cache.hpp"
#include "util/clock.hpp"

namespace plantd {

using namespace registry_detail;

LookupAnswer DeviceRegistry::unknown_device(std::string_view factory_id, std::string_view device_id) {
    std::string key = key_of(factory_id, device_id);
    const int64_t now = steady_clock_ms();
    std::lock_guard lock(mutex_);
    if (auto negative = negative_.find(key); negative != negative_.end()) {
        if (negative->second > now) {
            counters_.negative_hits.fetch_add(1, std::memory_order_relaxed);
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
            counters_.redis_found.fetch_add(1);
            found[lookup.factory_id].emplace_back(lookup.device_id, std::move((*cached)[i].device));
            answered.push_back(key_of(lookup.factory_id, lookup.device_id));
        } else if (outcome == CachedLookup::Outcome::unknown) {
            counters_.redis_unknown.fetch_add(1);
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
            counters_.lookup_failures.fetch_add(device_ids.size());
            for (const auto& device_id : device_ids) failed.push_back(key_of(factory_id, device_id));
            continue;
        }
        for (const auto& device_id : device_ids) {
            auto row = rows->find(device_id);
            if (row != rows->end()) {
                counters_.mysql_found.fetch_add(1);
                found[factory_id].emplace_back(device_id, std::move(row->second));
                answered.push_back(key_of(factory_id, device_id));
            } else {
                counters_.mysql_unknown.fetch_add(1);
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
