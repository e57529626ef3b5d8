#pragma once
// A worker owns one shard of the ingest queue: it routes each message's topic, decodes and validates
// the payload, encodes accepted records as line protocol into per-destination batches and hands
// full or aged batches to its writer. Rejections are counted, logged (rate-limited) and dead-lettered.
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "control/accounting.hpp"
#include "control/metrics_registry.hpp"
#include "control/rate_limited_log.hpp"
#include "core/batch.hpp"
#include "core/batch_sink.hpp"
#include "decoding/payload_format.hpp"
#include "decoding/record_feed.hpp"
#include "durability/dead_letter_store.hpp"
#include "durability/write_ahead_log.hpp"
#include "pipeline/factory_rate_limiter.hpp"
#include "pipeline/field_types.hpp"
#include "pipeline/ingest_queue.hpp"
#include "registry/admission.hpp"
#include "sparkplug/sparkplug_commands.hpp"
#include "sparkplug/sparkplug_host.hpp"
#include "sparkplug/sparkplug_records.hpp"
#include "util/service.hpp"

namespace plantd {

struct WorkerServices {
    const Config& config;
    const TopicRouter& router;
    IngestQueue& queue;
    Accounting& accounting;
    DeadLetterStore& dead_letters;
    RateLimitedLog& log;
    Admission* registry = nullptr;               // null: no registry checks (every valid topic is accepted)
    FactoryRateLimiter* rate_limiter = nullptr;  // null: no per-factory rate limits
    RecordFeed* rules = nullptr;                 // null: no rules
    WriteAheadLog* wal = nullptr;                // null: durability "memory"
    FieldTypes* field_types = nullptr;           // null: no check (a registry types the fields instead)
    sparkplug::CommandSink* sparkplug_commands = nullptr;  // null: rebirths are counted, not asked for
};

// The InfluxDB database (v1) or bucket (v2) of a factory: "{factory_id}" in the name is replaced.
std::string destination_for(const InfluxConfig& config, std::string_view factory_id);

class Worker final : public Service {
  public:
    Worker(size_t shard, WorkerServices services, BatchSink& writer);
    ~Worker();

    void start() override;
    // A worker stops when its queue is closed and drained (the queue stops before it): nothing to ask.
    void stop(Deadline) override {}
    // Returns once the queue is closed and drained and every batch was handed to the writer.
    void join() override;
    // Steady-clock milliseconds of the last loop turn (the watchdog checks progress with it).
    int64_t heartbeat_ms() const { return heartbeat_ms_.load(std::memory_order_relaxed); }
    // Alive: the loop turned within `max_age_ms`, or it waits on a writer that is itself alive
    // (backpressure while InfluxDB is down is not a hang).
    bool alive(int64_t now_ms, int64_t max_age_ms) const override;

    enum class Outcome { done, held };
    // Decodes one message into the open batches; never waits. `held`: its devices are being looked
    // up, and the caller keeps the message for another try (retry = it is that try).
    Outcome process(const RawMessage& message, bool retry = false);
    // Messages held for a registry lookup now.
    size_t held() const { return held_count_.load(std::memory_order_relaxed); }
    // Its gauge and counters, labelled with its shard where they are its own.
    void register_metrics(MetricsRegistry& registry) const;
    // Hands batches that reached batch_max_lines or batch_max_bytes to the writer (may wait).
    void flush_full();
    // Hands every open batch to the writer.
    void flush_all();

  private:
    void run();
    // process(), with the unforeseen (an exception) turned into a counted rejection.
    // Also releases the message's write-ahead log entry when it ends up in no batch.
    Outcome process_guarded(const RawMessage& message, bool retry);
    Outcome process_unreleased(const RawMessage& message, bool retry);
    struct FactoryAdmission {
        std::shared_ptr<const RegistrySnapshot> snapshot;  // kept until the records are encoded
        const RegistryFactory* factory = nullptr;          // the registry's, when there is one
    };
    // The factory of a message, before any decoding: known (allowed_factories or the registry), enabled,
    // within its rate limit (not charged again on a retry). False: the message was rejected.
    bool admit_factory(const RawMessage& message, std::string_view factory_id, bool retry,
                       FactoryAdmission& admission);
    // The records in decoded_: devices and parameters (the registry) or field types, then into the
    // destination's batch, to the rules, and the ledger.
    Outcome admit_decoded(const RawMessage& message, const TopicMatch& match,
                          const FactoryAdmission& admission);
    void reject_oversize(const RawMessage& message, std::string_view factory_id);
    void reject_message(const RawMessage& message, std::string_view factory, const Rejection& rejection);
    void dead_letter_partial(const RawMessage& message, std::string_view factory);
    // Drops the records whose factory or device the registry does not accept (as record rejections,
    // or the whole message) and notes each kept record's device tags. False: the message is rejected.
    enum class RegistryOutcome { accepted, rejected, held };
    RegistryOutcome apply_registry(const RegistrySnapshot& snapshot, const RawMessage& message,
                                   const TopicMatch& match);
    RegistryOutcome hold(const RawMessage& message, const TopicMatch& match);
    // Looks up (or discovers) the parameter of every field into field_answers_; false when one of
    // them waits for MySQL to decide its type.
    bool parameters_decided(const RegistryFactory& factory, std::string_view factory_id);
    // Fits every field to its answer; fields that do not fit are rejected one by one, and records
    // left without fields too.
    void apply_parameters(std::string_view factory_id);
    // Tries the held messages again when the registry has news (or once a second); `final`: the last
    // try before shutdown, after which nothing is held.
    void retry_held(bool final);
    Batch& batch_for(std::string_view factory, std::string_view registry_destination);
    std::string_view destination_of(std::string_view factory, std::string_view registry_destination);
    // Without a registry: fields whose type differs from the first one seen in the destination are
    // rejected one by one (InfluxDB would refuse the whole line).
    void apply_field_types(std::string_view destination);
    // Rejects the fields `problem_of` objects to, one by one, and the records left without fields.
    template <class ProblemOf>
    void keep_fitting_fields(ProblemOf&& problem_of);
    void flush_aged();
    bool has_open_lines() const;
    // Messages decided on, by factory label: counted here and added to the ledger once per loop turn
    // (one lock per turn, not one per message).
    void tally_factory(std::string_view label);
    // `factory` if the registry (or allowed_factories) knows it, else the label of unknown factories.
    std::string_view verified_factory(std::string_view factory) const;
    void flush_factory_tally();
    void hand_to_writer(Batch& batch);

    size_t shard_;
    WorkerServices services_;
    BatchSink& writer_;
    std::unique_ptr<PayloadFormat> format_;  // the payload's wire format (JSON)
    DecodedMessage decoded_;
    std::string escaped_measurement_;
    bool per_factory_destination_;
    std::vector<Batch> open_batches_;
    size_t flush_start_ = 0;                      // where flush_aged starts looking (turns round)
    std::vector<const ExtraTags*> record_tags_;   // per decoded record, from the registry
    std::vector<ParameterAnswer> field_answers_;  // per decoded field, from the registry
    std::string default_destination_;
    std::string templated_destination_;            // scratch for destination_of()
    std::unique_ptr<FieldTypeCache> field_types_;  // without a registry
    std::vector<std::pair<std::string, uint64_t>> factory_tally_;
    std::vector<std::string> allowed_factories_;  // sorted; empty: any (without a registry)
    // Sparkplug B ([sparkplug] enabled): this worker's edge nodes (the queue gives all messages of a
    // node to one worker), the messages the host holds for its reorder window (by token), and the
    // factory of each listed group.
    struct Sparkplug {
        explicit Sparkplug(sparkplug::HostLimits limits) : host(limits) {}
        sparkplug::SparkplugHost host;
        sparkplug::HostOutput out;
        sparkplug::RecordRules rules;
        sparkplug::MessageRecords scratch;  // the records of the message being taken
        sparkplug::Payload payload;         // the message being decoded (its capacity kept)
        std::unordered_map<uint64_t, RawMessage> waiting;
        std::map<std::string, std::string, std::less<>> group_factories;
        std::set<std::string, std::less<>> mapped_factories;  // the factories group_factories names
        uint64_t next_token = 1;
        int64_t last_tick_ms = 0;
        std::atomic<size_t> nodes{0};
        std::atomic<size_t> waiting_count{0};
        std::atomic<uint64_t> rebirths{0};
    };
    std::unique_ptr<Sparkplug> sparkplug_;
    // A Sparkplug message is taken by the host once; when its devices wait for the registry, its
    // records wait with it (retried from them, not decoded again).
    struct HeldMessage {
        RawMessage message;
        std::unique_ptr<sparkplug::MessageRecords> sparkplug;
    };
    const sparkplug::MessageRecords* retrying_records_ = nullptr;  // during a retry of such a message
    void init_sparkplug();
    void register_sparkplug_metrics(MetricsRegistry& registry) const;
    Outcome process_sparkplug(const RawMessage& message, bool retry);
    // The tokens of the messages in the host's output, in arrival order; and its rebirth requests sent.
    std::vector<uint64_t> sparkplug_output_tokens() const;
    void send_rebirths();
    void forget_unread(const sparkplug::Topic& topic, bool ask_rebirth = true);  // the host did not see it
    // What the host made of the message `token` (and of held messages it let go), into batches.
    void take_sparkplug_output(const RawMessage& message, uint64_t token, std::string_view factory_id,
                               const FactoryAdmission& admission);
    Outcome admit_sparkplug(const RawMessage& message, std::string_view factory_id,
                            const FactoryAdmission& admission, const sparkplug::MessageRecords& records);
    // Held messages whose reorder window passed (`flush`: all of them, at the stop).
    void tick_sparkplug(bool flush);
    void hold_with_records(RawMessage message, std::unique_ptr<sparkplug::MessageRecords> records);
    std::string_view factory_of_group(std::string_view group_id) const;  // "" when not allowed
    // Messages waiting for registry lookups, in arrival order, and their devices ("factory/device"):
    // a later message of a held device waits behind it (per-device order).
    std::deque<HeldMessage> held_;
    std::unordered_set<std::string> held_devices_;
    std::string device_key_;  // scratch "factory/device"
    size_t hold_capacity_ = 0;
    uint64_t observed_generation_ = 0;
    uint64_t held_generation_ = 0;
    int64_t last_retry_ms_ = 0;
    bool final_pass_ = false;
    std::atomic<size_t> held_count_{0};
    std::atomic<uint64_t> holds_{0};  // times a message was held
    std::atomic<uint64_t> internal_errors_{0};
    std::atomic<int64_t> heartbeat_ms_{0};
    std::atomic<bool> waiting_on_writer_{false};
    bool batched_ =
        false;  // the message being processed put lines into a batch (which then holds its log entry)
    std::unique_ptr<RecordFeedPort> rule_port_;  // this worker's order into the rule feed
    std::thread thread_;
};

}  // namespace plantd
