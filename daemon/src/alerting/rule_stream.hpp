#pragma once
// Cluster mode (docs/SCALING.md): every instance hands the records its workers accepted for the rules
// to the factory's stream in Redis ({prefix}:cluster:{F}:records), whichever instance owns the
// factory; the owner reads its factories' streams. So each record is evaluated once, by the owner,
// in one order, and a new owner goes on from the position the last one saved with the state: nothing
// a hand-over leaves in the stream is lost, and nothing evaluated and saved is evaluated again.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "alerting/rule_feed.hpp"
#include "common/result.hpp"
#include "config/config.hpp"
#include "control/metrics_registry.hpp"
#include "registry/redis_connection.hpp"

namespace plantd {

// A record as a stream entry's value (the factory is the stream's).
std::string encode_rule_record(const RuleRecord& record);
std::optional<RuleRecord> decode_rule_record(std::string_view factory_id, std::string_view text);
std::string rule_stream_key(const RegistryConfig& config, std::string_view factory_id);

// The feed's records to the streams, on a thread of its own.
class RuleRecordRelay {
  public:
    // `observe`: called on the relay's thread with each batch taken from the feed, before it is sent.
    using Observer = std::function<void(const std::vector<RuleRecord>&)>;
    RuleRecordRelay(const Config& config, RuleFeed& feed, Observer observe = {});
    ~RuleRecordRelay();

    void start();
    // After the workers stopped: hands on what the feed still holds (trying for `drain_ms` at most).
    void stop(int64_t drain_ms);

    uint64_t relayed() const { return relayed_.load(); }
    void register_metrics(MetricsRegistry& registry) const;

  private:
    void run();
    void observe(const std::vector<RuleRecord>& batch);
    // True once every record of `batch` is in Redis.
    bool send(const std::vector<RuleRecord>& batch);

    const Config& config_;
    RuleFeed& feed_;
    Observer observe_;
    std::unique_ptr<RedisConnection> redis_;
    std::set<std::string> announced_;  // factories added to {prefix}:cluster:factories
    std::atomic<bool> stopping_{false};
    std::atomic<uint64_t> relayed_{0};
    std::atomic<uint64_t> failures_{0};
    std::atomic<bool> failing_{false};
    std::thread thread_;
};

// The owner's side: reads the streams of the factories it follows (the rule runner's thread).
class RuleStreamReader {
  public:
    explicit RuleStreamReader(const Config& config);

    // From just after `position` ("" = the start of the stream).
    void follow(const std::string& factory_id, std::string position);
    void unfollow(const std::string& factory_id);
    // The last entry handed out, "" if none yet.
    std::string position(const std::string& factory_id) const;
    // Up to `max` records of the followed streams, waiting at most `wait_ms` for the first.
    Result<size_t> take(std::vector<RuleRecord>& out, size_t max, int64_t wait_ms);
    uint64_t skipped() const { return skipped_; }
    // The last take() filled `max` from some stream: more is waiting there.
    bool more() const { return more_; }

  private:
    const Config& config_;
    std::unique_ptr<RedisConnection> redis_;
    std::map<std::string, std::string> positions_;  // factory -> last entry id handed out
    uint64_t skipped_ = 0;                          // entries that did not decode
    bool more_ = false;
    // Streams that filled their share last time; all of them after a follow() (a stream just taken
    // over may hold a backlog).
    size_t busy_streams_ = SIZE_MAX;
};

}  // namespace plantd
