#include "control/metrics_registry.hpp"

#include <map>

#include <fmt/format.h>

namespace plantd {

void MetricsRegistry::add_gauge(std::string name, std::string help, std::function<double()> read) {
    std::lock_guard lock(mutex_);
    entries_.push_back({std::move(name), std::move(help), std::move(read), false, {}});
}

void MetricsRegistry::add_counter(std::string name, std::string help, std::function<double()> read) {
    std::lock_guard lock(mutex_);
    entries_.push_back({std::move(name), std::move(help), std::move(read), true, {}});
}

void MetricsRegistry::add_text(std::function<void(std::string& out)> render) {
    std::lock_guard lock(mutex_);
    entries_.push_back({{}, {}, {}, false, std::move(render)});
}

std::string MetricsRegistry::render_prometheus() const {
    // Read without the lock: a reader may take a lock of its own (a writer's) whose holder registers
    // nothing, but a scrape must never wait on registration either.
    std::vector<Entry> entries;
    {
        std::lock_guard lock(mutex_);
        entries = entries_;
    }
    std::string out;
    struct Family {
        const Entry* first = nullptr;
        std::vector<std::string> order;         // sample names, first registration first
        std::map<std::string, double> samples;  // name with labels -> sum
    };
    std::vector<Family> families;
    std::map<std::string, size_t, std::less<>> family_index;
    for (const auto& entry : entries) {
        if (entry.text) {
            entry.text(out);
            continue;
        }
        const std::string family_name = entry.name.substr(0, entry.name.find('{'));
        auto [it, added] = family_index.emplace(family_name, families.size());
        if (added) families.push_back(Family{&entry, {}, {}});
        Family& family = families[it->second];
        auto [sample, new_sample] = family.samples.emplace(entry.name, 0.0);
        if (new_sample) family.order.push_back(entry.name);
        sample->second += entry.read();
    }
    for (const auto& family : families) {
        const Entry& first = *family.first;
        const std::string_view name = std::string_view(first.name).substr(0, first.name.find('{'));
        fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} {2}\n", name, first.help,
                       first.counter ? "counter" : "gauge");
        for (const auto& sample : family.order)
            fmt::format_to(std::back_inserter(out), "{} {}\n", sample, family.samples.at(sample));
    }
    return out;
}

}  // namespace plantd
