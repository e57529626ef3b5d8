#pragma once
// The registry's copy in Redis, shared by every plantd and by the operator commands. MySQL stays the
// truth; Redis lets known devices keep flowing while MySQL is down (also across a restart of plantd),
// answers lookups of devices that a snapshot does not hold yet, remembers unknown devices for a short
// time (so a flood of unknown ids costs MySQL one query per id per negative_ttl), and carries change
// notifications. Every key is namespaced by the configured prefix and by factory:
//   {prefix}:registry:factories            set of factory ids
//   {prefix}:registry:{f}:factory          the factory's settings and parameters (JSON)
//   {prefix}:registry:{f}:devices          hash device_id -> {"enabled":..,"tags":[[k,v],..]}
//   {prefix}:registry:{f}:unknown          sorted set device_id -> until (ms since the epoch)
//   {prefix}:registry:changes              pub/sub channel; a message is a factory id, or "*"
// Identifiers are checked before they become part of a key, and every value travels as a separate,
// binary-safe argument. Errors are values; the connection is dropped on an error and tried again
// at most once a second, so a dead Redis costs the registry thread no more than that.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "registry/redis_connection.hpp"
#include "registry/registry_snapshot.hpp"

namespace plantd {

struct CachedLookup {
    enum class Outcome { found, unknown, miss } outcome = Outcome::miss;
    RegistryDevice device;  // when found
};

class RegistryCache {
  public:
    explicit RegistryCache(const RegistryConfig& config);
    ~RegistryCache();

    std::string factories_key() const;
    std::string factory_key(std::string_view factory_id) const;
    std::string devices_key(std::string_view factory_id) const;
    std::string unknown_key(std::string_view factory_id) const;
    std::string channel() const;

    // Replaces the factory's entry (settings, parameters, devices) in one MULTI/EXEC; skipped when
    // this process wrote the same content last time. Clears the factory's unknown devices when its
    // device set changed. "" or what went wrong.
    std::string store_factory(std::string_view factory_id, const RegistryFactory& factory);
    // Every factory in Redis (start-up while MySQL is unreachable). Entries that do not parse are
    // skipped and counted in `skipped`.
    Result<StringMap<std::shared_ptr<RegistryFactory>>> load_all(size_t& skipped);
    using DeviceKey = std::pair<std::string, std::string>;  // factory, device
    // Devices of factories, in one round trip: each found, known to be unknown (until `now_ms` is past
    // its entry), or a miss.
    Result<std::vector<CachedLookup>> lookup(const std::vector<DeviceKey>& devices, int64_t now_ms);
    // Remembers that the devices are unknown in their factories until `until_ms` (wall clock).
    std::string store_unknown(const std::vector<DeviceKey>& devices, int64_t until_ms);
    // Tells every plantd that a factory changed ("*": all of them).
    std::string publish_change(std::string_view factory_id);
    // Drops the factory's unknown devices and tells every plantd (after an operator's change).
    std::string invalidate(std::string_view factory_id);
    // Deletes the copy of factories MySQL no longer has (removed by an operator), in one MULTI/EXEC.
    std::string remove_factories(const std::vector<std::string>& factory_ids);
    // The factory ids the copy holds.
    Result<std::vector<std::string>> factory_ids();

    bool configured() const { return !config_.redis_host.empty(); }
    // Forgets what was written: the next store_factory writes every factory again (Redis may have
    // restarted empty).
    void forget_written() { written_.clear(); }

    static std::string encode_device(const RegistryDevice& device);
    static std::optional<RegistryDevice> decode_device(std::string_view json);
    static std::string encode_factory(const RegistryFactory& factory);
    static std::optional<std::shared_ptr<RegistryFactory>> decode_factory(std::string_view json);

  private:
    // The connection, connecting if needed (not more than once a second after a failure).
    Result<RedisConnection*> connection();
    template <class T>
    Result<T> failed(const std::string& error);

    const RegistryConfig& config_;
    std::unique_ptr<RedisConnection> connection_;
    int64_t next_attempt_ms_ = 0;
    std::string last_error_;
    StringMap<std::pair<uint64_t, uint64_t>> written_;  // factory -> fingerprints (everything, devices)
};

}  // namespace plantd
