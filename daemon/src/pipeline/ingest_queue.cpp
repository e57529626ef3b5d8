#include "pipeline/ingest_queue.hpp"

#include <functional>
#include <thread>

namespace plantd {

IngestQueue::IngestQueue(size_t shards, size_t max_messages, size_t max_bytes)
    : max_messages_(max_messages), max_bytes_(max_bytes) {
    for (size_t i = 0; i < shards; ++i)
        shards_.push_back(std::make_unique<Queue>(max_messages / shards + 64));
}

size_t IngestQueue::shard_of(std::string_view topic) const {
    // Every message of one Sparkplug edge node (its own and its devices') goes to one worker, which
    // keeps that node's state: spBv1.0/{group}/{type}/{node}[/{device}] is sharded by group and node.
    constexpr std::string_view sparkplug_prefix = "spBv1.0/";
    if (topic.starts_with(sparkplug_prefix)) {
        const size_t group_end = topic.find('/', sparkplug_prefix.size());
        const size_t type_end =
            group_end == std::string_view::npos ? group_end : topic.find('/', group_end + 1);
        if (type_end != std::string_view::npos) {
            const size_t node_end = topic.find('/', type_end + 1);
            const size_t group_hash = std::hash<std::string_view>{}(topic.substr(0, group_end));
            const size_t node_hash = std::hash<std::string_view>{}(topic.substr(
                type_end + 1, node_end == std::string_view::npos ? node_end : node_end - type_end - 1));
            return (group_hash * 31 + node_hash) % shards_.size();
        }
    }
    return std::hash<std::string_view>{}(topic) % shards_.size();
}

IngestQueue::PushStatus IngestQueue::push(RawMessage& message, std::chrono::microseconds max_wait) {
    // Announce this push before looking at closing_: close() waits for announced pushes, so a message
    // is either refused (and the caller keeps it) or enqueued before the workers see closed().
    in_flight_pushes_.fetch_add(1);
    struct Done {
        std::atomic<int>& count;
        ~Done() { count.fetch_sub(1); }
    } done{in_flight_pushes_};
    if (closing_.load()) return PushStatus::closed;

    const size_t bytes = message.size_bytes();
    // A message larger than the whole byte budget still passes when the queue is empty.
    auto full = [&] {
        return messages_.load(std::memory_order_relaxed) >= max_messages_ ||
               (bytes_.load(std::memory_order_relaxed) + bytes > max_bytes_ && messages_.load() > 0);
    };
    if (full()) {
        const auto deadline = std::chrono::steady_clock::now() + max_wait;
        do {
            if (closing_.load()) return PushStatus::closed;
            if (std::chrono::steady_clock::now() >= deadline) return PushStatus::full;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        } while (full());
    }
    size_t shard = shard_of(message.topic());
    messages_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
    if (!shards_[shard]->enqueue(std::move(message))) {  // only when memory is exhausted
        messages_.fetch_sub(1, std::memory_order_relaxed);
        bytes_.fetch_sub(bytes, std::memory_order_relaxed);
        return PushStatus::full;
    }
    return PushStatus::pushed;
}

bool IngestQueue::has_room(size_t messages, size_t bytes) const {
    const size_t queued = messages_.load(std::memory_order_relaxed);
    if (queued + messages > max_messages_) return false;
    // As in push(): a message larger than the whole byte budget still passes when the queue is empty.
    return bytes_.load(std::memory_order_relaxed) + bytes <= max_bytes_ || (queued == 0 && messages == 1);
}

void IngestQueue::close() {
    closing_.store(true);
    while (in_flight_pushes_.load() > 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
    closed_.store(true);
}

size_t IngestQueue::pop_bulk(size_t shard, RawMessage* out, size_t max, std::chrono::microseconds timeout) {
    return shards_[shard]->wait_dequeue_bulk_timed(out, max, timeout);
}

void IngestQueue::done(const RawMessage& message) {
    messages_.fetch_sub(1, std::memory_order_relaxed);
    bytes_.fetch_sub(message.size_bytes(), std::memory_order_relaxed);
}

void IngestQueue::register_metrics(MetricsRegistry& registry) const {
    registry.add_gauge("plantd_queue_messages",
                       "Messages received and not yet decoded (queued or in a worker's hands).",
                       [this] { return static_cast<double>(size_messages()); });
    registry.add_gauge("plantd_queue_bytes", "Bytes waiting in the ingest queue.",
                       [this] { return static_cast<double>(size_bytes()); });
}

}  // namespace plantd
