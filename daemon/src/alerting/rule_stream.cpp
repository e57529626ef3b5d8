#include "alerting/rule_stream.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <thread>

#include "common/identifiers.hpp"
#include "util/thread_name.hpp"

namespace plantd {

namespace {
constexpr size_t batch_records = 1'024;
constexpr int64_t redis_timeout_ms = 1'000;
constexpr char unit = '\x1f';  // between the parts (no identifier or metric name holds a control character)
constexpr char pair = '\x1e';  // between a metric's name and its value

template <class T>
bool parse_number(std::string_view text, T& value) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::string rule_stream_key(const RegistryConfig& config, std::string_view factory_id) {
    return fmt::format("{}:cluster:{{{}}}:records", config.redis_prefix, factory_id);
}

std::string encode_rule_record(const RuleRecord& record) {
    std::string out;
    out.reserve(64 + record.samples.size() * 24);
    fmt::format_to(std::back_inserter(out), "{}{}{}{}{}{}{}", record.device_id, unit, record.via, unit,
                   record.arrived_ms, unit, record.sample_ms);
    for (const auto& [name, value] : record.samples)
        fmt::format_to(std::back_inserter(out), "{}{}{}{}", unit, name, pair, value);
    return out;
}

std::optional<RuleRecord> decode_rule_record(std::string_view factory_id, std::string_view text) {
    std::vector<std::string_view> parts;
    for (size_t start = 0;;) {
        const size_t end = text.find(unit, start);
        parts.push_back(
            text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    if (parts.size() < 4 || !is_valid_identifier(parts[0]) ||
        (!parts[1].empty() && !is_valid_identifier(parts[1])))
        return std::nullopt;
    RuleRecord record;
    record.factory_id = factory_id;
    record.device_id = parts[0];
    record.via = parts[1];
    // Times beyond any clock's range would pin a device's newest sample or overflow the engine's sums.
    constexpr int64_t far = int64_t{1} << 52;
    if (!parse_number(parts[2], record.arrived_ms) || !parse_number(parts[3], record.sample_ms) ||
        record.arrived_ms < 0 || record.arrived_ms > far || record.sample_ms < 0 || record.sample_ms > far)
        return std::nullopt;
    for (size_t i = 4; i < parts.size(); ++i) {
        const size_t split = parts[i].find(pair);
        double value = 0;
        if (split == std::string_view::npos || split == 0 ||
            !parse_number(parts[i].substr(split + 1), value) || !std::isfinite(value))
            return std::nullopt;
        record.samples.emplace_back(std::string(parts[i].substr(0, split)), value);
    }
    return record;
}

RuleRecordRelay::RuleRecordRelay(const Config& config, RuleFeed& feed, Observer observe)
    : config_(config), feed_(feed), observe_(std::move(observe)) {}

RuleRecordRelay::~RuleRecordRelay() {
    stop(0);
}

void RuleRecordRelay::start() {
    thread_ = std::thread([this] {
        name_this_thread("plantd-relay");
        run();
    });
}

void RuleRecordRelay::run() {
    std::vector<RuleRecord> batch;
    while (!stopping_.load()) {
        try {
            if (batch.empty()) {
                feed_.take(batch, batch_records, 50);
                if (batch.empty()) continue;
                observe(batch);
            }
            if (send(batch)) {
                batch.clear();
            } else {
                // Kept and tried again; meanwhile the feed fills and, at its bound, drops (counted).
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
        } catch (const std::exception& e) {
            spdlog::error("rules: relaying records to their owners failed: {}", e.what());
            batch.clear();
        }
    }
}

void RuleRecordRelay::stop(int64_t drain_ms) {
    if (stopping_.exchange(true)) return;
    if (thread_.joinable()) thread_.join();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms);
    std::vector<RuleRecord> batch;
    try {
        while (std::chrono::steady_clock::now() < deadline) {
            if (batch.empty()) {
                if (feed_.take(batch, batch_records, 0) == 0) return;
                observe(batch);
            }
            if (send(batch)) batch.clear();
        }
    } catch (const std::exception& e) {
        spdlog::error("rules: relaying the last records failed: {}", e.what());
    }
    if (!batch.empty() || feed_.size() > 0)
        spdlog::warn("rules: {} records were not relayed to their owners before the stop",
                     batch.size() + feed_.size());
}

void RuleRecordRelay::observe(const std::vector<RuleRecord>& batch) {
    if (!observe_) return;
    try {
        observe_(batch);
    } catch (const std::exception& e) {  // the records still go to their owners
        spdlog::error("rules: observing relayed records failed: {}", e.what());
    }
}

bool RuleRecordRelay::send(const std::vector<RuleRecord>& batch) {
    if (std::string problem = ensure_connected(redis_, config_.registry, redis_timeout_ms);
        !problem.empty()) {
        failures_.fetch_add(1);
        if (!failing_.exchange(true))
            spdlog::error("rules: cannot relay records to their owners ({}); retrying", problem);
        return false;
    }
    std::vector<RedisCommand> commands;
    std::vector<std::string> new_factories;
    const std::string cap = std::to_string(config_.cluster.stream_max_records);
    for (const RuleRecord& record : batch) {
        commands.push_back({"XADD", rule_stream_key(config_.registry, record.factory_id), "MAXLEN", "~", cap,
                            "*", "r", encode_rule_record(record)});
        if (!announced_.count(record.factory_id) &&
            std::find(new_factories.begin(), new_factories.end(), record.factory_id) == new_factories.end())
            new_factories.push_back(record.factory_id);
    }
    if (!new_factories.empty()) {
        RedisCommand add{"SADD", config_.registry.redis_prefix + ":cluster:factories"};
        add.insert(add.end(), new_factories.begin(), new_factories.end());
        commands.push_back(std::move(add));
    }
    auto replies = redis_->pipeline(commands);
    if (!replies) {
        redis_.reset();
        failures_.fetch_add(1);
        if (!failing_.exchange(true))
            spdlog::error("rules: cannot relay records to their owners ({}); retrying", replies.error());
        return false;
    }
    if (failing_.exchange(false)) spdlog::info("rules: relaying records to their owners again");
    if (announced_.size() < 100'000) announced_.insert(new_factories.begin(), new_factories.end());
    relayed_.fetch_add(batch.size());
    return true;
}

void RuleRecordRelay::register_metrics(MetricsRegistry& registry) const {
    registry.add_counter("plantd_cluster_records_relayed_total",
                         "Records handed to their factory's stream in Redis, for its owner's rules.",
                         [this] { return static_cast<double>(relayed_.load()); });
    registry.add_counter("plantd_cluster_relay_failures_total",
                         "Tries to hand records to Redis that failed (they are tried again).",
                         [this] { return static_cast<double>(failures_.load()); });
}

RuleStreamReader::RuleStreamReader(const Config& config) : config_(config) {}

void RuleStreamReader::follow(const std::string& factory_id, std::string position) {
    positions_[factory_id] = std::move(position);
    busy_streams_ = SIZE_MAX;
}

void RuleStreamReader::unfollow(const std::string& factory_id) {
    positions_.erase(factory_id);
}

std::string RuleStreamReader::position(const std::string& factory_id) const {
    auto it = positions_.find(factory_id);
    return it == positions_.end() ? std::string() : it->second;
}

Result<size_t> RuleStreamReader::take(std::vector<RuleRecord>& out, size_t max, int64_t wait_ms) {
    out.clear();
    more_ = false;
    if (positions_.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        return size_t{0};
    }
    if (std::string problem = ensure_connected(redis_, config_.registry, redis_timeout_ms);
        !problem.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        return fail(problem);
    }
    // COUNT is per stream. Shared among the streams that were full last time (the others hold only
    // what arrived meanwhile), so that one busy factory among many quiet ones gets most of a take.
    // A take holds about `max` records while streams are behind; after a quiet read each stream may
    // return up to `max` (at most `max` times the owned factories).
    const size_t busy = std::clamp<size_t>(busy_streams_, 1, positions_.size());
    const size_t per_stream = std::max<size_t>(16, max / busy);
    RedisCommand read{"XREAD", "COUNT", std::to_string(per_stream)};
    if (wait_ms > 0) read.insert(read.end(), {"BLOCK", std::to_string(wait_ms)});  // BLOCK 0 waits forever
    read.push_back("STREAMS");
    std::map<std::string, std::string> factory_of_key;
    for (const auto& [factory, position] : positions_) {
        read.push_back(rule_stream_key(config_.registry, factory));
        factory_of_key[read.back()] = factory;
    }
    for (const auto& [factory, position] : positions_) read.push_back(position.empty() ? "0" : position);
    auto reply = redis_->command(read);
    if (!reply) {
        redis_.reset();
        return fail(reply.error());
    }
    busy_streams_ = 0;
    for (const RedisReply& stream : reply->elements) {
        if (stream.elements.size() != 2) continue;
        auto it = factory_of_key.find(stream.elements[0].text);
        if (it == factory_of_key.end()) continue;
        auto& position = positions_[it->second];
        if (stream.elements[1].elements.size() >= per_stream) {
            more_ = true;
            ++busy_streams_;
        }
        for (const RedisReply& entry : stream.elements[1].elements) {
            if (entry.elements.size() != 2) continue;
            position = entry.elements[0].text;
            const auto& fields = entry.elements[1].elements;
            std::optional<RuleRecord> record;
            if (fields.size() == 2 && fields[0].text == "r")
                record = decode_rule_record(it->second, fields[1].text);
            if (record)
                out.push_back(std::move(*record));
            else
                ++skipped_;
        }
    }
    return out.size();
}

}  // namespace plantd
