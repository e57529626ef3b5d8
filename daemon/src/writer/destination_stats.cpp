#include "writer/destination_stats.hpp"

#include <fmt/format.h>

namespace plantd {

namespace {

// A Prometheus label value: backslash, double quote and newline escaped.
std::string label_value(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

DestinationStats::Entry& DestinationStats::of(std::string_view destination) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(destination);
    if (it != entries_.end()) return *it->second;
    // The shared entry does not count against the limit.
    const size_t own = entries_.size() - entries_.count(other_destination_label);
    const std::string_view name = own < max_destinations_ ? destination : other_destination_label;
    auto& entry = entries_[std::string(name)];
    if (!entry) entry = std::make_unique<Entry>();
    return *entry;
}

size_t DestinationStats::failing() const {
    std::lock_guard lock(mutex_);
    size_t n = 0;
    for (const auto& [name, entry] : entries_) n += entry->failing_writers.load() > 0 ? 1 : 0;
    return n;
}

void DestinationStats::register_metrics(MetricsRegistry& registry) const {
    registry.add_text([this](std::string& out) { render(out); });
}

void DestinationStats::render(std::string& out) const {
    std::lock_guard lock(mutex_);
    if (entries_.empty()) return;
    auto header = [&](std::string_view name, std::string_view type, std::string_view help) {
        fmt::format_to(std::back_inserter(out), "# HELP {0} {2}\n# TYPE {0} {1}\n", name, type, help);
    };
    header("plantd_influxdb_destination_ok", "gauge",
           "1 while InfluxDB accepts writes to this database (bucket), 0 while a writer retries on it.");
    for (const auto& [name, entry] : entries_)
        fmt::format_to(std::back_inserter(out), "plantd_influxdb_destination_ok{{destination=\"{}\"}} {}\n",
                       label_value(name), entry->failing_writers.load() > 0 ? 0 : 1);
    header("plantd_destination_last_write_timestamp_seconds", "gauge",
           "When InfluxDB last took a batch for this database (bucket) (Unix time; 0: not yet).");
    for (const auto& [name, entry] : entries_)
        fmt::format_to(std::back_inserter(out),
                       "plantd_destination_last_write_timestamp_seconds{{destination=\"{}\"}} {}\n",
                       label_value(name), static_cast<double>(entry->last_write_ms.load()) / 1000.0);
    header("plantd_influxdb_write_duration_seconds", "histogram",
           "How long each HTTP write request to InfluxDB took, answered or not, by database (bucket).");
    for (const auto& [name, entry] : entries_)
        entry->write_latency.render_samples(out, "plantd_influxdb_write_duration_seconds",
                                            fmt::format("destination=\"{}\"", label_value(name)));
}

}  // namespace plantd
