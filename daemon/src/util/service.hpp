#pragma once
// The one lifecycle of plantd's components (a session thread, a worker, a writer, the registry, the
// alert destinations; and the queue and the log, whose stop is a close): start, stop with a
// deadline, join, alive. ServiceGroup starts them in the order given and stops them in the reverse
// order, so that every stage stops only after everything that feeds it has stopped.
#include <chrono>
#include <cstdint>
#include <vector>

namespace plantd {

class Service {
  public:
    using Deadline = std::chrono::steady_clock::time_point;
    virtual ~Service() = default;

    virtual void start() = 0;
    // Said to every service before the first is stopped: when the whole stop must be over (a writer
    // retrying a dead server gives up by then, freeing whoever waits on it).
    virtual void stop_by(Deadline) {}
    // Takes no new work, finishes what it holds by `deadline` (or hands it on), then its thread ends.
    virtual void stop(Deadline deadline) = 0;
    // Returns once its thread has ended.
    virtual void join() {}
    // Its thread turned its loop within `max_age_ms` (the watchdog's question).
    virtual bool alive(int64_t /*now_ms*/, int64_t /*max_age_ms*/) const { return true; }
};

// How long alert delivery may go on in a stop: a few seconds, and never past `deadline`.
inline constexpr int64_t alert_drain_ms = 3'000;
inline int64_t drain_ms_until(Service::Deadline deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return left.count() < 0 ? 0 : (left.count() > alert_drain_ms ? alert_drain_ms : left.count());
}

class ServiceGroup {
  public:
    ServiceGroup() = default;
    ServiceGroup(const ServiceGroup&) = delete;
    ServiceGroup& operator=(const ServiceGroup&) = delete;
    ~ServiceGroup() { stop_all(std::chrono::steady_clock::now()); }

    // Starts `service` after the ones started before it.
    void start(Service& service) {
        service.start();
        started_.push_back(&service);
    }
    // Every service learns the deadline, then each is stopped and joined, the last started first.
    // Runs once; later calls do nothing.
    void stop_all(Service::Deadline deadline) {
        if (stopped_) return;
        stopped_ = true;
        for (Service* service : started_) service->stop_by(deadline);
        for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
            (*it)->stop(deadline);
            (*it)->join();
        }
    }
    bool alive(int64_t now_ms, int64_t max_age_ms) const {
        for (const Service* service : started_)
            if (!service->alive(now_ms, max_age_ms)) return false;
        return true;
    }

  private:
    std::vector<Service*> started_;
    bool stopped_ = false;
};

}  // namespace plantd
