#pragma once
// A worker owns one shard of the ingest queue: it routes each message's topic, decodes and validates
// the payload, encodes accepted records as line protocol into per-destination batches and hands
// full or aged batches to its writer. Rejections are counted, logged (rate-limited) and dead-lettered.
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "control/metrics.hpp"
#include "control/rate_limited_log.hpp"
#include "decoding/payload_decoder.hpp"
#include "durability/dead_letter_store.hpp"
#include "pipeline/factory_rate_limiter.hpp"
#include "pipeline/ingest_queue.hpp"
#include "registry/device_registry.hpp"
#include "writer/batch.hpp"
#include "writer/influx_writer.hpp"

namespace plantd {

struct WorkerServices {
    const Config& config;
    const TopicRouter& router;
    IngestQueue& queue;
    Metrics& metrics;
    DeadLetterStore& dead_letters;
    RateLimitedLog& log;
    DeviceRegistry* registry = nullptr;          // null: no registry checks (every valid topic is accepted)
    FactoryRateLimiter* rate_limiter = nullptr;  // null: no per-factory rate limits
};

// The InfluxDB database (v1) or bucket (v2) of a factory: "{factory_id}" in the name is replaced.
std::string destination_for(const InfluxConfig& config, std::string_view factory_id);

class Worker {
  public:
    Worker(size_t shard, WorkerServices services, InfluxWriter& writer);
    ~Worker();

    void start();
    // Returns once the queue is closed and drained and every batch was handed to the writer.
    void join();
    // Steady-clock milliseconds of the last loop turn (the watchdog checks progress with it).
    int64_t heartbeat_ms() const { return heartbeat_ms_.load(std::memory_order_relaxed); }
    // Alive: the loop turned within `max_age_ms`, or it waits on a writer that is itself alive
    // (backpressure while InfluxDB is down is not a hang).
    bool alive(int64_t now_ms, int64_t max_age_ms) const;

    // Decodes one message into the open batches; never waits.
    void process(const RawMessage& message);
    // Hands batches that reached batch_max_lines or batch_max_bytes to the writer (may wait).
    void flush_full();
    // Hands every open batch to the writer.
    void flush_all();

  private:
    void run();
    void reject_message(const RawMessage& message, std::string_view factory, const Rejection& rejection);
    void dead_letter_partial(const RawMessage& message, std::string_view factory);
    // Drops the records whose factory or device the registry does not accept (as record rejections,
    // or the whole message) and notes each kept record's device tags. False: the message is rejected.
    bool apply_registry(const RegistrySnapshot& snapshot, const RawMessage& message, const TopicMatch& match);
    Batch& batch_for(std::string_view factory);
    void flush_aged();
    void hand_to_writer(Batch& batch);

    size_t shard_;
    WorkerServices services_;
    InfluxWriter& writer_;
    PayloadDecoder decoder_;
    DecodedMessage decoded_;
    std::string escaped_measurement_;
    bool per_factory_destination_;
    std::vector<Batch> open_batches_;
    std::vector<const ExtraTags*> record_tags_;  // per decoded record, from the registry
    std::atomic<int64_t> heartbeat_ms_{0};
    std::atomic<bool> waiting_on_writer_{false};
    std::thread thread_;
};

}  // namespace plantd
