#include "pipeline/worker.hpp"

#include "common/identifiers.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include <spdlog/spdlog.h>

#include "decoding/decoder_text.hpp"
#include "encoding/line_protocol.hpp"
#include "util/clock.hpp"
#include "util/thread_name.hpp"

namespace plantd {

namespace {

constexpr size_t bulk_size = 256;
constexpr std::string_view identifier_rule = " (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)";

}  // namespace

std::string destination_for(const InfluxConfig& config, std::string_view factory_id) {
    std::string name = config.api == InfluxApi::v1 ? config.database : config.bucket;
    constexpr std::string_view placeholder = "{factory_id}";
    for (size_t at = name.find(placeholder); at != std::string::npos; at = name.find(placeholder, at)) {
        name.replace(at, placeholder.size(), factory_id);
        at += factory_id.size();
    }
    return name;
}

Worker::Worker(size_t shard, WorkerServices services, BatchSink& writer)
    : shard_(shard),
      services_(services),
      writer_(writer),
      format_(make_json_format(DecoderLimits{.max_payload_bytes = services.config.ingest.max_payload_bytes,
                                             .max_future_skew_ms = services.config.ingest.max_future_skew_ms,
                                             .max_past_age_ms = services.config.ingest.max_past_age_ms})) {
    append_escaped_measurement(escaped_measurement_, services_.config.influxdb.measurement);
    if (services_.rules) rule_port_ = services_.rules->open_port();
    if (services_.field_types && !services_.registry)
        field_types_ = std::make_unique<FieldTypeCache>(*services_.field_types);
    const auto& influx = services_.config.influxdb;
    per_factory_destination_ =
        (influx.api == InfluxApi::v1 ? influx.database : influx.bucket).find("{factory_id}") !=
        std::string::npos;
    default_destination_ = destination_for(influx, "");
    allowed_factories_.assign(services_.config.ingest.allowed_factories.begin(),
                              services_.config.ingest.allowed_factories.end());
    std::sort(allowed_factories_.begin(), allowed_factories_.end());
    const size_t workers = static_cast<size_t>(std::max<int64_t>(1, services_.config.ingest.workers));
    hold_capacity_ = std::max<size_t>(1, services_.config.registry.hold_max_messages / workers);
    heartbeat_ms_ = steady_clock_ms();
    init_sparkplug();
}

Worker::~Worker() {
    join();
}

void Worker::start() {
    thread_ = std::thread([this] {
        name_this_thread("plantd-work" + std::to_string(shard_));
        run();
    });
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

void Worker::run() {
    std::vector<RawMessage> messages(bulk_size);
    const auto idle_wait = std::chrono::milliseconds(
        std::clamp<int64_t>(services_.config.influxdb.flush_interval_ms / 4, 1, 100));
    const auto linger_wait =
        std::chrono::milliseconds(std::max<int64_t>(services_.config.influxdb.batch_linger_ms, 1));
    // While messages flow, poll with a short sleep so that they arrive in bulks: waking on every
    // message costs more (semaphore spin, context switch) than decoding it. Block only when idle.
    constexpr auto busy_poll = std::chrono::microseconds(1000);
    constexpr int idle_polls_before_blocking = 20;
    int idle_polls = idle_polls_before_blocking;
    while (true) {
        heartbeat_ms_.store(steady_clock_ms(), std::memory_order_relaxed);
        bool closed = services_.queue.closed();  // read before popping: nothing is pushed after close
        if (services_.registry && !closed && !services_.registry->ready()) {
            // No registry yet (MySQL down at start-up): nothing can be checked, so nothing is taken;
            // the queue fills and the broker holds the rest until the registry loads.
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
        }
        size_t n = services_.queue.pop_bulk(shard_, messages.data(), bulk_size, std::chrono::microseconds(0));
        if (n == 0 && !closed) {
            if (idle_polls < idle_polls_before_blocking) {
                ++idle_polls;
                std::this_thread::sleep_for(busy_poll);
            } else {
                // An open batch is looked at again after its linger, not only after the idle wait.
                n = services_.queue.pop_bulk(shard_, messages.data(), bulk_size,
                                             has_open_lines() ? std::min(idle_wait, linger_wait) : idle_wait);
            }
        }
        if (n > 0) idle_polls = 0;
        retry_held(false);
        for (size_t i = 0; i < n; ++i) {
            const Outcome outcome = process_guarded(messages[i], false);
            services_.queue.done(messages[i]);
            if (outcome == Outcome::held) {
                held_.push_back({std::move(messages[i]), nullptr});  // the hold has its own bound
                held_count_.store(held_.size(), std::memory_order_relaxed);
                holds_.fetch_add(1, std::memory_order_relaxed);
            }
            messages[i] = RawMessage{};  // release the payload now
            // Only now may the hand-off wait (backpressure): the message is fully accounted for.
            flush_full();
        }
        if (sparkplug_) tick_sparkplug(closed && n == 0);
        flush_aged();
        if (closed && n == 0) {
            // Lookups in flight are usually answered within milliseconds: give them a moment (bounded,
            // within the drain) before what is still held is dead-lettered.
            const int64_t until = steady_clock_ms() + 2'000;
            while (!held_.empty() && services_.registry && services_.registry->pending_lookups() > 0 &&
                   steady_clock_ms() < until) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                retry_held(false);
            }
            retry_held(true);
            break;
        }
        if (n > 0 && n < bulk_size) std::this_thread::sleep_for(busy_poll);  // let the next bulk gather
    }
    flush_all();
    flush_factory_tally();
}

void Worker::retry_held(bool final) {
    if (held_.empty()) return;
    const int64_t now = steady_clock_ms();
    const uint64_t generation = services_.registry ? services_.registry->generation() : 0;
    if (!final && generation == held_generation_ && now - last_retry_ms_ < 1'000) return;
    last_retry_ms_ = now;
    held_generation_ = generation;
    final_pass_ = final;
    std::deque<HeldMessage> retry;
    retry.swap(held_);
    held_devices_.clear();
    for (HeldMessage& entry : retry) {
        retrying_records_ = entry.sparkplug.get();
        const Outcome outcome = process_guarded(entry.message, true);
        retrying_records_ = nullptr;
        if (outcome == Outcome::held) held_.push_back(std::move(entry));
        entry = HeldMessage{};
        flush_full();
    }
    held_count_.store(held_.size(), std::memory_order_relaxed);
}

Worker::Outcome Worker::process_guarded(const RawMessage& message, bool retry) {
    batched_ = false;
    Outcome outcome = process_unreleased(message, retry);
    // Resolved without a line in a batch (rejected): its log entry is done with.
    if (outcome == Outcome::done && !batched_ && services_.wal) services_.wal->release(message.wal_segment);
    return outcome;
}

Worker::Outcome Worker::process_unreleased(const RawMessage& message, bool retry) {
    try {
        return process(message, retry);
    } catch (const std::exception& e) {
        // Decoding reports errors as values; this only guards against the unforeseen.
        internal_errors_.fetch_add(1);
        spdlog::error("worker {}: unexpected exception: {}", shard_, e.what());
        reject_message(message, "",
                       Rejection{RejectReason::malformed_json,
                                 fmt::format("internal error while decoding: {}", e.what())});
        return Outcome::done;
    }
}

Worker::Outcome Worker::process(const RawMessage& message, bool retry) {
    const std::string_view topic = message.topic();
    if (sparkplug_ && topic.starts_with(sparkplug::namespace_prefix) &&
        topic.size() > sparkplug::namespace_prefix.size() && topic[sparkplug::namespace_prefix.size()] == '/')
        return process_sparkplug(message, retry);
    TopicMatch match;
    TopicError topic_error = services_.router.route(topic, match);
    if (topic_error != TopicError::none) {
        std::string_view factory = topic_error == TopicError::invalid_source_id
                                       ? verified_factory(match.factory_id)
                                       : std::string_view{};
        std::string detail;
        switch (topic_error) {
            case TopicError::no_match:
                detail = "topic matches neither the device nor the gateway template";
                break;
            case TopicError::invalid_factory_id:
                detail = fmt::format("factory_id {} in the topic is not a valid identifier{}",
                                     printable_quoted(match.factory_id), identifier_rule);
                break;
            default:
                detail = fmt::format("{} {} in the topic is not a valid identifier{}",
                                     match.kind == TopicKind::gateway ? "gateway_id" : "device_id",
                                     printable_quoted(match.source_id), identifier_rule);
                break;
        }
        reject_message(message, factory, Rejection{RejectReason::bad_topic, std::move(detail)});
        return Outcome::done;
    }
    if (message.oversize_payload_bytes > 0) {  // the subscriber kept only the topic
        reject_oversize(message, match.factory_id);
        return Outcome::done;
    }
    FactoryAdmission admission;
    if (!admit_factory(message, match.factory_id, retry, admission)) return Outcome::done;

    const std::string_view payload = message.payload();
    auto rejection = format_->decode(match, payload, message.received_ms, wall_clock_ms(), decoded_);
    if (rejection) {
        reject_message(message, match.factory_id, *rejection);
        return Outcome::done;
    }
    return admit_decoded(message, match, admission);
}

void Worker::reject_oversize(const RawMessage& message, std::string_view factory_id) {
    reject_message(
        message, verified_factory(factory_id),
        Rejection{RejectReason::oversize,
                  fmt::format("payload is about {} bytes (not kept), max_payload_bytes is {}",
                              message.oversize_payload_bytes, services_.config.ingest.max_payload_bytes)});
}

bool Worker::admit_factory(const RawMessage& message, std::string_view factory_id, bool retry,
                           FactoryAdmission& admission) {
    const TopicMatch match{TopicKind::device, factory_id, {}};
    // The factory first, before any decoding: unknown factories and floods cost next to nothing.
    if (!services_.registry && !allowed_factories_.empty() &&
        !std::binary_search(allowed_factories_.begin(), allowed_factories_.end(), match.factory_id)) {
        reject_message(
            message, unregistered_factory_label,
            Rejection{RejectReason::unknown_factory,
                      fmt::format("factory {} is not in [ingest] allowed_factories", match.factory_id)});
        return false;
    }
    auto& snapshot = admission.snapshot;  // kept until the records are encoded
    const RegistryFactory*& registry_factory = admission.factory;
    RateLimit limit{services_.config.ingest.factory_rate_limit, services_.config.ingest.factory_rate_burst};
    if (services_.registry) {
        // Read before the snapshot: an answer that lands after this makes the held messages retry.
        observed_generation_ = services_.registry->generation();
        snapshot = services_.registry->snapshot();
        if (!snapshot) {  // only while draining before the registry ever loaded (run() waits otherwise)
            reject_message(message, match.factory_id,
                           Rejection{RejectReason::shutdown_unwritten,
                                     "the registry never loaded, so the message could not be checked"});
            return false;
        }
        registry_factory = snapshot->factory(match.factory_id);
        if (!registry_factory || !registry_factory->enabled) {
            // An unregistered factory is counted under one label: topics must not be able to use up
            // the metrics' factory labels (the dead letter keeps the topic).
            reject_message(message, registry_factory ? match.factory_id : unregistered_factory_label,
                           Rejection{RejectReason::unknown_factory,
                                     fmt::format("factory {} is {}", match.factory_id,
                                                 registry_factory ? "disabled" : "not registered")});
            return false;
        }
        if (registry_factory->rate_limit_per_s) {
            limit.per_second = *registry_factory->rate_limit_per_s;
            limit.burst = registry_factory->rate_burst.value_or(0);
        }
    }
    // A held message was admitted when it arrived: its retry is not charged again.
    if (!retry && services_.rate_limiter && limit.per_second > 0 &&
        !services_.rate_limiter->admit(match.factory_id, limit, steady_clock_ns())) {
        reject_message(message, match.factory_id,
                       Rejection{RejectReason::rate_limited,
                                 fmt::format("factory {} is over its rate limit of {:g} messages/s",
                                             match.factory_id, limit.per_second)});
        return false;
    }
    return true;
}

Worker::Outcome Worker::admit_decoded(const RawMessage& message, const TopicMatch& match,
                                      const FactoryAdmission& admission) {
    const auto& snapshot = admission.snapshot;
    const RegistryFactory* registry_factory = admission.factory;
    static const ExtraTags no_extra_tags;
    record_tags_.assign(decoded_.records.size(), &no_extra_tags);
    if (snapshot) {
        switch (apply_registry(*snapshot, message, match)) {
            case RegistryOutcome::rejected:
                return Outcome::done;
            case RegistryOutcome::held:
                return Outcome::held;
            case RegistryOutcome::accepted:
                break;
        }
        // A new parameter's type comes from MySQL first (several plantd instances agree on it):
        // until then the message waits, like one whose device is being looked up.
        if (!parameters_decided(*registry_factory, match.factory_id)) {
            if (hold(message, match) == RegistryOutcome::held) return Outcome::held;
            return Outcome::done;
        }
        apply_parameters(match.factory_id);
        if (decoded_.records.empty()) {
            reject_message(message, match.factory_id, decoded_.record_rejections.front());
            return Outcome::done;
        }
    } else if (field_types_) {
        apply_field_types(destination_of(match.factory_id, {}));
        if (decoded_.records.empty()) {
            reject_message(message, match.factory_id, decoded_.record_rejections.front());
            return Outcome::done;
        }
    }

    auto& accounting = services_.accounting;
    Batch& batch =
        batch_for(match.factory_id,
                  registry_factory ? std::string_view(registry_factory->destination) : std::string_view{});
    // All or nothing: if encoding fails half way (out of memory), the batch is restored so that
    // the message is only counted once, as rejected by the caller.
    const size_t body_before = batch.body.size();
    const size_t lines_before = batch.lines();
    try {
        for (size_t i = 0; i < decoded_.records.size(); ++i) {
            const Record& record = decoded_.records[i];
            append_record_line(batch.body, escaped_measurement_, match.factory_id, record, decoded_,
                               *record_tags_[i]);
            batch.end_line(match.factory_id, record.timestamp_ms, message.topic());
        }
    } catch (...) {
        batch.truncate(lines_before, body_before);
        throw;
    }
    batch.add_wal_ref(message.wal_segment);
    batched_ = true;
    tally_factory(match.factory_id);
    accounting.messages_accepted.fetch_add(1, std::memory_order_relaxed);
    accounting.records_accepted.fetch_add(decoded_.records.size(), std::memory_order_relaxed);
    accounting.points_buffered.fetch_add(static_cast<int64_t>(decoded_.records.size()),
                                         std::memory_order_relaxed);
    // A replayed message's records were evaluated by the run that took it: once more would rewind
    // the rules' state (old samples at old times, after the state saved from newer ones).
    if (rule_port_ && !message.replayed) rule_port_->offer(match.factory_id, decoded_, message.received_ms);
    if (!decoded_.record_rejections.empty() || !decoded_.field_rejections.empty()) {
        dead_letter_partial(message, match.factory_id);
    }
    return Outcome::done;
}

std::string_view Worker::verified_factory(std::string_view factory) const {
    // Counted (and given a dead-letter share) under its own name only if it is known to exist: a
    // topic must not be able to mint labels or shares by inventing factory ids.
    if (services_.registry) {
        const auto snapshot = services_.registry->snapshot();
        return snapshot && snapshot->factory(factory) ? factory : unregistered_factory_label;
    }
    if (!allowed_factories_.empty() &&
        !std::binary_search(allowed_factories_.begin(), allowed_factories_.end(), factory))
        return unregistered_factory_label;
    return factory;
}

void Worker::tally_factory(std::string_view label) {
    if (!factory_tally_.empty() && factory_tally_.back().first == label) {
        ++factory_tally_.back().second;
        return;
    }
    for (auto& [factory, n] : factory_tally_) {
        if (factory == label) {
            ++n;
            return;
        }
    }
    if (factory_tally_.size() >= 64) flush_factory_tally();
    factory_tally_.emplace_back(label, 1);
}

void Worker::flush_factory_tally() {
    for (const auto& [factory, n] : factory_tally_) services_.accounting.count_factory_messages(factory, n);
    factory_tally_.clear();
}

void Worker::reject_message(const RawMessage& message, std::string_view factory, const Rejection& rejection) {
    tally_factory(factory);
    services_.accounting.count_rejected(RejectScope::message, rejection.reason, factory);
    const std::string_view topic = message.topic();
    services_.log.warn(std::string(to_string(rejection.reason)), "rejected message on {}: {}: {}",
                       printable(topic), to_string(rejection.reason), rejection.detail);
    DeadLetter letter{.kind = "message",
                      .topic = topic,
                      .destination = "",
                      .factory_id = factory,
                      .reason = rejection.reason,
                      .detail = rejection.detail,
                      .payload = message.payload(),
                      .time_ms = message.received_ms};
    services_.dead_letters.append(letter);
}

void Worker::dead_letter_partial(const RawMessage& message, std::string_view factory) {
    auto& accounting = services_.accounting;
    std::string detail;
    size_t listed = 0;
    auto describe = [&](const Rejection& r) {
        if (listed++ < 20 && detail.size() < 4000) {
            if (!detail.empty()) detail += "; ";
            fmt::format_to(std::back_inserter(detail), "{}: {}", to_string(r.reason), r.detail);
        }
    };
    for (const auto& r : decoded_.record_rejections) {
        accounting.count_rejected(RejectScope::record, r.reason, factory);
        describe(r);
    }
    for (const auto& r : decoded_.field_rejections) {
        accounting.count_rejected(RejectScope::field, r.reason, factory);
        describe(r);
    }
    if (listed > 20) fmt::format_to(std::back_inserter(detail), " (and {} more)", listed - 20);
    const Rejection& first = decoded_.record_rejections.empty() ? decoded_.field_rejections.front()
                                                                : decoded_.record_rejections.front();
    services_.log.warn("partial_" + std::string(to_string(first.reason)), "partly rejected message on {}: {}",
                       printable(message.topic()), detail);
    DeadLetter letter{.kind = "partial",
                      .topic = message.topic(),
                      .destination = "",
                      .factory_id = factory,
                      .reason = first.reason,
                      .detail = detail,
                      .payload = message.payload(),
                      .time_ms = message.received_ms};
    services_.dead_letters.append(letter);
}

void Worker::register_metrics(MetricsRegistry& registry) const {
    registry.add_gauge(fmt::format("plantd_held_messages{{worker=\"{}\"}}", shard_),
                       "Messages held until the registry can say whether their devices exist.",
                       [this] { return static_cast<double>(held()); });
    // One series for all workers: each adds its own.
    registry.add_counter("plantd_messages_held_total",
                         "Times a message was held until the registry could say whether its devices exist.",
                         [this] { return static_cast<double>(holds_.load()); });
    registry.add_counter("plantd_internal_errors_total",
                         "Exceptions caught at a thread or callback boundary.",
                         [this] { return static_cast<double>(internal_errors_.load()); });
    register_sparkplug_metrics(registry);
}

}  // namespace plantd
