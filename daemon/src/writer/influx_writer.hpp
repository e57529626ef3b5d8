#pragma once
// One writer thread: sends batches to InfluxDB in the order it receives them (so a shard keeps
// per-device order) and applies the response policy of NOTES.md: bad lines are found by splitting
// and dead-lettered while the rest is written; 413 splits; 429/503 honour Retry-After; 401/403,
// 5xx and network errors keep the data and retry with capped exponential backoff and jitter.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "config/config.hpp"
#include "control/health.hpp"
#include "control/metrics.hpp"
#include "control/rate_limited_log.hpp"
#include "durability/dead_letter_store.hpp"
#include "writer/batch.hpp"
#include "writer/influx_client.hpp"

namespace plantd {

class InfluxWriter {
  public:
    InfluxWriter(size_t index, const InfluxConfig& config, Metrics& metrics, Health& health,
                 DeadLetterStore& dead_letters, RateLimitedLog& log);
    ~InfluxWriter();

    void start();
    // Queues a batch; waits while max_pending_batches are already queued (backpressure).
    void submit(Batch batch);
    // From now on, retries stop at `deadline` and what is left is dead-lettered (shutdown_unwritten).
    // Set when the drain starts, so that workers blocked on a full writer queue get free too.
    void set_deadline(std::chrono::steady_clock::time_point deadline);
    // No more batches will come: the thread ends once its queue is empty.
    void finish();
    void join();

    size_t pending() const;
    // Steady-clock ms of the writer's last sign of life (a loop turn, a request, a backoff slice).
    int64_t heartbeat_ms() const { return heartbeat_ms_.load(std::memory_order_relaxed); }

  private:
    void run();
    void deliver(Batch& batch);
    void deliver_range(Batch& batch, size_t first, size_t last);
    // Sleeps for the backoff; returns false when the drain deadline has passed.
    bool back_off(int attempt, int64_t retry_after_ms);
    bool past_deadline() const;
    void account_written(const Batch& batch, size_t first, size_t last);
    void dead_letter_lines(const Batch& batch, size_t first, size_t last, RejectReason reason,
                           std::string_view detail);

    size_t index_;
    const InfluxConfig& config_;
    Metrics& metrics_;
    Health& health_;
    DeadLetterStore& dead_letters_;
    RateLimitedLog& log_;
    InfluxClient client_;
    std::mt19937 random_;

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Batch> queue_;
    bool finishing_ = false;
    bool has_deadline_ = false;
    std::chrono::steady_clock::time_point deadline_{};
    std::atomic<int64_t> heartbeat_ms_{0};
    std::thread thread_;
};

}  // namespace plantd
