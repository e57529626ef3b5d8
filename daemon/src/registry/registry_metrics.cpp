// The registry's counters and gauges, under their Prometheus names.
#include "registry/device_registry.hpp"
#include "util/clock.hpp"

namespace plantd {

void DeviceRegistry::register_metrics(MetricsRegistry& registry) const {
    const RegistryCounters& c = counters_;
    auto value = [](const auto& atomic) { return [&atomic] { return static_cast<double>(atomic.load()); }; };
    registry.add_gauge("plantd_registry_ok", "1 while the registry loads from MySQL; 0 while it fails.",
                       [this] { return health_.registry_failing ? 0.0 : 1.0; });
    registry.add_gauge("plantd_registry_load_seconds", "How long the last registry load from MySQL took.",
                       [this] { return static_cast<double>(last_load_ms()) / 1000.0; });
    registry.add_gauge("plantd_registry_devices", "Devices in the registry snapshot in use.", [this] {
        auto current = snapshot();
        return current ? static_cast<double>(current->device_count) : 0.0;
    });
    registry.add_gauge(
        "plantd_registry_snapshot_age_seconds",
        "Age of the registry snapshot in use (-1 before the first load).", [this] {
            auto current = snapshot();
            return current ? static_cast<double>(steady_clock_ms() - current->loaded_ms) / 1000.0 : -1.0;
        });
    registry.add_gauge("plantd_registry_pending_lookups", "Devices waiting for a lookup in Redis and MySQL.",
                       [this] { return static_cast<double>(pending_lookups()); });
    registry.add_gauge("plantd_registry_redis_ok",
                       "1 while the registry's Redis answers (or none is configured).",
                       [this] { return health_.redis_failing ? 0.0 : 1.0; });
    registry.add_gauge("plantd_registry_notifications_subscribed",
                       "1 while plantd listens for registry changes on Redis.",
                       [this] { return notifications_subscribed() ? 1.0 : 0.0; });
    registry.add_gauge(
        "plantd_registry_cache_hit_ratio",
        "Share of records whose device the in-process cache answered (snapshot or negative "
        "entry), since start.",
        [&c] {
            const double memory = static_cast<double>(c.memory_hits.load() + c.negative_hits.load());
            const double looked_up = static_cast<double>(c.redis_found.load() + c.redis_unknown.load() +
                                                         c.mysql_found.load() + c.mysql_unknown.load());
            return memory + looked_up > 0 ? memory / (memory + looked_up) : 1.0;
        });
    registry.add_counter("plantd_registry_loads_total", "Registry snapshots loaded from MySQL.",
                         value(c.loads));
    registry.add_counter("plantd_registry_load_failures_total",
                         "Registry loads that failed (the last snapshot stays in use).",
                         value(c.load_failures));
    registry.add_counter("plantd_registry_auto_registered_total",
                         "Devices registered automatically (auto_register factories).",
                         value(c.auto_registered));
    const char* lookups_help =
        "Records' devices by where the registry found the answer: memory (the snapshot), negative "
        "(remembered as unknown), redis, mysql.";
    registry.add_counter("plantd_registry_lookups_total{source=\"memory\",result=\"found\"}", lookups_help,
                         value(c.memory_hits));
    registry.add_counter("plantd_registry_lookups_total{source=\"negative\",result=\"unknown\"}",
                         lookups_help, value(c.negative_hits));
    registry.add_counter("plantd_registry_lookups_total{source=\"redis\",result=\"found\"}", lookups_help,
                         value(c.redis_found));
    registry.add_counter("plantd_registry_lookups_total{source=\"redis\",result=\"unknown\"}", lookups_help,
                         value(c.redis_unknown));
    registry.add_counter("plantd_registry_lookups_total{source=\"mysql\",result=\"found\"}", lookups_help,
                         value(c.mysql_found));
    registry.add_counter("plantd_registry_lookups_total{source=\"mysql\",result=\"unknown\"}", lookups_help,
                         value(c.mysql_unknown));
    registry.add_counter(
        "plantd_registry_lookup_failures_total",
        "Device lookups that could reach neither Redis nor MySQL (retried; the records are held).",
        value(c.lookup_failures));
    registry.add_counter(
        "plantd_registry_mysql_retries_total",
        "Registry transactions run again because MySQL reported a deadlock or a lock wait timeout.",
        value(c.mysql_retries));
    registry.add_counter("plantd_registry_mysql_reconnects_total",
                         "Registry connections to MySQL opened again after one was lost.",
                         value(c.mysql_reconnects));
    registry.add_counter("plantd_registry_redis_errors_total",
                         "Redis commands of the registry cache that failed.", value(c.redis_errors));
    registry.add_counter("plantd_registry_notifications_total",
                         "Registry change notifications received from Redis.", value(c.notifications));
    registry.add_counter("plantd_registry_factory_reloads_total", "Single factories reloaded after a change.",
                         value(c.factory_reloads));
    registry.add_counter("plantd_registry_untrusted_destinations_total",
                         "Factories left out of a start-up from the copy in Redis because their destination "
                         "was neither the configured one nor an allowed one.",
                         value(c.untrusted_destinations));
    registry.add_counter("plantd_registry_loads_from_redis_total",
                         "Registry snapshots built from Redis because MySQL was unreachable.",
                         value(c.loads_from_redis));
    registry.add_counter("plantd_parameters_discovered_total",
                         "New parameters (metric names) recorded in the registry.",
                         value(c.parameters_discovered));
    registry.add_counter("plantd_internal_errors_total",
                         "Exceptions caught at a thread or callback boundary.", value(c.internal_errors));
}

}  // namespace plantd
