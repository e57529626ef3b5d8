#include "writer/influx_writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

namespace {
constexpr auto heartbeat_slice = std::chrono::milliseconds(500);
}  // namespace

InfluxWriter::InfluxWriter(size_t index, const InfluxConfig& config, Metrics& metrics, Health& health,
                           DeadLetterStore& dead_letters, RateLimitedLog& log)
    : index_(index),
      config_(config),
      metrics_(metrics),
      health_(health),
      dead_letters_(dead_letters),
      log_(log),
      client_(config),
      random_(static_cast<unsigned>(std::random_device{}() + index)) {}

InfluxWriter::~InfluxWriter() {
    if (thread_.joinable()) {
        set_deadline(std::chrono::steady_clock::now());
        finish();
        join();
    }
}

void InfluxWriter::start() {
    heartbeat_ms_ = steady_clock_ms();
    client_.set_progress_hook([this] { heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed); });
    thread_ = std::thread([this] {
        name_this_thread("plantd-write" + std::to_string(index_));
        run();
    });
}

void InfluxWriter::submit(Batch batch) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return queue_.size() < config_.max_pending_batches; });
    queue_.push_back(std::move(batch));
    changed_.notify_all();
}

void InfluxWriter::set_deadline(std::chrono::steady_clock::time_point deadline) {
    std::lock_guard lock(mutex_);
    has_deadline_ = true;
    deadline_ = deadline;
    changed_.notify_all();
}

void InfluxWriter::finish() {
    std::lock_guard lock(mutex_);
    finishing_ = true;
    changed_.notify_all();
}

void InfluxWriter::join() {
    if (thread_.joinable()) thread_.join();
}

size_t InfluxWriter::pending() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

bool InfluxWriter::past_deadline() const {
    std::lock_guard lock(mutex_);
    return has_deadline_ && std::chrono::steady_clock::now() >= deadline_;
}

void InfluxWriter::run() {
    while (true) {
        Batch batch;
        {
            std::unique_lock lock(mutex_);
            while (!changed_.wait_for(lock, heartbeat_slice, [&] { return !queue_.empty() || finishing_; })) {
                heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
            }
            heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
            if (queue_.empty()) return;
            batch = std::move(queue_.front());
            queue_.pop_front();
            changed_.notify_all();
        }
        try {
            deliver(batch);
        } catch (const std::exception& e) {
            // Never expected (the client reports errors as values); keep the data accounted for.
            metrics_.internal_errors.fetch_add(1);
            spdlog::error("writer {}: unexpected exception: {}", index_, e.what());
            dead_letter_lines(batch, 0, batch.lines(), RejectReason::shutdown_unwritten, e.what());
        }
    }
}

void InfluxWriter::deliver(Batch& batch) {
    if (batch.lines() > 0) deliver_range(batch, 0, batch.lines());
}

void InfluxWriter::deliver_range(Batch& batch, size_t first, size_t last) {
    int attempt = 0;
    bool created_database = false;  // a 404 right after CREATE DATABASE backs off instead of looping
    while (true) {
        if (past_deadline()) {
            dead_letter_lines(batch, first, last, RejectReason::shutdown_unwritten,
                              "InfluxDB did not accept the batch before the shutdown drain timeout");
            return;
        }
        heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
        metrics_.write_requests.fetch_add(1, std::memory_order_relaxed);
        WriteOutcome outcome = client_.write(batch.destination, batch.slice(first, last));
        metrics_.write_bytes_sent.fetch_add(outcome.bytes_sent, std::memory_order_relaxed);
        if (outcome.status == WriteStatus::ok) {
            if (health_.influx_failing.exchange(false)) {
                spdlog::info("writer {}: InfluxDB accepts writes again", index_);
                health_.set_influx_error({});
            }
            account_written(batch, first, last);
            return;
        }
        metrics_.write_failures.fetch_add(1, std::memory_order_relaxed);
        const size_t count = last - first;
        switch (outcome.status) {
            case WriteStatus::bad_data:
            case WriteStatus::too_large:
                if (count == 1) {
                    log_.warn("influx_rejected", "InfluxDB refused a line (HTTP {}): {}", outcome.http_status,
                              outcome.message);
                    dead_letter_lines(batch, first, last, RejectReason::influx_rejected,
                                      fmt::format("HTTP {}: {}", outcome.http_status, outcome.message));
                    return;
                }
                // Halve until the bad lines are isolated. Points are idempotent (same series and
                // time), so lines InfluxDB already stored from a partial write are simply stored again.
                deliver_range(batch, first, first + count / 2);
                deliver_range(batch, first + count / 2, last);
                return;
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
                if (!health_.influx_failing.exchange(true)) {
                    spdlog::error("writer {}: InfluxDB write failed, keeping {} points and retrying: {}",
                                  index_, count, error);
                } else {
                    log_.warn("influx_retry", "writer {}: InfluxDB write still failing: {}", index_, error);
                }
                health_.set_influx_error(error);
                back_off(attempt++, outcome.retry_after_ms);  // the deadline is checked at the loop's top
                created_database = false;                     // one CREATE DATABASE per backoff step
            }
        }
    }
}

bool InfluxWriter::back_off(int attempt, int64_t retry_after_ms) {
    int64_t delay = config_.retry_initial_ms << std::min(attempt, 20);
    delay = std::min(delay, config_.retry_max_ms);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    delay = static_cast<int64_t>(static_cast<double>(delay) * jitter(random_));
    if (retry_after_ms >= 0) delay = std::max(delay, std::min(retry_after_ms, config_.retry_max_ms * 4));
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
    metrics_.record_age_at_write.add(ages);
    // Count per factory: lines of one factory tend to be adjacent.
    size_t run_start = first;
    for (size_t i = first + 1; i <= last; ++i) {
        if (i == last || batch.line_factory[i] != batch.line_factory[run_start]) {
            metrics_.count_points_written(batch.factory_of(run_start), i - run_start);
            run_start = i;
        }
    }
    metrics_.points_buffered.fetch_sub(static_cast<int64_t>(last - first), std::memory_order_relaxed);
    metrics_.batches_written.fetch_add(1, std::memory_order_relaxed);
}

void InfluxWriter::dead_letter_lines(const Batch& batch, size_t first, size_t last, RejectReason reason,
                                     std::string_view detail) {
    for (size_t i = first; i < last; ++i) {
        std::string_view line = batch.line(i);
        if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
        DeadLetter letter{.kind = "line",
                          .topic = "",
                          .destination = batch.destination,
                          .factory_id = batch.factory_of(i),
                          .reason = reason,
                          .detail = detail,
                          .payload = line};
        dead_letters_.append(letter);
        metrics_.count_rejected(RejectScope::point, reason, batch.factory_of(i));
    }
    metrics_.points_buffered.fetch_sub(static_cast<int64_t>(last - first), std::memory_order_relaxed);
}

}  // namespace plantd
