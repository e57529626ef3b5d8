#pragma once
// GET /metrics: every component registers its own counters and gauges here, as functions read at
// scrape time; this renders them as Prometheus text. No component counts into another's numbers.
// Samples of one family are rendered together under one HELP and TYPE (the family is the name
// without labels); samples registered under the same name and labels by several components (a
// counter each worker keeps) are added up into one.
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace plantd {

class MetricsRegistry {
  public:
    // `name` may carry labels (name{label="x"}); samples of one family share its help.
    void add_gauge(std::string name, std::string help, std::function<double()> read);
    void add_counter(std::string name, std::string help, std::function<double()> read);
    // A component that renders whole families itself (a histogram, counters by reason and factory).
    void add_text(std::function<void(std::string& out)> render);

    std::string render_prometheus() const;

  private:
    struct Entry {
        std::string name, help;
        std::function<double()> read;
        bool counter = false;
        std::function<void(std::string&)> text;
    };
    mutable std::mutex mutex_;
    std::vector<Entry> entries_;
};

}  // namespace plantd
