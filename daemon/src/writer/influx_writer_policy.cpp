// InfluxWriter's response policy: one request per try, bad lines found by splitting and
// dead-lettered while the rest is written, 413 splits, Retry-After honoured, backoff between tries,
// and the accounting of what InfluxDB took.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "util/clock.hpp"
#include "writer/influx_writer.hpp"

namespace plantd {

InfluxWriter::Sent InfluxWriter::deliver(Batch& batch, int64_t& retry_after_ms) {
    if (batch.lines() == 0) return Sent::resolved;
    // Without a disk buffer, a failing batch is retried in place (as the only way to keep it).
    const bool defer = durability_.buffer.has_value();
    return deliver_range(batch, 0, batch.lines(), defer, retry_after_ms) ? Sent::resolved : Sent::failed;
}

bool InfluxWriter::deliver_range(Batch& batch, size_t first, size_t last, bool defer,
                                 int64_t& retry_after_ms) {
    int attempt = 0;
    bool created_database = false;  // a 404 right after CREATE DATABASE backs off instead of looping
    DestinationStats::Entry& per_destination = stats_.destinations.of(batch.destination);
    // Retrying in place shows the destination as failing meanwhile (with a disk buffer, the run loop
    // marks it instead, through set_failing_locked).
    struct FailingInPlace {
        DestinationStats::Entry& entry;
        bool marked = false;
        void mark() {
            if (!marked) entry.failing_writers.fetch_add(1);
            marked = true;
        }
        void unmark() {
            if (marked) entry.failing_writers.fetch_sub(1);
            marked = false;
        }
        ~FailingInPlace() { unmark(); }
    } failing_in_place{per_destination};
    while (true) {
        if (past_deadline()) {
            if (defer) return false;  // the run loop keeps it (disk, log or dead letter)
            dead_letter_lines(batch, first, last, RejectReason::shutdown_unwritten,
                              "InfluxDB did not accept the batch before the shutdown drain timeout");
            return true;
        }
        heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
        stats_.write_requests.fetch_add(1, std::memory_order_relaxed);
        const int64_t request_start_ms = steady_clock_ms();
        WriteOutcome outcome = client_.write(batch.destination, batch.slice(first, last));
        per_destination.write_latency.observe_ms(steady_clock_ms() - request_start_ms);
        stats_.write_bytes_sent.fetch_add(outcome.bytes_sent, std::memory_order_relaxed);
        if (outcome.status == WriteStatus::ok) {
            per_destination.last_write_ms.store(wall_clock_ms(), std::memory_order_relaxed);
            failing_in_place.unmark();
            // Healthy again only if no writer is retrying on any destination (in place or deferred).
            if (attempt > 0 && stats_.destinations.failing() == 0 && health_.influx_failing.exchange(false)) {
                spdlog::info("writer {}: InfluxDB accepts writes again", index_);
                health_.set_influx_error({});
            }
            account_written(batch, first, last);
            return true;
        }
        stats_.write_failures.fetch_add(1, std::memory_order_relaxed);
        const size_t count = last - first;
        switch (outcome.status) {
            case WriteStatus::bad_data:
            case WriteStatus::too_large:
                if (count == 1) {
                    log_.warn("influx_rejected", "InfluxDB refused a line (HTTP {}): {}", outcome.http_status,
                              outcome.message);
                    dead_letter_lines(batch, first, last, RejectReason::influx_rejected,
                                      fmt::format("HTTP {}: {}", outcome.http_status, outcome.message));
                    return true;
                }
                // Halve until the bad lines are isolated. Points are idempotent (same series and
                // time), so lines InfluxDB already stored from a partial write are simply stored again.
                // The halves retry in place: once part of a batch is resolved, it cannot be deferred.
                deliver_range(batch, first, first + count / 2, false, retry_after_ms);
                deliver_range(batch, first + count / 2, last, false, retry_after_ms);
                return true;
            case WriteStatus::database_not_found:
                if (config_.api == InfluxApi::v1 && config_.create_database && !created_database) {
                    created_database = true;
                    std::string error = client_.create_database(batch.destination);
                    if (error.empty()) {
                        spdlog::info("writer {}: created InfluxDB database {}", index_, batch.destination);
                        continue;
                    }
                    outcome.message += "; " + error;
                }
                [[fallthrough]];
            default: {
                std::string error = fmt::format("{} (HTTP {}): {}", to_string(outcome.status),
                                                outcome.http_status, outcome.message);
                if (!health_.influx_failing.load()) {
                    spdlog::error(
                        "writer {}: InfluxDB write to {} failed, keeping {} points and retrying: {}", index_,
                        batch.destination, count, error);
                } else {
                    log_.warn("influx_retry", "writer {}: InfluxDB write still failing: {}", index_, error);
                }
                health_.set_influx_error(error);
                if (defer) {
                    retry_after_ms = outcome.retry_after_ms;
                    return false;
                }
                health_.influx_failing.store(true);  // retrying in place: shown as failing meanwhile
                failing_in_place.mark();
                back_off(attempt++, outcome.retry_after_ms);  // the deadline is checked at the loop's top
                created_database = false;                     // one CREATE DATABASE per backoff step
            }
        }
    }
}

int64_t InfluxWriter::backoff_ms(int attempt, int64_t retry_after_ms) {
    int64_t delay = backoff_.wait_ms(attempt);
    if (retry_after_ms >= 0) delay = std::max(delay, std::min(retry_after_ms, config_.retry_max_ms * 4));
    return delay;
}

bool InfluxWriter::back_off(int attempt, int64_t retry_after_ms) {
    const int64_t delay = backoff_ms(attempt, retry_after_ms);
    std::unique_lock lock(mutex_);
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay);
    if (has_deadline_) until = std::min(until, deadline_);
    // Wait in slices so that the watchdog sees a writer that is alive while it backs off.
    while (std::chrono::steady_clock::now() < until) {
        heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
        auto slice_end = std::min(until, std::chrono::steady_clock::now() + heartbeat_slice);
        if (changed_.wait_until(lock, slice_end, [&] {
                return has_deadline_ && std::chrono::steady_clock::now() >= deadline_;
            })) {
            break;
        }
        if (has_deadline_) until = std::min(until, deadline_);
    }
    return !(has_deadline_ && std::chrono::steady_clock::now() >= deadline_);
}

void InfluxWriter::account_written(const Batch& batch, size_t first, size_t last) {
    const int64_t now_ms = wall_clock_ms();
    LatencyHistogram::Local ages;
    for (size_t i = first; i < last; ++i) ages.observe_ms(now_ms - batch.line_time_ms[i]);
    stats_.record_age_at_write.add(ages);
    // Count per factory: lines of one factory tend to be adjacent.
    size_t run_start = first;
    for (size_t i = first + 1; i <= last; ++i) {
        if (i == last || batch.line_factory[i] != batch.line_factory[run_start]) {
            accounting_.count_points_written(batch.factory_of(run_start), i - run_start);
            run_start = i;
        }
    }
    accounting_.points_buffered.fetch_sub(static_cast<int64_t>(last - first), std::memory_order_relaxed);
    stats_.batches_written.fetch_add(1, std::memory_order_relaxed);
    stats_.last_write_ms.store(now_ms, std::memory_order_relaxed);
}

void InfluxWriter::dead_letter_lines(const Batch& batch, size_t first, size_t last, RejectReason reason,
                                     std::string_view detail) {
    for (size_t i = first; i < last; ++i) {
        std::string_view line = batch.line(i);
        if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
        DeadLetter letter{.kind = "line",
                          .topic = batch.topic_of(i),
                          .destination = batch.destination,
                          .factory_id = batch.factory_of(i),
                          .reason = reason,
                          .detail = detail,
                          .payload = line};
        dead_letters_.append(letter);
        accounting_.count_rejected(RejectScope::point, reason, batch.factory_of(i));
    }
    accounting_.points_buffered.fetch_sub(static_cast<int64_t>(last - first), std::memory_order_relaxed);
}

}  // namespace plantd
