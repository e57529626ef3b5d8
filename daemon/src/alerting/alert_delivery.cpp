#include "alerting/alert_delivery.hpp"

#include <spdlog/spdlog.h>

#include "util/backoff.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

namespace {
constexpr int64_t retry_min_ms = 1'000;
constexpr int64_t retry_max_ms = 30'000;
}  // namespace

AlertDelivery::AlertDelivery(std::unique_ptr<AlertSink> sink, size_t max_pending)
    : sink_(std::move(sink)), max_pending_(max_pending) {}

AlertDelivery::~AlertDelivery() {
    stop(0);
}

void AlertDelivery::start() {
    thread_ = std::thread([this] {
        name_this_thread(fmt::format("plantd-alert-{}", sink_->name()).substr(0, 15));
        try {
            run();
        } catch (const std::exception& e) {
            spdlog::critical("alerts: delivery to {} failed: {}", sink_->name(), e.what());
        }
    });
}

void AlertDelivery::stop(int64_t drain_ms) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
        drain_deadline_ms_ = steady_clock_ms() + drain_ms;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    if (!queue_.empty()) {
        spdlog::warn("alerts: {} alert events were not delivered to {} before the stop", queue_.size(),
                     sink_->name());
    }
}

void AlertDelivery::enqueue(const rules::AlertEvent& event) {
    {
        std::lock_guard lock(mutex_);
        // A resolve is kept even then (up to twice the bound): dropping it would leave the alert
        // firing for good at this destination.
        const bool resolve = event.kind == rules::AlertEvent::Kind::transition &&
                             event.alert.state == rules::AlertState::resolved;
        if (queue_.size() >= (resolve ? 2 * max_pending_ : max_pending_)) {
            if (dropped_.fetch_add(1) % 1000 == 0)
                spdlog::error("alerts: {} is {} events behind; dropping new ones (alert_max_pending)",
                              sink_->name(), queue_.size());
            return;
        }
        queue_.push_back(event);
    }
    wake_.notify_one();
}

size_t AlertDelivery::pending() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

void AlertDelivery::run() {
    Backoff backoff(retry_min_ms, retry_max_ms);
    const int64_t refresh_ms = sink_->refresh_interval_ms();
    int64_t next_refresh_ms = refresh_ms > 0 ? steady_clock_ms() + refresh_ms : 0;
    while (true) {
        rules::AlertEvent event;
        bool refresh = false;
        {
            std::unique_lock lock(mutex_);
            auto ready = [&] { return stopping_ || !queue_.empty(); };
            if (refresh_ms > 0)
                wake_.wait_for(
                    lock,
                    std::chrono::milliseconds(std::max<int64_t>(next_refresh_ms - steady_clock_ms(), 0)),
                    ready);
            else
                wake_.wait(lock, ready);
            if (stopping_ && (queue_.empty() || steady_clock_ms() >= drain_deadline_ms_)) return;
            // Due even while events keep coming: what is still firing must not lapse meanwhile.
            refresh = refresh_ms > 0 && steady_clock_ms() >= next_refresh_ms;
            if (!refresh && queue_.empty()) continue;
            if (!refresh) event = queue_.front();
        }
        std::string problem;
        AlertSink::Outcome outcome;
        try {
            outcome = refresh ? sink_->refresh(problem) : sink_->deliver(event, problem);
        } catch (const std::exception& e) {
            outcome = AlertSink::Outcome::retry;
            problem = e.what();
        }
        if (refresh) next_refresh_ms = steady_clock_ms() + refresh_ms;
        if (outcome == AlertSink::Outcome::retry) {
            failures_.fetch_add(1);
            if (!failing_.exchange(true))
                spdlog::warn("alerts: cannot deliver to {}: {}; retrying (ingestion goes on)", sink_->name(),
                             problem);
            // A refresh that failed is tried again after the backoff, not a whole interval later.
            if (refresh) next_refresh_ms = steady_clock_ms();
            const int64_t wait_ms = backoff.next_ms();
            std::unique_lock lock(mutex_);
            if (stopping_) {
                if (steady_clock_ms() >= drain_deadline_ms_) return;
                wake_.wait_for(lock, std::chrono::milliseconds(
                                         std::min(wait_ms, drain_deadline_ms_ - steady_clock_ms())));
            } else {
                wake_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stopping_; });
            }
            continue;
        }
        if (failing_.exchange(false)) spdlog::info("alerts: delivering to {} again", sink_->name());
        backoff.reset();
        if (refresh) {
            if (outcome == AlertSink::Outcome::refused)
                spdlog::error("alerts: {} refused the alerts still firing: {}", sink_->name(), problem);
            continue;  // the queue is as it was
        }
        if (outcome == AlertSink::Outcome::refused) {
            refused_.fetch_add(1);
            spdlog::error("alerts: {} refused alert {} ({} on {}/{}): {}", sink_->name(),
                          event.alert.alert_id, rules::to_string(event.alert.state), event.alert.factory_id,
                          event.alert.device_id, problem);
        } else {
            delivered_.fetch_add(1);
        }
        std::lock_guard lock(mutex_);
        queue_.pop_front();
    }
}

}  // namespace plantd
