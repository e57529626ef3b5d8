#pragma once
// What every Prometheus exporter says about itself: plantd_build_info, and the standard process_*
// metrics (CPU seconds, resident and virtual memory, open and allowed file descriptors, start time),
// read from /proc at scrape time.
#include "control/metrics_registry.hpp"

namespace plantd {

void register_process_metrics(MetricsRegistry& registry);

}  // namespace plantd
