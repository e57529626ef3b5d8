#pragma once
// One writer thread: sends batches to InfluxDB and applies the response policy (README, "What InfluxDB
// answers"): bad lines are found by splitting and dead-lettered while the rest is written; 413 splits;
// 429/503 honour Retry-After; 401/403, 5xx and network errors keep the data and retry with capped exponential
// backoff and jitter.
//
// Batches queue per destination (database or bucket), each queue strictly in order, so per-device
// order holds. A destination that fails backs off on its own while the others go on. With a disk
// buffer, its batches (and any batch beyond max_pending_batches in memory) move to disk, which frees
// their write-ahead log entries and memory; when the buffer is full the policy decides: wait (the
// broker holds the messages) or drop the oldest buffered batch (dead-lettered as buffer_overflow).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "config/config.hpp"
#include "control/accounting.hpp"
#include "control/health.hpp"
#include "control/metrics_registry.hpp"
#include "control/rate_limited_log.hpp"
#include "core/batch.hpp"
#include "core/batch_sink.hpp"
#include "durability/dead_letter_store.hpp"
#include "durability/disk_buffer.hpp"
#include "durability/write_ahead_log.hpp"
#include "util/backoff.hpp"
#include "util/service.hpp"
#include "writer/influx_client.hpp"
#include "writer/writer_stats.hpp"

namespace plantd {

struct WriterDurability {
    WriteAheadLog* wal = nullptr;      // null: durability "memory"
    std::optional<DiskBuffer> buffer;  // none: no disk buffer (memory, or buffer_max_bytes = 0)
    BufferFullPolicy policy = BufferFullPolicy::block;
};

class InfluxWriter final : public BatchSink, public Service {
  public:
    // `accounting`: the points it writes, rejects and buffers; `stats`: the counters all writers share.
    InfluxWriter(size_t index, const InfluxConfig& config, Accounting& accounting, WriterStats& stats,
                 Health& health, DeadLetterStore& dead_letters, RateLimitedLog& log,
                 WriterDurability durability = {});
    ~InfluxWriter();

    // Takes up what the disk buffer of a previous run holds (sent before anything new) and starts.
    void start() override;
    // Queues a batch; waits while max_pending_batches are in memory and the disk buffer cannot take
    // it (backpressure).
    void submit(Batch batch) override;
    bool ready_for(std::string_view destination) const override;
    // From now on, retries stop at `deadline`; what is left goes to the disk buffer, else stays in the
    // write-ahead log for the next start, else (durability "memory") is dead-lettered.
    void set_deadline(std::chrono::steady_clock::time_point deadline);
    // No more batches will come: the thread ends once everything is written or the deadline passed.
    void finish();
    void join() override;
    // The service lifecycle: the deadline first (set_deadline), then finish().
    void stop_by(Deadline deadline) override { set_deadline(deadline); }
    void stop(Deadline) override { finish(); }
    bool alive(int64_t now_ms, int64_t max_age_ms) const override {
        return now_ms - heartbeat_ms() < max_age_ms;
    }

    size_t pending() const;  // batches in memory
    uint64_t buffered_batches() const;
    uint64_t buffered_bytes() const;
    // Steady-clock ms of the writer's last sign of life (a loop turn, a request, a backoff slice).
    int64_t heartbeat_ms() const override { return heartbeat_ms_.load(std::memory_order_relaxed); }
    // Its gauges (batches in memory and on disk), labelled with its index.
    void register_metrics(MetricsRegistry& registry) const;

  private:
    // Waits are cut into slices of this, so that the watchdog sees a writer that is alive.
    static constexpr auto heartbeat_slice = std::chrono::milliseconds(500);

    struct Item {
        Batch batch;                            // in memory (empty while on disk)
        std::optional<DiskBuffer::Entry> disk;  // on disk
    };
    struct Destination {
        std::deque<Item> items;  // oldest first; the front may be in flight
        bool in_flight = false;
        bool failing = false;
        int attempt = 0;
        std::chrono::steady_clock::time_point next_try{};
        DestinationStats::Entry* stats = nullptr;  // its per-destination metrics
    };
    enum class Sent { resolved, failed };

    void run();
    // The next destination due, or null; sets `wait_until` to when one will be.
    Destination* next_due(std::chrono::steady_clock::time_point now,
                          std::chrono::steady_clock::time_point& wait_until);
    void send_front(const std::string& name, Destination& destination, std::unique_lock<std::mutex>& lock);
    // One try at the whole batch (splits on bad data are resolved inside, retrying in place).
    Sent deliver(Batch& batch, int64_t& retry_after_ms);
    bool deliver_range(Batch& batch, size_t first, size_t last, bool defer, int64_t& retry_after_ms);
    // With mutex_ held: moves a batch to the disk buffer (dropping the oldest if so configured).
    bool spill_locked(Batch& batch, DiskBuffer::Entry& entry);
    bool drop_oldest_locked();
    // With mutex_ held: every in-memory item of `destination` not in flight goes to disk.
    void spill_destination_locked(Destination& destination);
    // The drain deadline passed: what is in memory is kept on disk, in the log, or dead-lettered.
    void leave_locked();
    void leave_batch_locked(Batch& batch);
    void release_wal(const Batch& batch);
    void set_failing_locked(Destination& destination, bool failing);
    // With mutex_ held: the destination's queue (created on first use, with its metrics).
    Destination& destination_locked(const std::string& name);
    // Sleeps for the backoff; returns false when the drain deadline has passed.
    bool back_off(int attempt, int64_t retry_after_ms);
    int64_t backoff_ms(int attempt, int64_t retry_after_ms);
    bool past_deadline() const;
    bool past_deadline_locked() const;
    void account_written(const Batch& batch, size_t first, size_t last);
    void dead_letter_lines(const Batch& batch, size_t first, size_t last, RejectReason reason,
                           std::string_view detail);

    size_t index_;
    const InfluxConfig& config_;
    Accounting& accounting_;
    WriterStats& stats_;
    Health& health_;
    DeadLetterStore& dead_letters_;
    RateLimitedLog& log_;
    InfluxClient client_;
    WriterDurability durability_;
    Backoff backoff_;  // retry_initial .. retry_max

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::map<std::string, Destination, std::less<>> destinations_;
    std::string last_sent_;  // round robin between destinations
    size_t in_memory_ = 0;   // items in memory across destinations
    uint64_t on_disk_ = 0;   // items on disk
    bool buffer_failing_ = false;
    bool finishing_ = false;
    bool has_deadline_ = false;
    std::chrono::steady_clock::time_point deadline_{};
    std::atomic<int64_t> heartbeat_ms_{0};
    std::thread thread_;
};

}  // namespace plantd
