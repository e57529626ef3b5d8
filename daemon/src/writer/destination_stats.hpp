#pragma once
// Per-destination numbers (an InfluxDB database or bucket), shared by every writer: how long write
// requests take, when a write last succeeded, and whether a writer is failing on it. At most
// `max_destinations` get a series of their own; the rest share `_other` (destinations come from
// factory ids, and topics must not be able to grow /metrics without bound).
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "control/latency_histogram.hpp"
#include "control/metrics_registry.hpp"

namespace plantd {

inline constexpr std::string_view other_destination_label = "_other";

class DestinationStats {
  public:
    struct Entry {
        LatencyHistogram write_latency;         // one observation per HTTP write request
        std::atomic<int64_t> last_write_ms{0};  // wall clock of the last accepted write
        std::atomic<int> failing_writers{0};    // writers backing off on it
    };

    explicit DestinationStats(size_t max_destinations = 100) : max_destinations_(max_destinations) {}

    // The entry of a destination (created on first use); the reference stays valid for the life of
    // this object, so a writer looks it up once per destination.
    Entry& of(std::string_view destination);
    // How many destinations a writer is retrying on now.
    size_t failing() const;
    void register_metrics(MetricsRegistry& registry) const;
    void render(std::string& out) const;

  private:
    size_t max_destinations_;
    mutable std::mutex mutex_;
    std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries_;
};

}  // namespace plantd
