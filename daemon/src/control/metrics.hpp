#pragma once
// Counters for every message in and out, rendered as Prometheus text on GET /metrics.
// Invariants the tests check after a drain:
//   messages_received = messages_accepted + messages_rejected (by reason)
//   records_accepted + points_recovered = points_written + points_rejected (by reason) + points_buffered
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "control/latency_histogram.hpp"
#include "core/reject_reason.hpp"

namespace plantd {

// Label used for factories that could not be read from a topic.
inline constexpr std::string_view no_factory_label = "_none";
// Label of rejections for factories the registry does not know (any number of them).
inline constexpr std::string_view unregistered_factory_label = "_unregistered";
// Label used once too many distinct factories were seen (bounds label cardinality).
inline constexpr std::string_view other_factory_label = "_other";

class Metrics {
  public:
    std::atomic<uint64_t> messages_received{0};
    std::atomic<uint64_t> bytes_received{0};
    std::atomic<uint64_t> messages_accepted{0};
    std::atomic<uint64_t> records_accepted{0};
    std::atomic<int64_t> points_buffered{0};
    std::atomic<uint64_t> batches_written{0};
    std::atomic<uint64_t> write_requests{0};
    std::atomic<uint64_t> write_failures{0};
    std::atomic<uint64_t> write_bytes_sent{0};
    std::atomic<uint64_t> backpressure_waits{0};
    std::atomic<uint64_t> mqtt_connects{0};
    std::atomic<uint64_t> mqtt_connection_losses{0};
    std::atomic<uint64_t> mqtt_connect_failures{0};
    std::atomic<uint64_t> mqtt_subscribe_failures{0};
    std::atomic<uint64_t> internal_errors{0};  // exceptions caught at a thread or callback boundary
    std::atomic<uint64_t> dead_letters_written{0};
    std::atomic<uint64_t> dead_letter_write_errors{0};
    std::atomic<uint64_t> registry_loads{0};
    std::atomic<uint64_t> registry_load_failures{0};
    std::atomic<uint64_t> registry_mysql_retries{0};     // deadlocks and lock wait timeouts run again
    std::atomic<uint64_t> registry_mysql_reconnects{0};  // connections opened again after one was lost
    std::atomic<uint64_t> registry_auto_registered{0};
    // Where each record's device was found (the cache hit ratio): the in-process snapshot, the
    // in-process negative cache, or a lookup through Redis and then MySQL.
    std::atomic<uint64_t> registry_memory_hits{0};
    std::atomic<uint64_t> registry_negative_hits{0};
    std::atomic<uint64_t> registry_redis_found{0};
    std::atomic<uint64_t> registry_redis_unknown{0};
    std::atomic<uint64_t> registry_mysql_found{0};
    std::atomic<uint64_t> registry_mysql_unknown{0};
    std::atomic<uint64_t> registry_lookup_failures{0};
    std::atomic<uint64_t> registry_redis_errors{0};
    std::atomic<uint64_t> registry_notifications{0};
    std::atomic<uint64_t> registry_factory_reloads{0};
    std::atomic<uint64_t> registry_loads_from_redis{0};
    std::atomic<uint64_t> parameters_discovered{0};
    std::atomic<uint64_t> messages_held{0};  // times a message was held for a registry lookup
    // Durability: messages replayed from the write-ahead log at start-up (they count as received
    // too); batches moved to the disk buffer, dropped from it (policy drop_oldest) and found in it at
    // start-up (their points count in points_recovered, beside records_accepted).
    std::atomic<uint64_t> wal_replayed{0};
    std::atomic<uint64_t> buffer_spilled_batches{0};
    std::atomic<uint64_t> buffer_dropped_batches{0};
    std::atomic<uint64_t> buffer_failures{0};
    std::atomic<uint64_t> points_recovered{0};
    LatencyHistogram record_age_at_write;

    explicit Metrics(size_t max_factory_labels = 1000) : max_factory_labels_(max_factory_labels) {}

    void count_rejected(RejectScope scope, RejectReason reason, std::string_view factory, uint64_t n = 1);
    void count_points_written(std::string_view factory, uint64_t n);

    uint64_t rejected(RejectScope scope, RejectReason reason) const;
    uint64_t rejected_total(RejectScope scope) const;
    uint64_t points_written() const;

    // Gauges read at scrape time (queue depth, connection state...).
    // `name` may carry labels (name{label="x"}); samples of one family share its help.
    void add_gauge(std::string name, std::string help, std::function<double()> read);
    // Counters kept by another stage, read at scrape time.
    void add_counter(std::string name, std::string help, std::function<double()> read);

    std::string render_prometheus() const;

  private:
    std::string factory_label(std::string_view factory);  // with mutex_ held

    size_t max_factory_labels_;
    mutable std::mutex mutex_;
    std::map<std::tuple<RejectScope, RejectReason, std::string>, uint64_t> rejected_;
    std::map<std::string, uint64_t, std::less<>> written_by_factory_;
    std::map<std::string, bool, std::less<>> known_factories_;
    std::array<std::array<std::atomic<uint64_t>, reject_reason_count>, 4> rejected_totals_{};
    std::atomic<uint64_t> points_written_{0};
    struct Gauge {
        std::string name, help;
        std::function<double()> read;
        bool counter;
    };
    std::vector<Gauge> gauges_;
};

}  // namespace plantd
