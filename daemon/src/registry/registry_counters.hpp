#pragma once
// The registry's own counters (loads, lookups by where the answer came from, MySQL retries, Redis
// errors, parameters); DeviceRegistry counts them and registers them with its gauges.
#include <atomic>
#include <cstdint>

namespace plantd {

struct RegistryCounters {
    std::atomic<uint64_t> loads{0};
    std::atomic<uint64_t> load_failures{0};
    std::atomic<uint64_t> mysql_retries{0};     // deadlocks and lock wait timeouts run again
    std::atomic<uint64_t> mysql_reconnects{0};  // connections opened again after one was lost
    std::atomic<uint64_t> auto_registered{0};
    // Where each record's device was found (the cache hit ratio): the in-process snapshot, the
    // in-process negative cache, or a lookup through Redis and then MySQL.
    std::atomic<uint64_t> memory_hits{0};
    std::atomic<uint64_t> negative_hits{0};
    std::atomic<uint64_t> redis_found{0};
    std::atomic<uint64_t> redis_unknown{0};
    std::atomic<uint64_t> mysql_found{0};
    std::atomic<uint64_t> mysql_unknown{0};
    std::atomic<uint64_t> lookup_failures{0};
    std::atomic<uint64_t> redis_errors{0};
    std::atomic<uint64_t> notifications{0};
    std::atomic<uint64_t> factory_reloads{0};
    std::atomic<uint64_t> loads_from_redis{0};
    std::atomic<uint64_t> untrusted_destinations{0};  // factories left out of a Redis copy for them
    std::atomic<uint64_t> parameters_discovered{0};
    std::atomic<uint64_t> internal_errors{0};
};

}  // namespace plantd
