// The worker's Sparkplug B path: the topic names the group (so the factory) and the edge node; the
// payload is decoded, taken by the host's state (births, aliases, seq, deaths), and what that makes
// of it (and of held messages it lets go) becomes records that go the same way as a JSON message's:
// the registry, the batches, the rules, the dead letters, the ledger.
#include <algorithm>

#include <fmt/format.h>

#include "common/identifiers.hpp"
#include "pipeline/worker.hpp"
#include "sparkplug/sparkplug_payload.hpp"
#include "util/clock.hpp"

namespace plantd {

namespace {

constexpr int64_t tick_interval_ms = 50;

sparkplug::HostLimits host_limits(const SparkplugConfig& config) {
    sparkplug::HostLimits limits;
    limits.reorder_window_ms = config.reorder_window_ms;
    limits.rebirth_interval_ms = config.rebirth_interval_ms;
    limits.max_aliases = config.max_aliases_per_birth;
    limits.max_devices = config.max_devices_per_node;
    limits.max_nodes_per_group = config.max_nodes_per_group;
    limits.max_nodes = config.max_nodes;
    return limits;
}

}  // namespace

void Worker::init_sparkplug() {
    const auto& config = services_.config.sparkplug;
    if (!config.enabled) return;
    sparkplug_ = std::make_unique<Sparkplug>(host_limits(config));
    sparkplug_->rules.limits = DecoderLimits{.max_payload_bytes = services_.config.ingest.max_payload_bytes,
                                             .max_future_skew_ms = services_.config.ingest.max_future_skew_ms,
                                             .max_past_age_ms = services_.config.ingest.max_past_age_ms};
    sparkplug_->rules.online_field = config.online_field;
    for (const std::string& pair : config.group_factories) {
        const size_t eq = pair.find('=');
        sparkplug_->group_factories.emplace(pair.substr(0, eq), pair.substr(eq + 1));
        sparkplug_->mapped_factories.insert(pair.substr(eq + 1));
    }
}

std::string_view Worker::factory_of_group(std::string_view group_id) const {
    auto listed = sparkplug_->group_factories.find(group_id);
    if (listed != sparkplug_->group_factories.end()) return listed->second;
    // An unlisted group named like a listed group's factory would share that factory's devices.
    if (services_.config.sparkplug.only_listed_groups || sparkplug_->mapped_factories.contains(group_id))
        return {};
    return group_id;
}

Worker::Outcome Worker::process_sparkplug(const RawMessage& message, bool retry) {
    sparkplug::Topic topic;
    std::string problem;
    if (!sparkplug::parse_topic(message.topic(), topic, problem) || !sparkplug::is_edge_message(topic.type) ||
        !(problem = sparkplug::naming_problem(topic)).empty()) {
        if (problem.empty())
            problem =
                fmt::format("{} is not a message plantd takes from an edge node", to_string(topic.type));
        reject_message(message, {}, Rejection{RejectReason::bad_topic, std::move(problem)});
        return Outcome::done;
    }
    const std::string_view factory = factory_of_group(topic.group_id);
    if (factory.empty()) {
        reject_message(message, unregistered_factory_label,
                       Rejection{RejectReason::unknown_factory,
                                 sparkplug_->mapped_factories.contains(topic.group_id)
                                     ? fmt::format("Sparkplug group {} is not in [sparkplug] group_factories "
                                                   "and another group's factory has its name",
                                                   topic.group_id)
                                     : fmt::format("Sparkplug group {} is not in [sparkplug] group_factories",
                                                   topic.group_id)});
        return Outcome::done;
    }
    if (message.oversize_payload_bytes > 0) {
        reject_oversize(message, factory);
        forget_unread(topic, false);  // a rebirth would be as large
        return Outcome::done;
    }
    if (const size_t limit = services_.config.ingest.max_payload_bytes; message.payload().size() > limit) {
        // Here whole but over the limit: the subscriber cut it at the limit + 1 byte.
        reject_message(message, factory,
                       Rejection{RejectReason::oversize,
                                 fmt::format("payload is more than max_payload_bytes ({} bytes)", limit)});
        forget_unread(topic, false);
        return Outcome::done;
    }
    FactoryAdmission admission;
    if (!admit_factory(message, factory, retry, admission)) {
        if (!retry) forget_unread(topic);  // a retry's message was read by the host when it came
        return Outcome::done;
    }
    if (retry && retrying_records_) return admit_sparkplug(message, factory, admission, *retrying_records_);

    sparkplug::Payload& payload = sparkplug_->payload;
    if (!sparkplug::decode_payload(message.payload(), payload, problem)) {
        reject_message(message, factory, Rejection{RejectReason::sparkplug_malformed, std::move(problem)});
        forget_unread(topic);
        return Outcome::done;
    }
    const uint64_t token = sparkplug_->next_token++;
    sparkplug_->out.clear();
    sparkplug_->host.receive(topic, payload, steady_clock_ms(), sparkplug_->out, token);
    take_sparkplug_output(message, token, factory, admission);
    return Outcome::done;
}

void Worker::forget_unread(const sparkplug::Topic& topic, bool ask_rebirth) {
    sparkplug_->out.clear();
    sparkplug_->host.forget_unread(topic, steady_clock_ms(), sparkplug_->out, ask_rebirth);
    send_rebirths();
}

std::vector<uint64_t> Worker::sparkplug_output_tokens() const {
    const auto& out = sparkplug_->out;
    std::vector<uint64_t> tokens;  // tokens grow with arrival
    for (const auto& data : out.data) tokens.push_back(data.token);
    for (const auto& online : out.online) tokens.push_back(online.token);
    for (const auto& rejected : out.rejected) tokens.push_back(rejected.token);
    tokens.insert(tokens.end(), out.released.begin(), out.released.end());
    std::sort(tokens.begin(), tokens.end());
    tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
    return tokens;
}

void Worker::send_rebirths() {
    auto& state = *sparkplug_;
    for (const auto& rebirth : state.out.rebirths) {
        state.rebirths.fetch_add(1, std::memory_order_relaxed);
        services_.log.warn("sparkplug_rebirth", "Sparkplug: asking edge node {}/{} for a rebirth: {}",
                           rebirth.group_id, rebirth.edge_node_id, rebirth.why);
        if (services_.sparkplug_commands)
            services_.sparkplug_commands->request_rebirth(rebirth.group_id, rebirth.edge_node_id,
                                                          rebirth.why);
    }
}

void Worker::take_sparkplug_output(const RawMessage& message, uint64_t token, std::string_view factory_id,
                                   const FactoryAdmission& admission) {
    auto& state = *sparkplug_;
    send_rebirths();
    const std::vector<uint64_t> tokens = sparkplug_output_tokens();

    const bool current_held =
        token != 0 && std::find(state.out.held.begin(), state.out.held.end(), token) != state.out.held.end();
    bool current_seen = false;
    bool current_kept = current_held;  // its log entry is still needed (in a batch, or waiting)
    for (const uint64_t t : tokens) {
        const bool current = t == token;
        RawMessage released;
        if (!current) {
            auto waiting = state.waiting.find(t);
            if (waiting == state.waiting.end()) continue;  // never so: every held token is kept
            released = std::move(waiting->second);
            state.waiting.erase(waiting);
        }
        const RawMessage& source = current ? message : released;
        current_seen = current_seen || current;
        const int64_t now = wall_clock_ms();
        state.scratch.clear();
        sparkplug::collect(state.out, t, state.rules, source.received_ms, now, state.scratch);
        batched_ = false;
        const Outcome outcome = admit_sparkplug(source, factory_id, admission, state.scratch);
        if (outcome == Outcome::held) {
            // Its records wait with it: collected again where they can stay.
            auto records = std::make_unique<sparkplug::MessageRecords>();
            sparkplug::collect(state.out, t, state.rules, source.received_ms, now, *records);
            hold_with_records(current ? RawMessage(message) : std::move(released), std::move(records));
            current_kept = current_kept || current;
        } else if (current) {
            current_kept = current_kept || batched_;
        } else if (!batched_ && services_.wal) {
            services_.wal->release(released.wal_segment);
        }
    }
    if (current_held) {
        state.waiting.emplace(token, message);
    } else if (!current_seen && token != 0) {
        // Nothing to write and nothing wrong (a birth of session metrics only, the death of a device
        // already offline): taken.
        tally_factory(factory_id);
        services_.accounting.messages_accepted.fetch_add(1, std::memory_order_relaxed);
    }
    batched_ = current_kept;
    state.waiting_count.store(state.waiting.size(), std::memory_order_relaxed);
    state.nodes.store(state.host.nodes(), std::memory_order_relaxed);
}

Worker::Outcome Worker::admit_sparkplug(const RawMessage& message, std::string_view factory_id,
                                        const FactoryAdmission& admission,
                                        const sparkplug::MessageRecords& records) {
    if (records.empty()) {
        if (records.message_rejection) {
            reject_message(message, factory_id, *records.message_rejection);
        } else if (!records.field_rejections.empty() || !records.record_rejections.empty()) {
            // Nothing left to write: the message, with its first reason (the dead letter lists them).
            records.fill(decoded_);
            const Rejection& first = decoded_.record_rejections.empty() ? decoded_.field_rejections.front()
                                                                        : decoded_.record_rejections.front();
            reject_message(message, factory_id, Rejection{first.reason, first.detail});
        } else {
            tally_factory(factory_id);
            services_.accounting.messages_accepted.fetch_add(1, std::memory_order_relaxed);
        }
        return Outcome::done;
    }
    records.fill(decoded_);
    // The edge node (spBv1.0/group/type/node[/device]) is the gateway its devices' data came through:
    // the rules hold the dead-man alerts of its devices while it is silent.
    sparkplug::Topic topic;
    std::string problem;  // the topic was checked before it got here
    if (sparkplug::parse_topic(message.topic(), topic, problem))
        decoded_.topic = TopicMatch{TopicKind::gateway, factory_id, topic.edge_node_id};
    const TopicMatch match{TopicKind::device, factory_id, {}};
    const Outcome outcome = admit_decoded(message, match, admission);
    decoded_.topic = {};  // it viewed this message's topic
    return outcome;
}

void Worker::hold_with_records(RawMessage message, std::unique_ptr<sparkplug::MessageRecords> records) {
    held_.push_back({std::move(message), std::move(records)});
    held_count_.store(held_.size(), std::memory_order_relaxed);
    holds_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::tick_sparkplug(bool flush) {
    auto& state = *sparkplug_;
    const int64_t now = steady_clock_ms();
    if (state.host.held_messages() == 0 || (!flush && now - state.last_tick_ms < tick_interval_ms)) return;
    state.last_tick_ms = now;
    state.out.clear();
    if (flush)
        state.host.flush(now, state.out);
    else
        state.host.tick(now, state.out);
    if (state.out.released.empty() && state.out.rebirths.empty()) return;
    // Every message that comes out is of one node, so of one group and factory; the factory is
    // checked again (it may have been disabled meanwhile), without charging the rate limit again.
    for (const uint64_t t : sparkplug_output_tokens()) {
        auto waiting = state.waiting.find(t);
        if (waiting == state.waiting.end()) continue;
        RawMessage message = std::move(waiting->second);
        state.waiting.erase(waiting);
        sparkplug::Topic topic;
        std::string problem;
        sparkplug::parse_topic(message.topic(), topic, problem);  // parsed when it came
        const std::string_view factory = factory_of_group(topic.group_id);
        FactoryAdmission admission;
        batched_ = false;
        if (factory.empty()) {  // not so: the mapping is fixed at start, and it had a factory then
            reject_message(message, unregistered_factory_label,
                           Rejection{RejectReason::unknown_factory, "its Sparkplug group has no factory"});
        }
        if (factory.empty() || !admit_factory(message, factory, true, admission)) {
            if (services_.wal) services_.wal->release(message.wal_segment);
            continue;
        }
        const int64_t wall_now = wall_clock_ms();
        state.scratch.clear();
        sparkplug::collect(state.out, t, state.rules, message.received_ms, wall_now, state.scratch);
        if (admit_sparkplug(message, factory, admission, state.scratch) == Outcome::held) {
            auto records = std::make_unique<sparkplug::MessageRecords>();
            sparkplug::collect(state.out, t, state.rules, message.received_ms, wall_now, *records);
            hold_with_records(std::move(message), std::move(records));
        } else if (!batched_ && services_.wal) {
            services_.wal->release(message.wal_segment);
        }
        flush_full();
    }
    send_rebirths();
    state.waiting_count.store(state.waiting.size(), std::memory_order_relaxed);
}

void Worker::register_sparkplug_metrics(MetricsRegistry& registry) const {
    if (!sparkplug_) return;
    registry.add_gauge("plantd_sparkplug_edge_nodes", "Sparkplug edge nodes whose state plantd keeps.",
                       [this] { return static_cast<double>(sparkplug_->nodes.load()); });
    registry.add_gauge("plantd_sparkplug_reorder_held_messages",
                       "Sparkplug DATA held for the reorder window (ahead of its seq).",
                       [this] { return static_cast<double>(sparkplug_->waiting_count.load()); });
    registry.add_counter("plantd_sparkplug_rebirth_requests_total",
                         "Rebirth requests (NCMD Node Control/Rebirth) sent to edge nodes.",
                         [this] { return static_cast<double>(sparkplug_->rebirths.load()); });
}

}  // namespace plantd
