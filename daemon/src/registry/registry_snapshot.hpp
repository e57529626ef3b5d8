#pragma once
// The whole registry as one immutable in-memory snapshot: the ingest path looks a record's factory
// and device up with two hash lookups and never waits for MySQL. A background thread loads a new
// snapshot every refresh interval (and right after auto-registering devices) and swaps it in; a
// worker keeps the snapshot it took for the message it is processing.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "registry/registry_values.hpp"
#include "writer/line_protocol.hpp"

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

struct RegistryFactory {
    bool enabled = true;
    UnknownDevicePolicy unknown_devices = UnknownDevicePolicy::reject;
    std::optional<double> rate_limit_per_s;  // overrides [ingest] factory_rate_limit
    std::optional<double> rate_burst;
    StringMap<RegistryDevice> devices;
};

struct RegistrySnapshot {
    StringMap<RegistryFactory> factories;
    StringMap<uint32_t> factories_of_device;  // how many factories register each device id
    int64_t loaded_ms = 0;                    // steady clock
    size_t device_count = 0;
};

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
