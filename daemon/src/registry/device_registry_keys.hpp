#pragma once
// Shared by the files of DeviceRegistry (device_registry*.cpp): its keys and pacing.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace plantd::registry_detail {

inline constexpr size_t lookups_per_turn = 2048;
inline constexpr int64_t retry_ms = 1'000;         // a failed lookup, a MySQL connect, a round
inline constexpr size_t max_discovered = 100'000;  // parameters waiting to be recorded, all factories

// "factory/device" or "factory/parameter" ('/' is in no factory id, so the key is unambiguous).
inline std::string key_of(std::string_view a, std::string_view b) {
    std::string key;
    key.reserve(a.size() + 1 + b.size());
    key.append(a).append(1, '/').append(b);
    return key;
}

// Unknown devices remembered in process, at most.
inline size_t negative_capacity(const RegistryConfig& config) {
    return std::max<size_t>(config.lookup_backlog * 10, 100'000);
}

}  // namespace plantd::registry_detail
