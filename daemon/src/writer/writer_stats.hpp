#pragma once
// The writers' own counters, shared by every writer of the process (one Prometheus series each):
// requests, batches, bytes, the disk buffer's moves, how old records are when InfluxDB takes them,
// and the same per destination where an operator needs to tell destinations apart.
#include <atomic>
#include <cstdint>

#include "control/health.hpp"
#include "control/latency_histogram.hpp"
#include "control/metrics_registry.hpp"
#include "writer/destination_stats.hpp"

namespace plantd {

struct WriterStats {
    std::atomic<uint64_t> batches_written{0};
    std::atomic<uint64_t> write_requests{0};
    std::atomic<uint64_t> write_failures{0};
    std::atomic<uint64_t> write_bytes_sent{0};
    std::atomic<uint64_t> buffer_spilled_batches{0};
    std::atomic<uint64_t> buffer_dropped_batches{0};
    std::atomic<uint64_t> buffer_failures{0};
    std::atomic<uint64_t> internal_errors{0};
    LatencyHistogram record_age_at_write;
    DestinationStats destinations;  // per database (bucket): request latency, last write, health

    // `health`: whether InfluxDB accepts writes.
    void register_metrics(MetricsRegistry& registry, const Health& health,
                          bool detailed_latency = false) const;
    std::atomic<int64_t> last_write_ms{0};  // wall-clock time of the last batch InfluxDB took
};

}  // namespace plantd
