#pragma once
// Delivers alert events to one destination (MQTT, the MySQL alerts table, InfluxDB) on its own
// thread, in order, from a bounded queue: a destination that is down is retried with capped,
// jittered backoff (1 s .. 30 s) while the others and ingestion go on. A full queue drops the
// newest event (counted, logged); an event the destination refuses for good is counted and logged.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "control/metrics_registry.hpp"
#include "rules/alert.hpp"
#include "util/service.hpp"

namespace plantd {

class AlertSink {
  public:
    enum class Outcome { delivered, retry, refused };
    virtual ~AlertSink() = default;
    virtual std::string_view name() const = 0;  // "mqtt", "mysql", "influxdb"
    // `problem` says why when not delivered.
    virtual Outcome deliver(const rules::AlertEvent& event, std::string& problem) = 0;
    // A destination that must be told again what is still true (Alertmanager lets alerts lapse):
    // refresh() is called about every refresh_interval_ms (0: never), on the delivery thread.
    virtual int64_t refresh_interval_ms() const { return 0; }
    virtual Outcome refresh(std::string&) { return Outcome::delivered; }
};

class AlertDelivery final : public Service {
  public:
    AlertDelivery(std::unique_ptr<AlertSink> sink, size_t max_pending);
    ~AlertDelivery();

    void start() override;
    // Goes on delivering for up to `drain_ms`; what is left is counted as lost (logged).
    void stop(int64_t drain_ms);
    // Alerts get at most a few seconds of a stop (alert_drain_ms), and never more than the deadline.
    void stop(Deadline deadline) override { stop(drain_ms_until(deadline)); }
    void enqueue(const rules::AlertEvent& event);

    std::string_view name() const { return sink_->name(); }
    size_t pending() const;
    bool failing() const { return failing_.load(); }
    uint64_t delivered() const { return delivered_.load(); }
    uint64_t failures() const { return failures_.load(); }
    uint64_t refused() const { return refused_.load(); }
    uint64_t dropped() const { return dropped_.load(); }
    // Its gauge and counters, labelled with its destination.
    void register_metrics(MetricsRegistry& registry) const;

  private:
    void run();

    std::unique_ptr<AlertSink> sink_;
    size_t max_pending_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<rules::AlertEvent> queue_;
    bool stopping_ = false;
    int64_t drain_deadline_ms_ = 0;
    std::atomic<bool> failing_{false};
    std::atomic<uint64_t> delivered_{0};
    std::atomic<uint64_t> failures_{0};
    std::atomic<uint64_t> refused_{0};
    std::atomic<uint64_t> dropped_{0};
    std::thread thread_;
};

}  // namespace plantd
