#pragma once
// The hand-off from the MQTT receive thread to the workers: one lock-free queue per worker shard.
// A topic always maps to the same shard, so each device's messages stay in order. Memory is bounded
// by message count and bytes: when full, push() refuses, the receive thread stops reading (and does
// not acknowledge), and the broker holds the rest (backpressure instead of loss).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>

#include "control/metrics_registry.hpp"
#include "core/raw_message.hpp"
#include "util/service.hpp"

namespace plantd {

class IngestQueue final : public Service {
  public:
    IngestQueue(size_t shards, size_t max_messages, size_t max_bytes);

    size_t shard_count() const { return shards_.size(); }
    size_t shard_of(std::string_view topic) const;

    enum class PushStatus { pushed, full, closed };
    // Takes the message (moving from it) if there is room within `max_wait`. Otherwise the caller
    // keeps it: `full` (try again; meanwhile the broker holds the backlog) or `closed`.
    PushStatus push(RawMessage& message, std::chrono::microseconds max_wait);
    // Whether `messages` more messages of `bytes` in all would fit now. The receive thread is the
    // only producer, so room it sees stays until it pushes (workers only make more).
    bool has_room(size_t messages, size_t bytes) const;
    // Takes up to `max` messages of one shard, waiting at most `timeout` for the first. They still
    // count against the bound (and in size_messages()) until the worker calls done() for each.
    size_t pop_bulk(size_t shard, RawMessage* out, size_t max, std::chrono::microseconds timeout);
    void done(const RawMessage& message);

    // After close(), push() refuses (returns `closed`, the caller keeps the message) and pop_bulk()
    // drains what is left. close() returns once no push() is under way any more.
    void close();
    // As a service: nothing to start; stopping closes it (after the subscriber, before the workers).
    void start() override {}
    void stop(Deadline) override { close(); }
    bool closed() const { return closed_.load(); }
    // Messages received and not yet decoded: queued or in a worker's hands.
    size_t size_messages() const { return messages_.load(std::memory_order_relaxed); }
    size_t size_bytes() const { return bytes_.load(std::memory_order_relaxed); }
    void register_metrics(MetricsRegistry& registry) const;

  private:
    using Queue = moodycamel::BlockingConcurrentQueue<RawMessage>;
    std::vector<std::unique_ptr<Queue>> shards_;
    size_t max_messages_;
    size_t max_bytes_;
    std::atomic<size_t> messages_{0};
    std::atomic<size_t> bytes_{0};
    std::atomic<bool> closing_{false};
    std::atomic<bool> closed_{false};
    std::atomic<int> in_flight_pushes_{0};
};

}  // namespace plantd
