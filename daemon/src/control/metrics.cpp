#include "control/metrics.hpp"

#include <set>

#include <fmt/format.h>

namespace plantd {

std::string Metrics::factory_label(std::string_view factory) {
    if (factory.empty()) return std::string(no_factory_label);
    if (known_factories_.count(factory)) return std::string(factory);
    if (known_factories_.size() >= max_factory_labels_) return std::string(other_factory_label);
    known_factories_.emplace(std::string(factory), true);
    return std::string(factory);
}

void Metrics::count_rejected(RejectScope scope, RejectReason reason, std::string_view factory, uint64_t n) {
    rejected_totals_[static_cast<size_t>(scope)][static_cast<size_t>(reason)].fetch_add(
        n, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    rejected_[{scope, reason, factory_label(factory)}] += n;
}

void Metrics::count_points_written(std::string_view factory, uint64_t n) {
    points_written_.fetch_add(n, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    written_by_factory_[factory_label(factory)] += n;
}

uint64_t Metrics::rejected(RejectScope scope, RejectReason reason) const {
    return rejected_totals_[static_cast<size_t>(scope)][static_cast<size_t>(reason)].load();
}

uint64_t Metrics::rejected_total(RejectScope scope) const {
    uint64_t total = 0;
    for (const auto& counter : rejected_totals_[static_cast<size_t>(scope)]) total += counter.load();
    return total;
}

uint64_t Metrics::points_written() const {
    return points_written_.load();
}

void Metrics::add_gauge(std::string name, std::string help, std::function<double()> read) {
    std::lock_guard lock(mutex_);
    gauges_.push_back({std::move(name), std::move(help), std::move(read), false});
}

void Metrics::add_counter(std::string name, std::string help, std::function<double()> read) {
    std::lock_guard lock(mutex_);
    gauges_.push_back({std::move(name), std::move(help), std::move(read), true});
}

std::string Metrics::render_prometheus() const {
    std::string out;
    auto counter = [&](std::string_view name, std::string_view help, uint64_t value) {
        fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help,
                       value);
    };
    counter("plantd_messages_received_total", "MQTT messages handed to plantd by the broker.",
            messages_received);
    counter("plantd_bytes_received_total",
            "MQTT PUBLISH packet bytes taken by plantd (topic, payload and headers).", bytes_received);
    counter("plantd_messages_accepted_total", "Messages that yielded at least one record.",
            messages_accepted);
    counter("plantd_records_accepted_total", "Records encoded for InfluxDB.", records_accepted);
    record_age_at_write.render(out, "plantd_record_age_at_write_seconds",
                               "Age of each record (now minus its timestamp) when InfluxDB acknowledged it: "
                               "the end-to-end latency for live data.");
    counter("plantd_registry_loads_total", "Registry snapshots loaded from MySQL.", registry_loads);
    counter("plantd_registry_load_failures_total",
            "Registry loads that failed (the last snapshot stays in use).", registry_load_failures);
    counter("plantd_registry_auto_registered_total",
            "Devices registered automatically (auto_register factories).", registry_auto_registered);
    fmt::format_to(std::back_inserter(out),
                   "# HELP plantd_registry_lookups_total Records' devices by where the registry found the "
                   "answer: memory (the snapshot), negative (remembered as unknown), redis, mysql.\n"
                   "# TYPE plantd_registry_lookups_total counter\n"
                   "plantd_registry_lookups_total{{source=\"memory\",result=\"found\"}} {}\n"
                   "plantd_registry_lookups_total{{source=\"negative\",result=\"unknown\"}} {}\n"
                   "plantd_registry_lookups_total{{source=\"redis\",result=\"found\"}} {}\n"
                   "plantd_registry_lookups_total{{source=\"redis\",result=\"unknown\"}} {}\n"
                   "plantd_registry_lookups_total{{source=\"mysql\",result=\"found\"}} {}\n"
                   "plantd_registry_lookups_total{{source=\"mysql\",result=\"unknown\"}} {}\n",
                   registry_memory_hits.load(), registry_negative_hits.load(), registry_redis_found.load(),
                   registry_redis_unknown.load(), registry_mysql_found.load(), registry_mysql_unknown.load());
    counter("plantd_registry_lookup_failures_total",
            "Device lookups that could reach neither Redis nor MySQL (retried; the records are held).",
            registry_lookup_failures);
    counter("plantd_registry_mysql_retries_total",
            "Registry transactions run again because MySQL reported a deadlock or a lock wait timeout.",
            registry_mysql_retries);
    counter("plantd_registry_mysql_reconnects_total",
            "Registry connections to MySQL opened again after one was lost.", registry_mysql_reconnects);
    counter("plantd_registry_redis_errors_total", "Redis commands of the registry cache that failed.",
            registry_redis_errors);
    counter("plantd_registry_notifications_total", "Registry change notifications received from Redis.",
            registry_notifications);
    counter("plantd_registry_factory_reloads_total", "Single factories reloaded after a change.",
            registry_factory_reloads);
    counter("plantd_registry_loads_from_redis_total",
            "Registry snapshots built from Redis because MySQL was unreachable.", registry_loads_from_redis);
    counter("plantd_parameters_discovered_total", "New parameters (metric names) recorded in the registry.",
            parameters_discovered);
    counter("plantd_messages_held_total",
            "Times a message was held until the registry could say whether its devices exist.",
            messages_held);
    counter("plantd_batches_written_total", "Batches InfluxDB acknowledged.", batches_written);
    counter("plantd_write_requests_total", "HTTP write requests sent to InfluxDB.", write_requests);
    counter("plantd_write_failures_total", "HTTP write requests that failed (retried or split).",
            write_failures);
    counter("plantd_write_bytes_sent_total", "Request body bytes sent to InfluxDB (after compression).",
            write_bytes_sent);
    counter("plantd_wal_replayed_messages_total",
            "Messages replayed from the write-ahead log at start-up (also counted as received).",
            wal_replayed);
    counter("plantd_buffer_spilled_batches_total", "Batches moved to the disk buffer.",
            buffer_spilled_batches);
    counter("plantd_buffer_dropped_batches_total",
            "Batches dropped from a full disk buffer (buffer_full_policy = drop_oldest; dead-lettered).",
            buffer_dropped_batches);
    counter("plantd_buffer_failures_total", "Failed writes or reads of the disk buffer.", buffer_failures);
    counter("plantd_points_recovered_total",
            "Points found in the disk buffer at start-up (written by an earlier run's pipeline).",
            points_recovered);
    counter("plantd_backpressure_waits_total", "Times the MQTT receive thread waited for queue space.",
            backpressure_waits);
    counter("plantd_mqtt_connects_total", "Successful MQTT connects.", mqtt_connects);
    counter("plantd_mqtt_connection_losses_total", "MQTT connections lost.", mqtt_connection_losses);
    counter("plantd_mqtt_connect_failures_total", "MQTT connect attempts that failed.",
            mqtt_connect_failures);
    counter("plantd_mqtt_subscribe_failures_total", "MQTT subscriptions the broker refused.",
            mqtt_subscribe_failures);
    counter("plantd_internal_errors_total", "Exceptions caught at a thread or callback boundary.",
            internal_errors);
    counter("plantd_dead_letters_written_total", "Entries written to the dead-letter store.",
            dead_letters_written);
    counter("plantd_dead_letter_write_errors_total", "Dead letters that could not be written.",
            dead_letter_write_errors);
    fmt::format_to(std::back_inserter(out),
                   "# HELP plantd_points_buffered Points encoded but not yet acknowledged by InfluxDB.\n"
                   "# TYPE plantd_points_buffered gauge\nplantd_points_buffered {}\n",
                   points_buffered.load());

    std::unique_lock lock(mutex_);
    out +=
        "# HELP plantd_points_written_total Points InfluxDB acknowledged, by factory.\n"
        "# TYPE plantd_points_written_total counter\n";
    for (const auto& [factory, n] : written_by_factory_) {
        fmt::format_to(std::back_inserter(out), "plantd_points_written_total{{factory_id=\"{}\"}} {}\n",
                       factory, n);
    }
    out +=
        "# HELP plantd_rejected_total Rejected messages, records, fields and points, by reason and factory.\n"
        "# TYPE plantd_rejected_total counter\n";
    for (const auto& [key, n] : rejected_) {
        const auto& [scope, reason, factory] = key;
        fmt::format_to(std::back_inserter(out),
                       "plantd_rejected_total{{scope=\"{}\",reason=\"{}\",factory_id=\"{}\"}} {}\n",
                       to_string(scope), to_string(reason), factory, n);
    }
    // The gauges are read without the lock: a gauge may take a lock of its own (a writer's) whose holder
    // counts something here (count_rejected) meanwhile; reading under this lock would deadlock.
    const auto gauges = gauges_;
    lock.unlock();
    // HELP and TYPE name the family (no labels), once, before its first sample.
    std::set<std::string_view> described;
    for (const auto& gauge : gauges) {
        const std::string_view family = std::string_view(gauge.name).substr(0, gauge.name.find('{'));
        if (described.insert(family).second) {
            fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} {2}\n", family, gauge.help,
                           gauge.counter ? "counter" : "gauge");
        }
        fmt::format_to(std::back_inserter(out), "{} {}\n", gauge.name, gauge.read());
    }
    return out;
}

}  // namespace plantd
