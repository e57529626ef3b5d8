#pragma once
// The write-ahead log: every message is appended here before the broker gets its PUBACK, so that a
// crash of plantd (or, in mode "power", a power loss older than fsync_interval) loses nothing that
// was acknowledged. Segments are files of records (wal_format.hpp); each counts the messages it holds
// that are not yet resolved (written to InfluxDB, rejected, or moved to the disk buffer). A closed
// segment whose count reaches zero is deleted. At start-up whatever segments a previous run left are
// replayed through the pipeline; points are idempotent (same series and time), so a record written
// before the crash is simply written again.
//
// Threads: stage(), commit() and tick() belong to the MQTT session thread; release() may be called
// from any thread.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "control/health.hpp"
#include "control/metrics_registry.hpp"
#include "core/raw_message.hpp"
#include "util/service.hpp"

namespace plantd {

class WriteAheadLog final : public Service {
  public:
    // Opens (creating) `{directory}/wal`, locks it against a second plantd, and opens a new segment
    // after whatever segments are already there (they wait for recover()).
    static Result<std::unique_ptr<WriteAheadLog>> open(const DurabilityConfig& config,
                                                       size_t max_record_bytes);
    ~WriteAheadLog();
    WriteAheadLog(const WriteAheadLog&) = delete;
    WriteAheadLog& operator=(const WriteAheadLog&) = delete;

    struct Recovery {
        uint64_t segments = 0;
        uint64_t records = 0;
        uint64_t corrupt_bytes = 0;  // skipped: a header or checksum did not hold
        uint64_t torn_bytes = 0;     // an incomplete last record (the write the crash cut short)
    };
    // Hands every record of the segments found at open() to `replay`, oldest first, each with its
    // wal_segment set (so that it is released like any message). Empty segments are deleted.
    Recovery recover(const std::function<void(RawMessage&&)>& replay);

    // Appends `message` to the records waiting for commit().
    void stage(const RawMessage& message);
    // Writes what stage() gathered, in one write. On failure (disk full, I/O error) the segment is
    // cut back to its last complete record, nothing staged is lost, and commit() may be tried again.
    // In mode "power" a failed fsync fails the commit too: the segment is given up (after a failed
    // fsync the kernel may have dropped its pages, whatever a later fsync says), what was staged is
    // written again to a new segment by the next commit(), and every commit syncs at once until a
    // sync succeeds. So nothing is acknowledged while the disk cannot make it durable.
    bool commit(std::string& error);
    // The segment the last successful commit() wrote to: the staged messages' wal_segment.
    uint32_t committed_segment() const { return committed_segment_; }
    bool has_staged() const { return !staged_.empty(); }
    // Undoes what is staged (the messages will not be handed on; the broker redelivers them).
    void drop_staged();
    // Periodic work of the session thread: the fsync due in mode "power", closing an idle segment.
    void tick();
    // True while the log holds wal_max_bytes or more: the session stops taking messages.
    bool full() const;

    void release(uint32_t segment, uint32_t count = 1);
    // A clean stop: closes the open segment and deletes every segment that holds nothing unresolved.
    void close();
    // As a service: open already; stopping closes it, after everything that resolves its entries.
    void start() override {}
    void stop(Deadline) override { close(); }

    uint64_t bytes() const;
    uint64_t segment_count() const;
    uint64_t unresolved() const;
    uint64_t fsyncs() const { return fsyncs_; }
    uint64_t write_failures() const { return write_failures_; }
    uint64_t sync_failures() const { return sync_failures_; }
    bool sync_failing() const { return sync_failing_; }
    // Tests: what stands in for fdatasync(2) (a disk that fails on purpose).
    void set_sync_for_test(std::function<int(int)> sync) { fdatasync_ = std::move(sync); }
    const std::string& directory() const { return directory_; }
    // A message recover() replayed was taken by the pipeline.
    void count_replayed() { replayed_.fetch_add(1, std::memory_order_relaxed); }
    // Its gauges and counters; `health` says whether it can be written and has room.
    void register_metrics(MetricsRegistry& registry, const Health& health) const;

  private:
    struct Segment {
        std::string path;
        uint64_t bytes = 0;
        uint64_t unresolved = 0;
        bool open = false;
    };
    WriteAheadLog(const DurabilityConfig& config, size_t max_record_bytes, std::string directory,
                  int lock_fd);
    std::string path_of(uint32_t id) const;
    bool open_segment(std::string& error);
    void close_segment();  // the open one
    bool sync(std::string& error);
    // Closes the open segment without syncing it (after a failed fsync: its records stay for a
    // replay, and the next commit writes to a new file); deletes it if nothing in it is unresolved.
    void give_up_segment();
    // With mutex_ held: removes a closed, resolved segment from the table; returns its path to delete.
    std::string retire_locked(uint32_t id);

    const DurabilityConfig config_;
    const size_t max_record_bytes_;
    const std::string directory_;
    int lock_fd_ = -1;

    // Session thread only.
    int fd_ = -1;
    uint32_t current_ = 0;
    // In every segment this run writes, and in every record's checksum (see wal_format.hpp).
    const uint64_t salt_ = std::random_device{}() * (uint64_t{1} << 32) + std::random_device{}();
    uint32_t committed_segment_ = 0;
    uint64_t current_bytes_ = 0;  // committed bytes of the open segment
    int64_t current_opened_ms_ = 0;
    int64_t last_sync_ms_ = 0;
    bool dirty_ = false;                     // written since the last fsync
    std::atomic<bool> sync_failing_{false};  // the last fsync failed: every commit syncs until one works
    std::function<int(int)> fdatasync_ = [](int fd) { return ::fdatasync(fd); };
    std::string staged_;
    uint64_t staged_count_ = 0;
    std::vector<uint32_t> recovered_;  // segments found at open(), oldest first

    mutable std::mutex mutex_;
    std::map<uint32_t, Segment> segments_;
    uint64_t total_bytes_ = 0;
    std::atomic<uint64_t> fsyncs_{0};
    std::atomic<uint64_t> write_failures_{0};
    std::atomic<uint64_t> sync_failures_{0};
    std::atomic<uint64_t> replayed_{0};
};

}  // namespace plantd
