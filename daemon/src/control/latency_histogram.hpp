#pragma once
// How old each record is when InfluxDB acknowledges it (acknowledgement time minus the record's
// timestamp): for live data, the end-to-end latency from the device to a queryable point. A fixed
// log-like set of millisecond buckets, lock-free; rendered as a Prometheus histogram.
#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace plantd {

class LatencyHistogram {
  public:
    // 1 ms steps to 10 ms, 5 ms to 100 ms, 25 ms to 2 s, 250 ms to 10 s, then coarse: around a
    // flush interval of up to 2 s, a p99 read from the buckets is within 25 ms of the truth.
    static constexpr size_t bucket_count = 10 + 18 + 76 + 32 + 6;
    static constexpr std::array<int64_t, bucket_count> bounds_ms = [] {
        std::array<int64_t, bucket_count> bounds{};
        size_t i = 0;
        for (int64_t ms = 1; ms <= 10; ms += 1) bounds[i++] = ms;
        for (int64_t ms = 15; ms <= 100; ms += 5) bounds[i++] = ms;
        for (int64_t ms = 125; ms <= 2000; ms += 25) bounds[i++] = ms;
        for (int64_t ms = 2250; ms <= 10000; ms += 250) bounds[i++] = ms;
        for (int64_t ms : {15000, 20000, 30000, 60000, 120000, 300000}) bounds[i++] = ms;
        return bounds;
    }();

    // Observations gathered by one thread, then added at once (one atomic add per bucket used).
    struct Local {
        std::array<uint64_t, bounds_ms.size() + 1> buckets{};
        uint64_t count = 0;
        int64_t sum_ms = 0;
        void observe_ms(int64_t age_ms);
    };

    void observe_ms(int64_t age_ms);
    void add(const Local& local);
    uint64_t count() const { return count_.load(std::memory_order_relaxed); }
    // The bucket bound at or above the q-quantile (q clamped to [0,1]); -1 when empty or when the
    // quantile lies above every bound.
    int64_t quantile_bound_ms(double q) const;
    // `detailed`: every bound (for benchmarks reading percentiles to the millisecond); else the
    // coarse ones only (17, as dashboards want them: 1 ms .. 5 min).
    void render(std::string& out, const char* name, const char* help, bool detailed = false) const;
    // The samples only (no HELP/TYPE), with `labels` (e.g. destination="x") on each: one series of a
    // family whose header the caller writes.
    void render_samples(std::string& out, std::string_view name, std::string_view labels,
                        bool detailed = false) const;
    static bool coarse_bound(int64_t bound_ms);

  private:
    std::array<std::atomic<uint64_t>, bounds_ms.size() + 1> buckets_{};  // the last one: +Inf
    std::atomic<uint64_t> count_{0};
    std::atomic<int64_t> sum_ms_{0};
};

}  // namespace plantd
