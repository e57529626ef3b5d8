#pragma once
// The registry as the ingest path sees it. Lookups go in-process snapshot -> Redis -> MySQL:
//   - the snapshot (registry_snapshot.hpp) answers almost every record with two hash lookups;
//   - a device it does not hold is looked up by this class's thread, in Redis and then in MySQL,
//     while the worker holds the message; the answer either extends the snapshot or is remembered
//     as "unknown" for negative_ttl (in process and in Redis), so a flood of unknown ids costs
//     MySQL at most one query per id per negative_ttl;
//   - change notifications (Redis pub/sub) reload one factory within milliseconds; a full reload
//     runs every full_refresh_interval (refresh_interval while notifications are off);
//   - after each load, factories whose content changed are written to Redis, so that another
//     plantd, or this one after a restart, keeps known devices flowing while MySQL is down.
// The same thread registers devices of auto_register factories and records discovered parameters,
// in rounds of at most one a second. Every failure is counted, logged once per episode and shown on
// /health; the thread survives exceptions.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "control/health.hpp"
#include "control/metrics_registry.hpp"
#include "decoding/record.hpp"
#include "registry/admission.hpp"
#include "registry/registry_counters.hpp"
#include "registry/registry_snapshot.hpp"
#include "registry/registry_store.hpp"
#include "util/service.hpp"

namespace plantd {

class RegistryCache;
class RedisChannelListener;

class DeviceRegistry final : public Admission, public Service {
  public:
    DeviceRegistry(const RegistryConfig& config, Health& health);
    ~DeviceRegistry();

    void start() override;
    void stop();
    void stop(Deadline) override { stop(); }
    // Its counters and gauges (snapshot, lookups, MySQL and Redis state) under their Prometheus names.
    void register_metrics(MetricsRegistry& registry) const;
    const RegistryCounters& counters() const { return counters_; }
    // The current snapshot; nullptr until the first load succeeded.
    std::shared_ptr<const RegistrySnapshot> snapshot() const override { return snapshot_.load(); }
    // A snapshot exists (cheaper to ask than snapshot(): no reference count).
    bool ready() const override { return ready_.load(std::memory_order_acquire); }
    // Increases whenever lookups are answered or a new snapshot is in place: held messages are then
    // worth another try.
    uint64_t generation() const override { return generation_.load(std::memory_order_acquire); }

    // A record's device is not in the snapshot of its factory (unknown there, or registered under
    // another factory): what to do with the record.
    LookupAnswer unknown_device(std::string_view factory_id, std::string_view device_id) override;
    // Queues a device of an auto_register factory for registration; false when the backlog is full
    // (the record is then rejected). This bounds the queue and, with one registration round a
    // second, the rate at which an auto_register factory's registry can grow; not its final size.
    bool request_auto_register(std::string_view factory_id, std::string_view device_id) override;
    // A parameter (metric name) the snapshot does not know yet. While MySQL is reachable its type is
    // the one MySQL records first (INSERT IGNORE: with several plantd instances one wins, and every
    // instance then writes that type), so the message waits (pending) until the parameter is in the
    // snapshot; while MySQL is unreachable the first record to name it decides here.
    ParameterAnswer discover_parameter(std::string_view factory_id, std::string_view name, FieldKind kind,
                                       std::string_view device_id) override;

    // Where a factory's points go (its InfluxDB database or bucket). Parameters share a type across
    // every factory writing to one database: InfluxDB types a field per measurement, not per factory.
    using DestinationOf =
        std::function<std::string(std::string_view factory_id, const RegistryFactory* factory)>;
    void set_destination_of(DestinationOf destination_of) { destination_of_ = std::move(destination_of); }
    // Whether a factory's own destination read from the copy in Redis may be used before MySQL
    // confirms it (anyone who can write to Redis could otherwise route one factory's data into
    // another's database). A factory whose destination fails it is left out until MySQL answers.
    using DestinationTrusted = std::function<bool(std::string_view factory_id, std::string_view destination)>;
    void set_destination_trusted(DestinationTrusted trusted) { destination_trusted_ = std::move(trusted); }

    // How long the last successful load from MySQL took (ms; -1 before the first).
    int64_t last_load_ms() const { return last_load_ms_.load(); }
    // Device lookups and parameters waiting for MySQL (messages may be held for them).
    size_t pending_lookups() const override;
    void count_memory_hits(uint64_t n) override {
        counters_.memory_hits.fetch_add(n, std::memory_order_relaxed);
    }
    bool notifications_subscribed() const;

  private:
    struct Lookup {
        std::string factory_id, device_id;
        int64_t next_try_ms = 0;
    };

    void run();
    void turn();
    bool connect_mysql();
    void load_full();
    void load_from_redis();
    void reload_factories(const std::set<std::string, std::less<>>& factories);
    void register_devices(std::set<std::string, std::less<>>& changed);
    void record_parameters(std::set<std::string, std::less<>>& changed);
    void answer_lookups();
    // Reloads these factories in this turn, and tells the other plantd instances (Redis).
    void announce(const std::set<std::string, std::less<>>& factories,
                  std::set<std::string, std::less<>>& changed);
    // Replaces factories in a copy of the snapshot (nullptr removes one) and publishes it.
    void publish(StringMap<std::shared_ptr<const RegistryFactory>> changed, bool recount);
    void write_to_redis(const RegistrySnapshot& snapshot, const std::set<std::string, std::less<>>* only);
    void harvest_seen(const RegistryFactory& factory, const std::string& factory_id,
                      std::vector<SeenParameter>& out) const;
    void touch_seen(const std::vector<SeenParameter>& seen);
    void mysql_failed(const std::string& what, const std::string& error);
    // After a failed store operation: the connection is kept unless it was lost.
    void drop_if_lost();
    // Drops the discovered_types_ entries whose parameters the snapshot holds now (of `only`'s
    // factories, or of all). With mutex_ held.
    void forget_discovered(const RegistrySnapshot& snapshot, const std::set<std::string, std::less<>>* only);
    // Adds the store's retry and reconnect counts to the counters.
    void count_store();
    void redis_failed(const std::string& what, const std::string& error);
    void redis_ok();
    void on_change(const std::string& factory_id);

    // The type a new parameter must have because another factory writing to the same destination
    // has it already (recorded or discovered); nullopt: free to choose. With mutex_ held.
    std::optional<ParameterType> type_in_destination(const RegistrySnapshot* snapshot,
                                                     std::string_view factory_id,
                                                     const RegistryFactory* factory,
                                                     std::string_view name) const;

    const RegistryConfig& config_;
    mutable RegistryCounters counters_;
    DestinationOf destination_of_;
    DestinationTrusted destination_trusted_;
    Health& health_;
    std::unique_ptr<RegistryStore> store_;
    std::unique_ptr<RegistryCache> cache_;
    std::unique_ptr<RedisChannelListener> notifications_;
    std::atomic<std::shared_ptr<const RegistrySnapshot>> snapshot_;
    std::atomic<uint64_t> snapshot_sequence_{0};
    std::atomic<int64_t> last_load_ms_{-1};
    std::atomic<bool> ready_{false};
    std::atomic<uint64_t> generation_{0};
    int64_t next_full_load_ms_ = 0;
    int64_t last_registration_round_ms_ = 0;
    int64_t last_parameter_round_ms_ = 0;
    int64_t next_connect_ms_ = 0;
    bool turn_failed_ = false;  // a MySQL operation failed in this turn
    // Writing the registry's copy into Redis failed (Redis restarting, a dropped connection): written
    // again whole at the next turn, not only at the next full load.
    bool redis_copy_stale_ = false;
    bool connected_before_ = false;
    uint64_t counted_retries_ = 0, counted_reconnects_ = 0;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool work_ = false;                                 // lookups or changes arrived: turn now
    std::set<std::string, std::less<>> registrations_;  // "factory/device" ('/' is in no identifier)
    StringMap<Lookup> lookups_;                         // "factory/device"
    StringMap<int64_t> negative_;                       // "factory/device" -> unknown until (steady ms)
    std::vector<DiscoveredParameter> discovered_;       // waiting to be recorded
    struct DiscoveredType {
        ParameterType type;
        bool recorded = false;  // its round went through MySQL
        bool settled = false;   // recorded and still not in the snapshot: this type is final
    };
    StringMap<DiscoveredType> discovered_types_;  // "factory/name": discovered, not in the snapshot yet
    StringMap<size_t> discovered_per_factory_;    // in discovered_
    StringMap<size_t> settled_per_factory_;       // settled entries of discovered_types_
    std::set<std::string, std::less<>> changed_;  // factories to reload ("*": all)
    std::thread thread_;
};

}  // namespace plantd
