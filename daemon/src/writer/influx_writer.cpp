#include "writer/influx_writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

InfluxWriter::InfluxWriter(size_t index, const InfluxConfig& config, Accounting& accounting,
                           WriterStats& stats, Health& health, DeadLetterStore& dead_letters,
                           RateLimitedLog& log, WriterDurability durability)
    : index_(index),
      config_(config),
      accounting_(accounting),
      stats_(stats),
      health_(health),
      dead_letters_(dead_letters),
      log_(log),
      client_(config),
      durability_(std::move(durability)),
      backoff_(config.retry_initial_ms, config.retry_max_ms) {}

InfluxWriter::~InfluxWriter() {
    if (thread_.joinable()) {
        set_deadline(std::chrono::steady_clock::now());
        finish();
        join();
    }
}

void InfluxWriter::start() {
    if (durability_.buffer) {
        // What a previous run left on disk goes first, in its order.
        std::lock_guard lock(mutex_);
        uint64_t points = 0;
        for (auto& entry : durability_.buffer->take_found()) {
            points += entry.lines;
            Destination& destination = destination_locked(entry.destination);
            destination.items.push_back(Item{Batch{}, std::move(entry)});
            ++on_disk_;
        }
        if (points > 0) {
            accounting_.points_recovered.fetch_add(points);
            accounting_.points_buffered.fetch_add(static_cast<int64_t>(points));
            spdlog::info("writer {}: {} points in {} batches from the disk buffer of an earlier run", index_,
                         points, on_disk_);
        }
    }
    heartbeat_ms_ = steady_clock_ms();
    client_.set_progress_hook([this] { heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed); });
    thread_ = std::thread([this] {
        name_this_thread("plantd-write" + std::to_string(index_));
        run();
    });
}

void InfluxWriter::submit(Batch batch) {
    std::unique_lock lock(mutex_);
    while (true) {
        Destination& destination = destination_locked(batch.destination);
        // To disk when its destination is failing, when memory is full, or when older batches of the
        // destination are on disk already (the queue stays in order whatever the medium).
        const bool behind_disk = !destination.items.empty() && destination.items.back().disk;
        if (durability_.buffer && !past_deadline_locked() &&
            (destination.failing || in_memory_ >= config_.max_pending_batches || behind_disk)) {
            DiskBuffer::Entry entry;
            if (spill_locked(batch, entry)) {
                destination.items.push_back(Item{Batch{}, std::move(entry)});
                ++on_disk_;
                changed_.notify_all();
                return;
            }
        }
        if (in_memory_ < config_.max_pending_batches && !behind_disk) {
            destination.items.push_back(Item{std::move(batch), std::nullopt});
            ++in_memory_;
            changed_.notify_all();
            return;
        }
        if (behind_disk && past_deadline_locked()) {
            // Draining: whatever cannot follow its destination's disk queue stays in the log.
            leave_batch_locked(batch);
            return;
        }
        // Backpressure: the disk buffer is full (policy "block") or absent, and memory is full.
        changed_.wait_for(lock, heartbeat_slice);
    }
}

bool InfluxWriter::spill_locked(Batch& batch, DiskBuffer::Entry& entry) {
    while (true) {
        std::string error;
        const auto status = durability_.buffer->store(batch, entry, error);
        if (status == DiskBuffer::StoreStatus::stored) {
            if (buffer_failing_ || health_.buffer_full.exchange(false)) {
                buffer_failing_ = false;
                spdlog::info("writer {}: the disk buffer takes batches again", index_);
            }
            stats_.buffer_spilled_batches.fetch_add(1, std::memory_order_relaxed);
            release_wal(batch);  // the disk buffer holds it now
            return true;
        }
        if (status == DiskBuffer::StoreStatus::failed) {
            stats_.buffer_failures.fetch_add(1, std::memory_order_relaxed);
            if (!buffer_failing_) spdlog::error("writer {}: {}; keeping batches in memory", index_, error);
            buffer_failing_ = true;
            return false;
        }
        // No room: the policy decides.
        if (durability_.policy == BufferFullPolicy::drop_oldest && drop_oldest_locked()) continue;
        if (!health_.buffer_full.exchange(true))
            spdlog::error("writer {}: the disk buffer holds its share of buffer_max_bytes ({} bytes); {}",
                          index_, durability_.buffer->capacity(),
                          durability_.policy == BufferFullPolicy::block
                              ? "not taking more messages until InfluxDB takes some (the broker holds them)"
                              : "and nothing can be dropped");
        return false;
    }
}

bool InfluxWriter::drop_oldest_locked() {
    // The oldest batch on disk that is not being sent.
    Destination* oldest = nullptr;
    size_t oldest_at = 0;
    for (auto& [name, destination] : destinations_) {
        for (size_t i = destination.in_flight ? 1 : 0; i < destination.items.size(); ++i) {
            const auto& disk = destination.items[i].disk;
            if (!disk) continue;
            if (!oldest || disk->sequence < oldest->items[oldest_at].disk->sequence) {
                oldest = &destination;
                oldest_at = i;
            }
            break;  // within a destination, later items are newer
        }
    }
    if (!oldest) return false;
    DiskBuffer::Entry entry = *oldest->items[oldest_at].disk;
    oldest->items.erase(oldest->items.begin() + static_cast<std::ptrdiff_t>(oldest_at));
    --on_disk_;
    auto batch = durability_.buffer->load(entry);
    durability_.buffer->remove(entry);
    stats_.buffer_dropped_batches.fetch_add(1, std::memory_order_relaxed);
    log_.warn("buffer_overflow",
              "writer {}: the disk buffer is full: dropped its oldest batch ({} points for {})", index_,
              entry.lines, entry.destination);
    if (batch) {
        dead_letter_lines(*batch, 0, batch->lines(), RejectReason::buffer_overflow,
                          "the disk buffer was full (buffer_full_policy = drop_oldest)");
    } else {
        // Unreadable: its points can only be counted, not kept.
        accounting_.count_rejected(RejectScope::point, RejectReason::buffer_overflow, "_none", entry.lines);
        accounting_.points_buffered.fetch_sub(static_cast<int64_t>(entry.lines), std::memory_order_relaxed);
    }
    return true;
}

void InfluxWriter::spill_destination_locked(Destination& destination) {
    if (!durability_.buffer) return;
    for (size_t i = destination.in_flight ? 1 : 0; i < destination.items.size(); ++i) {
        Item& item = destination.items[i];
        if (item.disk) continue;
        DiskBuffer::Entry entry;
        if (!spill_locked(item.batch, entry)) return;  // the rest stays in memory, in order
        item.batch = Batch{};
        item.disk = std::move(entry);
        --in_memory_;
        ++on_disk_;
    }
    changed_.notify_all();
}

void InfluxWriter::release_wal(const Batch& batch) {
    if (!durability_.wal) return;
    for (const auto& [segment, count] : batch.wal_refs) durability_.wal->release(segment, count);
}

void InfluxWriter::leave_batch_locked(Batch& batch) {
    if (durability_.wal && !batch.wal_refs.empty()) {
        // Still in the write-ahead log (not released): the next start replays it.
        log_.warn("left_in_wal", "writer {}: {} points stay in the write-ahead log for the next start",
                  index_, batch.lines());
        return;
    }
    dead_letter_lines(batch, 0, batch.lines(), RejectReason::shutdown_unwritten,
                      "InfluxDB did not accept the batch before the shutdown drain timeout");
}

bool InfluxWriter::ready_for(std::string_view destination) const {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    for (const auto& [name, queue] : destinations_) {
        if (queue.in_flight) return false;
        if (queue.items.empty()) continue;
        if (queue.next_try <= now || name == destination) return false;  // something due, or it backs off
    }
    return true;
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
    return in_memory_;
}

uint64_t InfluxWriter::buffered_batches() const {
    std::lock_guard lock(mutex_);
    return on_disk_;
}

uint64_t InfluxWriter::buffered_bytes() const {
    std::lock_guard lock(mutex_);
    return durability_.buffer ? durability_.buffer->bytes() : 0;
}

bool InfluxWriter::past_deadline() const {
    std::lock_guard lock(mutex_);
    return past_deadline_locked();
}

bool InfluxWriter::past_deadline_locked() const {
    return has_deadline_ && std::chrono::steady_clock::now() >= deadline_;
}

InfluxWriter::Destination& InfluxWriter::destination_locked(const std::string& name) {
    Destination& destination = destinations_[name];
    if (!destination.stats) destination.stats = &stats_.destinations.of(name);
    return destination;
}

void InfluxWriter::set_failing_locked(Destination& destination, bool failing) {
    if (destination.failing == failing) return;
    destination.failing = failing;
    destination.stats->failing_writers.fetch_add(failing ? 1 : -1);
    const int now_failing =
        health_.influx_failing_destinations.fetch_add(failing ? 1 : -1) + (failing ? 1 : -1);
    health_.influx_failing.store(now_failing > 0);
    if (now_failing == 0) health_.set_influx_error({});
}

InfluxWriter::Destination* InfluxWriter::next_due(std::chrono::steady_clock::time_point now,
                                                  std::chrono::steady_clock::time_point& wait_until) {
    // Round robin from the destination after the last one sent, so that none starves the others.
    Destination* due = nullptr;
    std::string due_name;
    auto consider = [&](const std::string& name, Destination& destination) {
        if (destination.items.empty() || destination.in_flight) return false;
        if (destination.next_try > now) {
            wait_until = std::min(wait_until, destination.next_try);
            return false;
        }
        due = &destination;
        due_name = name;
        return true;
    };
    for (auto it = destinations_.upper_bound(last_sent_); it != destinations_.end(); ++it)
        if (consider(it->first, it->second)) break;
    if (!due) {
        for (auto it = destinations_.begin(); it != destinations_.end() && it->first <= last_sent_; ++it)
            if (consider(it->first, it->second)) break;
    }
    if (due) last_sent_ = due_name;
    return due;
}

void InfluxWriter::leave_locked() {
    for (auto& [name, destination] : destinations_) {
        spill_destination_locked(destination);
        for (auto it = destination.items.begin(); it != destination.items.end();) {
            if (it->disk) {
                ++it;
                continue;
            }
            leave_batch_locked(it->batch);
            it = destination.items.erase(it);
            --in_memory_;
        }
    }
    changed_.notify_all();
}

void InfluxWriter::run() {
    std::unique_lock lock(mutex_);
    while (true) {
        heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
        const auto now = std::chrono::steady_clock::now();
        if (past_deadline_locked()) {
            // Draining and out of time: nothing more is sent; what is on disk stays for the next start.
            leave_locked();
            if (finishing_) return;
            changed_.wait_for(lock, heartbeat_slice);
            continue;
        }
        auto wait_until = now + heartbeat_slice;
        if (Destination* destination = next_due(now, wait_until)) {
            send_front(last_sent_, *destination, lock);
            continue;
        }
        if (finishing_ && in_memory_ == 0 && on_disk_ == 0) return;
        changed_.wait_until(lock, wait_until);
    }
}

void InfluxWriter::send_front(const std::string& name, Destination& destination,
                              std::unique_lock<std::mutex>& lock) {
    destination.in_flight = true;
    Item& front = destination.items.front();
    std::optional<DiskBuffer::Entry> disk = front.disk;
    Batch batch = disk ? Batch{} : std::move(front.batch);
    lock.unlock();
    Sent sent = Sent::resolved;
    int64_t retry_after_ms = -1;
    bool unreadable = false;
    if (disk) {
        auto loaded = durability_.buffer->load(*disk);
        if (loaded) {
            batch = std::move(*loaded);
        } else {
            unreadable = true;
            stats_.buffer_failures.fetch_add(1, std::memory_order_relaxed);
            spdlog::error("writer {}: disk buffer: {}; set aside, its {} points cannot be sent", index_,
                          loaded.error(), disk->lines);
        }
    }
    if (!unreadable) {
        try {
            sent = deliver(batch, retry_after_ms);
        } catch (const std::exception& e) {
            // Never expected (the client reports errors as values); keep the data accounted for.
            stats_.internal_errors.fetch_add(1);
            spdlog::error("writer {}: unexpected exception: {}", index_, e.what());
            dead_letter_lines(batch, 0, batch.lines(), RejectReason::shutdown_unwritten, e.what());
            sent = Sent::resolved;
        }
    }
    lock.lock();
    destination.in_flight = false;
    if (sent == Sent::resolved) {
        if (disk) {
            if (unreadable) {
                durability_.buffer->set_aside(*disk);
                accounting_.count_rejected(RejectScope::point, RejectReason::shutdown_unwritten, "_none",
                                           disk->lines);
                accounting_.points_buffered.fetch_sub(static_cast<int64_t>(disk->lines),
                                                      std::memory_order_relaxed);
            } else {
                durability_.buffer->remove(*disk);
            }
            --on_disk_;
        } else {
            release_wal(batch);
            --in_memory_;
        }
        destination.items.pop_front();
        destination.attempt = 0;
        destination.next_try = {};
        if (destination.failing) {
            spdlog::info("writer {}: InfluxDB accepts writes to {} again", index_, name);
            set_failing_locked(destination, false);
        }
    } else {
        // Failed: this destination waits for its backoff while the others go on; its batches move to
        // the disk buffer (this one first, it is the oldest).
        if (!disk) destination.items.front().batch = std::move(batch);
        set_failing_locked(destination, true);
        destination.next_try = std::chrono::steady_clock::now() +
                               std::chrono::milliseconds(backoff_ms(destination.attempt++, retry_after_ms));
        spill_destination_locked(destination);
    }
    changed_.notify_all();
}

void InfluxWriter::register_metrics(MetricsRegistry& registry) const {
    registry.add_gauge(fmt::format("plantd_writer_pending_batches{{writer=\"{}\"}}", index_),
                       "Batches queued for a writer.", [this] { return static_cast<double>(pending()); });
    registry.add_gauge(fmt::format("plantd_buffer_batches{{writer=\"{}\"}}", index_),
                       "Batches waiting in the disk buffer for InfluxDB.",
                       [this] { return static_cast<double>(buffered_batches()); });
    registry.add_gauge(fmt::format("plantd_buffer_bytes{{writer=\"{}\"}}", index_),
                       "Bytes of the disk buffer.", [this] { return static_cast<double>(buffered_bytes()); });
}

}  // namespace plantd
