// DeviceRegistry: parameters (metric names) discovered on the ingest path, their types, and the
// rounds that record them in MySQL.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "registry/device_registry.hpp"
#include "registry/device_registry_keys.hpp"
#include "registry/registry_cache.hpp"
#include "util/clock.hpp"

namespace plantd {

using namespace registry_detail;

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
    // The caller's view may be older than the snapshot now in place.
    if (factory) {
        if (auto known = factory->parameters.find(name); known != factory->parameters.end())
            return ParameterAnswer{ParameterAnswer::State::typed, known->second.type};
    }
    std::lock_guard lock(mutex_);
    if (auto known = discovered_types_.find(key); known != discovered_types_.end()) {
        if (known->second.settled) return ParameterAnswer{ParameterAnswer::State::typed, known->second.type};
        return answer(known->second.type);
    }
    // Settled names count against the factory's limit too: each is a field of its own in InfluxDB.
    auto count = discovered_per_factory_.find(factory_id);
    const size_t pending = count == discovered_per_factory_.end() ? 0 : count->second;
    auto settled = settled_per_factory_.find(factory_id);
    const size_t kept = settled == settled_per_factory_.end() ? 0 : settled->second;
    const size_t recorded = factory ? factory->parameters.size() : 0;
    if (recorded + pending + kept >= config_.max_parameters_per_factory ||
        discovered_.size() >= max_discovered)
        return ParameterAnswer{ParameterAnswer::State::full};
    const ParameterType type =
        type_in_destination(current.get(), factory_id, factory, name).value_or(natural_type(kind));
    discovered_.push_back(
        DiscoveredParameter{std::string(factory_id), std::string(name), type, std::string(device_id)});
    discovered_types_.emplace(std::move(key), DiscoveredType{type});
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
    for (const auto& [key, discovered] : discovered_types_) {
        const std::string_view other_factory = std::string_view(key).substr(0, key.find('/'));
        if (std::string_view(key).substr(other_factory.size() + 1) == name && other_factory != factory_id &&
            destination_of_(other_factory, snapshot ? snapshot->factory(other_factory) : nullptr) == mine)
            return discovered.type;
    }
    return std::nullopt;
}

void DeviceRegistry::forget_discovered(const RegistrySnapshot& snapshot,
                                       const std::set<std::string, std::less<>>* only) {
    // An entry answers until its parameter is in the snapshot: one discovered while the round that
    // just ran was under way is not recorded yet, and must not be discovered (and counted) again.
    // One that was recorded and is still not there never will be (MySQL took the name as another
    // row's, e.g. "temp " as "temp", whose collation ignores trailing spaces): the type chosen here
    // settles it, so that its messages are not held for ever.
    for (auto entry = discovered_types_.begin(); entry != discovered_types_.end();) {
        const std::string_view key = entry->first;
        const std::string_view factory_id = key.substr(0, key.find('/'));
        bool forget = false;
        if (!only || only->find(factory_id) != only->end()) {
            const RegistryFactory* factory = snapshot.factory(factory_id);
            if (!factory)
                forget = !only;  // a factory that is gone (after a full load)
            else if (factory->parameters.find(key.substr(factory_id.size() + 1)) != factory->parameters.end())
                forget = true;
            else if (entry->second.recorded && !entry->second.settled) {
                entry->second.settled = true;
                ++settled_per_factory_[std::string(factory_id)];
            }
        }
        if (forget && entry->second.settled) {
            auto settled = settled_per_factory_.find(factory_id);
            if (settled != settled_per_factory_.end() && --settled->second == 0)
                settled_per_factory_.erase(settled);
        }
        entry = forget ? discovered_types_.erase(entry) : std::next(entry);
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
    counters_.parameters_discovered.fetch_add(recorded);
    std::set<std::string, std::less<>> factories;
    {
        std::lock_guard lock(mutex_);
        // Recorded: they leave the queue (discovered_types_ keeps answering until the reload).
        discovered_.erase(discovered_.begin(),
                          discovered_.begin() + static_cast<std::ptrdiff_t>(batch.size()));
        for (const auto& parameter : batch) {
            factories.insert(parameter.factory_id);
            if (auto entry = discovered_types_.find(key_of(parameter.factory_id, parameter.name));
                entry != discovered_types_.end())
                entry->second.recorded = true;
            auto count = discovered_per_factory_.find(parameter.factory_id);
            if (count != discovered_per_factory_.end() && --count->second == 0)
                discovered_per_factory_.erase(count);
        }
    }
    announce(factories, changed);
}

}  // namespace plantd
