#include "writer/writer_stats.hpp"

namespace plantd {

void WriterStats::register_metrics(MetricsRegistry& registry, const Health& health,
                                   bool detailed_latency) const {
    auto value = [](const auto& atomic) { return [&atomic] { return static_cast<double>(atomic.load()); }; };
    registry.add_gauge("plantd_influxdb_ok", "1 while InfluxDB accepts writes.",
                       [&health] { return health.influx_failing ? 0.0 : 1.0; });
    registry.add_gauge("plantd_last_write_timestamp_seconds",
                       "When InfluxDB last took a batch (Unix time; 0: not yet).",
                       [this] { return static_cast<double>(last_write_ms.load()) / 1000.0; });
    registry.add_text([this, detailed_latency](std::string& out) {
        record_age_at_write.render(
            out, "plantd_record_age_at_write_seconds",
            "Age of each record (now minus its timestamp) when InfluxDB acknowledged it: "
            "the end-to-end latency for live data.",
            detailed_latency);
    });
    destinations.register_metrics(registry);
    registry.add_counter("plantd_batches_written_total", "Batches InfluxDB acknowledged.",
                         value(batches_written));
    registry.add_counter("plantd_write_requests_total", "HTTP write requests sent to InfluxDB.",
                         value(write_requests));
    registry.add_counter("plantd_write_failures_total", "HTTP write requests that failed (retried or split).",
                         value(write_failures));
    registry.add_counter("plantd_write_bytes_sent_total",
                         "Request body bytes sent to InfluxDB (after compression).", value(write_bytes_sent));
    registry.add_counter("plantd_buffer_spilled_batches_total", "Batches moved to the disk buffer.",
                         value(buffer_spilled_batches));
    registry.add_counter(
        "plantd_buffer_dropped_batches_total",
        "Batches dropped from a full disk buffer (buffer_full_policy = drop_oldest; dead-lettered).",
        value(buffer_dropped_batches));
    registry.add_counter("plantd_buffer_failures_total", "Failed writes or reads of the disk buffer.",
                         value(buffer_failures));
    registry.add_counter("plantd_internal_errors_total",
                         "Exceptions caught at a thread or callback boundary.", value(internal_errors));
}

}  // namespace plantd
