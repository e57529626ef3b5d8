// The worker's batches: one open batch per destination, handed to the writer when full, too old,
// or old enough while the writer has nothing to send (adaptive batching).
#include <algorithm>
#include <chrono>

#include "pipeline/worker.hpp"
#include "util/clock.hpp"

namespace plantd {

void Worker::flush_full() {
    const auto& influx = services_.config.influxdb;
    for (Batch& batch : open_batches_) {
        if (batch.lines() >= influx.batch_max_lines || batch.body.size() >= influx.batch_max_bytes) {
            hand_to_writer(batch);
        }
    }
}

void Worker::hand_to_writer(Batch& batch) {
    Batch full = std::move(batch);
    batch = Batch{};
    batch.destination = full.destination;
    waiting_on_writer_.store(true);
    writer_.submit(std::move(full));
    waiting_on_writer_.store(false);
    heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
}

bool Worker::alive(int64_t now_ms, int64_t max_age_ms) const {
    if (now_ms - heartbeat_ms() < max_age_ms) return true;
    return waiting_on_writer_.load() && now_ms - writer_.heartbeat_ms() < max_age_ms;
}

std::string_view Worker::destination_of(std::string_view factory, std::string_view registry_destination) {
    // The registry's destination for the factory, else the configured one (templated per factory).
    if (!registry_destination.empty()) return registry_destination;
    if (!per_factory_destination_) return default_destination_;
    templated_destination_ = destination_for(services_.config.influxdb, factory);
    return templated_destination_;
}

Batch& Worker::batch_for(std::string_view factory, std::string_view registry_destination) {
    const std::string_view destination = destination_of(factory, registry_destination);
    for (Batch& batch : open_batches_) {
        if (batch.destination == destination) {
            if (batch.lines() == 0) batch.opened = std::chrono::steady_clock::now();
            return batch;
        }
    }
    open_batches_.emplace_back();
    open_batches_.back().destination = std::string(destination);
    open_batches_.back().opened = std::chrono::steady_clock::now();
    return open_batches_.back();
}

void Worker::flush_aged() {
    flush_factory_tally();
    const auto max_age = std::chrono::milliseconds(services_.config.influxdb.flush_interval_ms);
    const auto linger = std::chrono::milliseconds(services_.config.influxdb.batch_linger_ms);
    const auto now = std::chrono::steady_clock::now();
    // Old enough to go at all, and either too old to wait or its writer would send it at once: low
    // latency while the writer is idle, large batches while it is busy. The writer is asked once a
    // turn (after one early hand-off it is busy anyway), starting from another batch each turn.
    const size_t count = open_batches_.size();
    bool asked = false;
    for (size_t k = 0; k < count; ++k) {
        Batch& batch = open_batches_[(flush_start_ + k) % count];
        if (batch.lines() == 0) continue;
        const auto age = now - batch.opened;
        if (age >= max_age) {
            hand_to_writer(batch);
        } else if (age >= linger && !asked) {
            asked = true;
            if (writer_.ready_for(batch.destination)) hand_to_writer(batch);
        }
    }
    flush_start_ = count > 0 ? (flush_start_ + 1) % count : 0;
    // Per-factory destinations: forget idle empty batches so the list stays short.
    if (open_batches_.size() > 64) {
        std::erase_if(open_batches_, [](const Batch& b) { return b.lines() == 0; });
    }
}

bool Worker::has_open_lines() const {
    return std::any_of(open_batches_.begin(), open_batches_.end(),
                       [](const Batch& b) { return b.lines() > 0; });
}

void Worker::flush_all() {
    for (Batch& batch : open_batches_) {
        if (batch.lines() > 0) hand_to_writer(batch);
    }
}

}  // namespace plantd
