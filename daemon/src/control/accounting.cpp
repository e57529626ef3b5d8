#include "control/accounting.hpp"

#include <fmt/format.h>

namespace plantd {

std::string Accounting::factory_label(std::string_view factory) {
    if (factory.empty()) return std::string(no_factory_label);
    if (known_factories_.count(factory)) return std::string(factory);
    if (known_factories_.size() >= max_factory_labels_) return std::string(other_factory_label);
    known_factories_.emplace(std::string(factory), true);
    return std::string(factory);
}

void Accounting::count_rejected(RejectScope scope, RejectReason reason, std::string_view factory,
                                uint64_t n) {
    rejected_totals_[static_cast<size_t>(scope)][static_cast<size_t>(reason)].fetch_add(
        n, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    rejected_[{scope, reason, factory_label(factory)}] += n;
}

void Accounting::count_points_written(std::string_view factory, uint64_t n) {
    points_written_.fetch_add(n, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    written_by_factory_[factory_label(factory)] += n;
}

void Accounting::count_factory_messages(std::string_view factory, uint64_t n) {
    std::lock_guard lock(mutex_);
    messages_by_factory_[factory_label(factory)] += n;
}

uint64_t Accounting::factory_messages(std::string_view factory) const {
    std::lock_guard lock(mutex_);
    auto it = messages_by_factory_.find(factory.empty() ? no_factory_label : factory);
    return it == messages_by_factory_.end() ? 0 : it->second;
}

uint64_t Accounting::rejected(RejectScope scope, RejectReason reason) const {
    return rejected_totals_[static_cast<size_t>(scope)][static_cast<size_t>(reason)].load();
}

uint64_t Accounting::rejected_total(RejectScope scope) const {
    uint64_t total = 0;
    for (const auto& counter : rejected_totals_[static_cast<size_t>(scope)]) total += counter.load();
    return total;
}

uint64_t Accounting::points_written() const {
    return points_written_.load();
}

void Accounting::register_metrics(MetricsRegistry& registry) const {
    registry.add_text([this](std::string& out) { render(out); });
}

std::string Accounting::summary() const {
    return fmt::format(
        "messages received {} = accepted {} + rejected {}; records accepted {} + recovered {} = points "
        "written {} + points rejected {} + buffered {}",
        messages_received.load(), messages_accepted.load(), rejected_total(RejectScope::message),
        records_accepted.load(), points_recovered.load(), points_written(),
        rejected_total(RejectScope::point), points_buffered.load());
}

void Accounting::render(std::string& out) const {
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
    counter("plantd_points_recovered_total",
            "Points found in the disk buffer at start-up (written by an earlier run's pipeline).",
            points_recovered);
    fmt::format_to(std::back_inserter(out),
                   "# HELP plantd_points_buffered Points encoded but not yet acknowledged by InfluxDB.\n"
                   "# TYPE plantd_points_buffered gauge\nplantd_points_buffered {}\n",
                   points_buffered.load());

    std::lock_guard lock(mutex_);
    out +=
        "# HELP plantd_points_written_total Points InfluxDB acknowledged, by factory.\n"
        "# TYPE plantd_points_written_total counter\n";
    for (const auto& [factory, n] : written_by_factory_) {
        fmt::format_to(std::back_inserter(out), "plantd_points_written_total{{factory_id=\"{}\"}} {}\n",
                       factory, n);
    }
    out +=
        "# HELP plantd_factory_messages_received_total MQTT messages by the factory in their topic, counted "
        "once a worker has accepted or rejected them (_none: no factory in the topic; _unregistered: "
        "factories the registry does not know).\n"
        "# TYPE plantd_factory_messages_received_total counter\n";
    for (const auto& [factory, n] : messages_by_factory_) {
        fmt::format_to(std::back_inserter(out),
                       "plantd_factory_messages_received_total{{factory_id=\"{}\"}} {}\n", factory, n);
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
}

}  // namespace plantd
