#pragma once
// The whole registry as one immutable in-memory snapshot: the ingest path looks a record's factory,
// device and parameters up with hash lookups and never waits for MySQL or Redis. The registry thread
// builds a new snapshot (a full reload, one factory reloaded after a change notification, or devices
// found by a lookup) and swaps it in; factories are shared between snapshots, so replacing one
// factory copies only the others' pointers. A worker keeps the snapshot it took for the message it
// is processing.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/extra_tags.hpp"
#include "registry/registry_values.hpp"

namespace plantd {

struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};

template <class Value>
using StringMap = std::unordered_map<std::string, Value, TransparentHash, std::equal_to<>>;

struct RegistryDevice {
    bool enabled = true;
    ExtraTags tags;  // sorted by key, valid InfluxDB tags (checked at load)
};

struct RegistryParameter {
    ParameterType type = ParameterType::float_number;
    std::string unit;
    int64_t stored_minute = 0;  // last_seen in the registry, minutes since the epoch
    // Marked by the workers when they write the parameter (minutes since the epoch); the registry
    // thread turns marks newer than stored_minute into batched last_seen updates.
    mutable std::atomic<int64_t> seen_minute{0};

    RegistryParameter() = default;
    RegistryParameter(ParameterType t, std::string u, int64_t stored)
        : type(t), unit(std::move(u)), stored_minute(stored), seen_minute(stored) {}
    RegistryParameter(const RegistryParameter& other)
        : type(other.type),
          unit(other.unit),
          stored_minute(other.stored_minute),
          seen_minute(other.seen_minute.load(std::memory_order_relaxed)) {}
    RegistryParameter& operator=(const RegistryParameter& other) {
        type = other.type;
        unit = other.unit;
        stored_minute = other.stored_minute;
        seen_minute.store(other.seen_minute.load(std::memory_order_relaxed), std::memory_order_relaxed);
        return *this;
    }
    void mark_seen(int64_t minute) const {
        if (seen_minute.load(std::memory_order_relaxed) < minute)
            seen_minute.store(minute, std::memory_order_relaxed);
    }
};

struct RegistryFactory {
    bool enabled = true;
    UnknownDevicePolicy unknown_devices = UnknownDevicePolicy::reject;
    std::optional<double> rate_limit_per_s;  // overrides [ingest] factory_rate_limit
    std::optional<double> rate_burst;
    std::string destination;  // InfluxDB database/bucket; "" = the configured one
    StringMap<RegistryDevice> devices;
    StringMap<RegistryParameter> parameters;
};

using FactoryPtr = std::shared_ptr<const RegistryFactory>;

struct RegistrySnapshot {
    StringMap<FactoryPtr> factories;
    // How many factories register each device id (shared between snapshots until a device set changes).
    std::shared_ptr<const StringMap<uint32_t>> factories_of_device = std::make_shared<StringMap<uint32_t>>();
    int64_t loaded_ms = 0;  // steady clock of the last full load
    size_t device_count = 0;
    bool from_cache = false;  // built from Redis while MySQL was unreachable
    uint64_t sequence = 0;    // rises with each snapshot put in place (lookups leave it alone)

    const RegistryFactory* factory(std::string_view factory_id) const {
        auto it = factories.find(factory_id);
        return it == factories.end() ? nullptr : it->second.get();
    }
};

// Recounts factories_of_device and device_count from the factories (after a factory changed).
void recount_devices(RegistrySnapshot& snapshot);

// What the registry says about one record's device.
enum class DeviceVerdict {
    accept,           // known and enabled: `tags` apply
    auto_register,    // unknown, and the factory registers unknown devices: accepted without tags
    unknown_factory,  // not in the registry
    factory_disabled,
    unknown_device,  // unknown in this factory (and in every other)
    foreign_device,  // unknown in this factory, registered under another
    device_disabled,
};

struct DeviceCheck {
    DeviceVerdict verdict = DeviceVerdict::unknown_factory;
    const ExtraTags* tags = nullptr;
};

DeviceCheck check_device(const RegistrySnapshot& snapshot, std::string_view factory_id,
                         std::string_view device_id);

}  // namespace plantd
