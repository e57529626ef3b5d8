#pragma once
// From the ingest workers to the rule runner: the records of accepted messages whose factory has
// rules, with only the metrics some rule uses (numbers and booleans). Bounded and never waiting: when
// the runner falls behind by queue_max_records, records are dropped for the rules (counted, and shown
// on /health) while ingestion goes on. One producer token per worker keeps each worker's order.
#include <concurrentqueue/blockingconcurrentqueue.h>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control/metrics_registry.hpp"
#include "decoding/record.hpp"
#include "decoding/record_feed.hpp"
#include "rules/rule_set.hpp"

namespace plantd {

struct RuleRecord {
    std::string factory_id;
    std::string device_id;
    int64_t arrived_ms = 0;
    int64_t sample_ms = 0;
    std::vector<std::pair<std::string, double>> samples;
    std::string via;  // the gateway (or Sparkplug edge node) it came through; "" = its own topic
};

class RuleFeed final : public RecordFeed {
  public:
    explicit RuleFeed(size_t max_records);

    // The runner publishes what its current rules need.
    void set_interest(std::shared_ptr<const rules::RuleInterest> interest);
    std::unique_ptr<moodycamel::ProducerToken> make_token();
    // A worker's port: offers with its own producer token.
    std::unique_ptr<RecordFeedPort> open_port() override;

    // A worker: the records of one accepted message.
    void offer(std::string_view factory_id, const DecodedMessage& message, int64_t arrived_ms,
               moodycamel::ProducerToken& token);
    // The runner: up to `max` records, waiting at most `wait_ms` for the first.
    size_t take(std::vector<RuleRecord>& out, size_t max, int64_t wait_ms);

    size_t size() const { return size_.load(std::memory_order_relaxed); }
    uint64_t offered() const { return offered_.load(std::memory_order_relaxed); }
    uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
    void register_metrics(MetricsRegistry& registry) const;

  private:
    size_t max_records_;
    moodycamel::BlockingConcurrentQueue<RuleRecord> queue_;
    std::shared_ptr<const rules::RuleInterest> interest_;  // atomic access
    std::atomic<size_t> size_{0};
    std::atomic<uint64_t> offered_{0};
    std::atomic<uint64_t> dropped_{0};
};

}  // namespace plantd
