#include "alerting/rule_feed.hpp"

#include <chrono>
#include <limits>

namespace plantd {

RuleFeed::RuleFeed(size_t max_records) : max_records_(max_records) {}

void RuleFeed::set_interest(std::shared_ptr<const rules::RuleInterest> interest) {
    std::atomic_store(&interest_, std::move(interest));
}

std::unique_ptr<moodycamel::ProducerToken> RuleFeed::make_token() {
    return std::make_unique<moodycamel::ProducerToken>(queue_);
}

namespace {
class TokenPort final : public RecordFeedPort {
  public:
    explicit TokenPort(RuleFeed& feed) : feed_(feed), token_(feed.make_token()) {}
    void offer(std::string_view factory_id, const DecodedMessage& message, int64_t arrived_ms) override {
        feed_.offer(factory_id, message, arrived_ms, *token_);
    }

  private:
    RuleFeed& feed_;
    std::unique_ptr<moodycamel::ProducerToken> token_;
};
}  // namespace

std::unique_ptr<RecordFeedPort> RuleFeed::open_port() {
    return std::make_unique<TokenPort>(*this);
}

void RuleFeed::offer(std::string_view factory_id, const DecodedMessage& message, int64_t arrived_ms,
                     moodycamel::ProducerToken& token) {
    auto interest = std::atomic_load(&interest_);
    if (!interest || !interest->wants_factory(factory_id)) return;
    for (const Record& record : message.records) {
        if (record.historical) continue;  // rule state moves forwards only
        offered_.fetch_add(1, std::memory_order_relaxed);
        if (size_.load(std::memory_order_relaxed) >= max_records_) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        RuleRecord out;
        out.factory_id.assign(factory_id);
        out.device_id.assign(record.device_id);
        out.arrived_ms = arrived_ms;
        out.sample_ms = record.timestamp_ms;
        if (message.topic.kind == TopicKind::gateway) out.via.assign(message.topic.source_id);
        for (uint32_t i = 0; i < record.field_count; ++i) {
            const Field& field = message.field(record, i);
            if (!interest->wants_metric(factory_id, field.name)) continue;
            // A text where a rule wants a number: not a number, which the rule's on_missing decides.
            const double value = field.kind == FieldKind::string    ? std::numeric_limits<double>::quiet_NaN()
                                 : field.kind == FieldKind::boolean ? (field.boolean ? 1.0 : 0.0)
                                                                    : field.number;
            out.samples.emplace_back(field.name, value);
        }
        size_.fetch_add(1, std::memory_order_relaxed);
        if (!queue_.enqueue(token, std::move(out))) {
            size_.fetch_sub(1, std::memory_order_relaxed);
            dropped_.fetch_add(1, std::memory_order_relaxed);
        }
    }
}

size_t RuleFeed::take(std::vector<RuleRecord>& out, size_t max, int64_t wait_ms) {
    out.resize(max);
    size_t n = queue_.wait_dequeue_bulk_timed(out.begin(), max, std::chrono::milliseconds(wait_ms));
    out.resize(n);
    size_.fetch_sub(n, std::memory_order_relaxed);
    return n;
}

}  // namespace plantd
