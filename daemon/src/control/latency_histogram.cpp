#include "control/latency_histogram.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace plantd {

void LatencyHistogram::Local::observe_ms(int64_t age_ms) {
    age_ms = std::max<int64_t>(age_ms, 0);  // a clock step must not make a negative age
    auto bucket = std::lower_bound(bounds_ms.begin(), bounds_ms.end(), age_ms) - bounds_ms.begin();
    ++buckets[static_cast<size_t>(bucket)];
    ++count;
    sum_ms += age_ms;
}

void LatencyHistogram::observe_ms(int64_t age_ms) {
    Local local;
    local.observe_ms(age_ms);
    add(local);
}

void LatencyHistogram::add(const Local& local) {
    if (local.count == 0) return;
    for (size_t i = 0; i < local.buckets.size(); ++i) {
        if (local.buckets[i] != 0) buckets_[i].fetch_add(local.buckets[i], std::memory_order_relaxed);
    }
    count_.fetch_add(local.count, std::memory_order_relaxed);
    sum_ms_.fetch_add(local.sum_ms, std::memory_order_relaxed);
}

int64_t LatencyHistogram::quantile_bound_ms(double q) const {
    const uint64_t total = count();
    if (total == 0) return -1;
    q = std::clamp(q, 0.0, 1.0);  // NaN compares false: becomes 0 below
    // The q-quantile is the ceil(q·N)-th smallest observation (at least the first).
    const auto rank =
        std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q > 0 ? q * static_cast<double>(total) : 0)));
    uint64_t seen = 0;
    for (size_t i = 0; i < bounds_ms.size(); ++i) {
        seen += buckets_[i].load(std::memory_order_relaxed);
        if (seen >= rank) return bounds_ms[i];
    }
    return -1;  // above every bound
}

bool LatencyHistogram::coarse_bound(int64_t bound_ms) {
    for (int64_t coarse :
         {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000})
        if (bound_ms == coarse) return true;
    return false;
}

void LatencyHistogram::render(std::string& out, const char* name, const char* help, bool detailed) const {
    fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} histogram\n", name, help);
    render_samples(out, name, "", detailed);
}

void LatencyHistogram::render_samples(std::string& out, std::string_view name, std::string_view labels,
                                      bool detailed) const {
    const std::string_view comma = labels.empty() ? "" : ",";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_ms.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        if (!detailed && !coarse_bound(bounds_ms[i])) continue;  // cumulative: leaving a bound out is exact
        fmt::format_to(std::back_inserter(out), "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, comma,
                       static_cast<double>(bounds_ms[i]) / 1000.0, cumulative);
    }
    cumulative += buckets_[bounds_ms.size()].load(std::memory_order_relaxed);
    const std::string braces = labels.empty() ? std::string() : fmt::format("{{{}}}", labels);
    fmt::format_to(std::back_inserter(out),
                   "{0}_bucket{{{3}{4}le=\"+Inf\"}} {1}\n{0}_sum{5} {2}\n{0}_count{5} {1}\n", name,
                   cumulative, static_cast<double>(sum_ms_.load(std::memory_order_relaxed)) / 1000.0, labels,
                   comma, braces);
}

}  // namespace plantd
