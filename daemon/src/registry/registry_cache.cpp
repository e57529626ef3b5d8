#include "registry/registry_cache.hpp"

#include <algorithm>
#include <random>
#include <set>

#include <fmt/format.h>
#include <simdjson.h>

#include "common/identifiers.hpp"
#include "util/clock.hpp"
#include "util/json_text.hpp"

namespace plantd {

namespace {

constexpr int64_t retry_after_failure_ms = 1'000;
constexpr size_t fields_per_command = 1'000;

uint64_t hash_of(std::string_view a, std::string_view b) {
    // Order-independent fingerprints add these up; mix so that sums rarely collide.
    uint64_t h = std::hash<std::string_view>{}(a)*0x9E3779B97F4A7C15ull;
    return h ^ (std::hash<std::string_view>{}(b) + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2));
}

}  // namespace

RegistryCache::RegistryCache(const RegistryConfig& config) : config_(config) {}

RegistryCache::~RegistryCache() = default;

std::string RegistryCache::factories_key() const {
    return config_.redis_prefix + ":registry:factories";
}
std::string RegistryCache::factory_key(std::string_view factory_id) const {
    return fmt::format("{}:registry:{{{}}}:factory", config_.redis_prefix, factory_id);
}
std::string RegistryCache::devices_key(std::string_view factory_id) const {
    return fmt::format("{}:registry:{{{}}}:devices", config_.redis_prefix, factory_id);
}
std::string RegistryCache::unknown_key(std::string_view factory_id) const {
    return fmt::format("{}:registry:{{{}}}:unknown", config_.redis_prefix, factory_id);
}
std::string RegistryCache::channel() const {
    return config_.redis_prefix + ":registry:changes";
}

template <class T>
Result<T> RegistryCache::failed(const std::string& error) {
    connection_.reset();
    next_attempt_ms_ = steady_clock_ms() + retry_after_failure_ms;
    last_error_ = error;
    return fail(error);
}

Result<RedisConnection*> RegistryCache::connection() {
    if (connection_) return connection_.get();
    if (!configured()) return fail(std::string("no Redis configured"));
    if (steady_clock_ms() < next_attempt_ms_) return fail(last_error_);
    auto connected = RedisConnection::connect(config_, std::min<int64_t>(config_.connect_timeout_ms, 2'000));
    if (!connected) return failed<RedisConnection*>(connected.error());
    connection_ = std::move(*connected);
    written_.clear();  // a new connection may be to a Redis that restarted empty
    return connection_.get();
}

std::string RegistryCache::encode_device(const RegistryDevice& device) {
    std::string out = device.enabled ? R"({"enabled":true,"tags":[)" : R"({"enabled":false,"tags":[)";
    for (size_t i = 0; i < device.tags.size(); ++i) {
        if (i > 0) out += ',';
        out += '[';
        append_json_string(out, device.tags[i].first);
        out += ',';
        append_json_string(out, device.tags[i].second);
        out += ']';
    }
    out += "]}";
    return out;
}

std::optional<RegistryDevice> RegistryCache::decode_device(std::string_view json) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(json.data(), json.size()).get(root)) return std::nullopt;
    RegistryDevice device;
    simdjson::dom::array tags;
    if (root["enabled"].get(device.enabled) || root["tags"].get(tags)) return std::nullopt;
    for (simdjson::dom::element tag : tags) {
        simdjson::dom::array pair;
        std::string_view key, value;
        if (tag.get(pair) || pair.size() != 2 || pair.at(0).get(key) || pair.at(1).get(value))
            return std::nullopt;
        if (!check_tag(key, value).empty()) return std::nullopt;  // written by someone else: not trusted
        device.tags.emplace_back(std::string(key), std::string(value));
    }
    std::sort(device.tags.begin(), device.tags.end());
    return device;
}

std::string RegistryCache::encode_factory(const RegistryFactory& factory) {
    std::string out = fmt::format(R"({{"enabled":{},"unknown_devices":"{}")", factory.enabled,
                                  to_string(factory.unknown_devices));
    if (factory.rate_limit_per_s)
        fmt::format_to(std::back_inserter(out), R"(,"rate_limit_per_s":{})", *factory.rate_limit_per_s);
    if (factory.rate_burst)
        fmt::format_to(std::back_inserter(out), R"(,"rate_burst":{})", *factory.rate_burst);
    out += R"(,"destination":)";
    append_json_string(out, factory.destination);
    out += R"(,"parameters":{)";
    // Sorted, so that the same content always makes the same text (fingerprints).
    std::vector<const std::pair<const std::string, RegistryParameter>*> parameters;
    for (const auto& entry : factory.parameters) parameters.push_back(&entry);
    std::sort(parameters.begin(), parameters.end(), [](auto* a, auto* b) { return a->first < b->first; });
    bool first = true;
    for (const auto* entry : parameters) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, entry->first);
        out += ":[";
        append_json_string(out, to_string(entry->second.type));
        out += ',';
        append_json_string(out, entry->second.unit);
        out += ']';
    }
    out += "}}";
    return out;
}

std::optional<std::shared_ptr<RegistryFactory>> RegistryCache::decode_factory(std::string_view json) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(json.data(), json.size()).get(root)) return std::nullopt;
    auto factory = std::make_shared<RegistryFactory>();
    std::string_view policy, destination;
    simdjson::dom::object parameters;
    if (root["enabled"].get(factory->enabled) || root["unknown_devices"].get(policy) ||
        root["destination"].get(destination) || root["parameters"].get(parameters))
        return std::nullopt;
    auto parsed_policy = parse_unknown_device_policy(policy);
    if (!parsed_policy) return std::nullopt;
    factory->unknown_devices = *parsed_policy;
    double number = 0;
    if (!root["rate_limit_per_s"].get(number) && number > 0) factory->rate_limit_per_s = number;
    if (!root["rate_burst"].get(number) && number >= 1) factory->rate_burst = number;
    if (!destination.empty() && check_destination(destination).empty()) factory->destination = destination;
    for (auto [name, value] : parameters) {
        simdjson::dom::array pair;
        std::string_view type_text, unit;
        if (value.get(pair) || pair.size() != 2 || pair.at(0).get(type_text) || pair.at(1).get(unit))
            return std::nullopt;
        auto type = parse_parameter_type(type_text);
        if (!type || !check_parameter_name(name).empty()) return std::nullopt;
        factory->parameters.emplace(std::string(name), RegistryParameter(*type, std::string(unit), 0));
    }
    return factory;
}

std::string RegistryCache::store_factory(std::string_view factory_id, const RegistryFactory& factory) {
    if (!is_valid_identifier(factory_id)) return fmt::format("invalid factory id {}", printable(factory_id));
    const std::string settings = encode_factory(factory);
    std::vector<std::pair<const std::string*, std::string>> devices;
    devices.reserve(factory.devices.size());
    uint64_t device_print = 0;
    uint64_t id_print = 0;
    for (const auto& [device_id, device] : factory.devices) {
        devices.emplace_back(&device_id, encode_device(device));
        device_print += hash_of(device_id, devices.back().second);
        id_print += hash_of(device_id, "");
    }
    const uint64_t whole_print = device_print + hash_of(settings, "settings");
    auto previous = written_.find(factory_id);
    if (previous != written_.end() && previous->second.first == whole_print) return {};

    auto redis = connection();
    if (!redis) return redis.error();
    // Devices go to a private temporary key first (it may take several commands), then one
    // MULTI/EXEC swaps everything in: readers see the old entry or the new one, never a mix.
    thread_local std::mt19937_64 random{std::random_device{}()};
    const std::string temporary = fmt::format("{}:tmp:{:016x}", devices_key(factory_id), random());
    std::vector<RedisCommand> commands;
    commands.push_back({"DEL", temporary});
    for (size_t begin = 0; begin < devices.size(); begin += fields_per_command) {
        RedisCommand hset{"HSET", temporary};
        for (size_t i = begin; i < std::min(devices.size(), begin + fields_per_command); ++i) {
            hset.push_back(*devices[i].first);
            hset.push_back(std::move(devices[i].second));
        }
        commands.push_back(std::move(hset));
    }
    commands.push_back({"EXPIRE", temporary, "300"});  // left behind only if we die right here
    commands.push_back({"MULTI"});
    if (devices.empty())
        commands.push_back({"DEL", devices_key(factory_id)});
    else
        commands.push_back({"RENAME", temporary, devices_key(factory_id)});
    commands.push_back({"PERSIST", devices_key(factory_id)});
    commands.push_back({"SET", factory_key(factory_id), settings});
    commands.push_back({"SADD", factories_key(), std::string(factory_id)});
    // New devices may be in the unknown set of any plantd: start that set again.
    const bool devices_changed = previous == written_.end() || previous->second.second != id_print;
    if (devices_changed) commands.push_back({"DEL", unknown_key(factory_id)});
    commands.push_back({"EXEC"});
    if (devices.empty()) commands.push_back({"DEL", temporary});
    auto replies = (*redis)->pipeline(commands);
    if (!replies) return failed<int>(replies.error()).error();
    written_[std::string(factory_id)] = {whole_print, id_print};
    return {};
}

Result<StringMap<std::shared_ptr<RegistryFactory>>> RegistryCache::load_all(size_t& skipped) {
    skipped = 0;
    auto redis = connection();
    if (!redis) return fail(redis.error());
    auto ids = (*redis)->command({"SMEMBERS", factories_key()});
    if (!ids) return failed<StringMap<std::shared_ptr<RegistryFactory>>>(ids.error());
    StringMap<std::shared_ptr<RegistryFactory>> out;
    for (const RedisReply& id : ids->elements) {
        if (!is_valid_identifier(id.text)) {
            ++skipped;
            continue;
        }
        auto replies = (*redis)->pipeline({{"GET", factory_key(id.text)}, {"HGETALL", devices_key(id.text)}});
        if (!replies) return failed<StringMap<std::shared_ptr<RegistryFactory>>>(replies.error());
        const RedisReply& settings = (*replies)[0];
        auto factory =
            settings.type == RedisReply::Type::string ? decode_factory(settings.text) : std::nullopt;
        if (!factory) {
            ++skipped;
            continue;
        }
        const auto& fields = (*replies)[1].elements;
        for (size_t i = 0; i + 1 < fields.size(); i += 2) {
            auto device = decode_device(fields[i + 1].text);
            if (!device || !is_valid_identifier(fields[i].text)) {
                ++skipped;
                continue;
            }
            (*factory)->devices.emplace(fields[i].text, std::move(*device));
        }
        out.emplace(id.text, std::move(*factory));
    }
    return out;
}

Result<std::vector<CachedLookup>> RegistryCache::lookup(const std::vector<DeviceKey>& devices,
                                                        int64_t now_ms) {
    auto redis = connection();
    if (!redis) return fail(redis.error());
    // One round trip for the whole batch.
    std::vector<RedisCommand> commands;
    commands.reserve(devices.size() * 2);
    for (const auto& [factory_id, device_id] : devices) {
        commands.push_back({"HGET", devices_key(factory_id), device_id});
        commands.push_back({"ZSCORE", unknown_key(factory_id), device_id});
    }
    auto replies = (*redis)->pipeline(commands);
    if (!replies) return failed<std::vector<CachedLookup>>(replies.error());
    std::vector<CachedLookup> out(devices.size());
    for (size_t i = 0; i < devices.size(); ++i) {
        const RedisReply& device = (*replies)[2 * i];
        const RedisReply& unknown_until = (*replies)[2 * i + 1];
        if (device.type == RedisReply::Type::string) {
            if (auto decoded = decode_device(device.text)) {
                out[i].outcome = CachedLookup::Outcome::found;
                out[i].device = std::move(*decoded);
                continue;
            }
        }
        if (unknown_until.type == RedisReply::Type::string) {
            char* end = nullptr;
            const double until = std::strtod(unknown_until.text.c_str(), &end);
            if (end != unknown_until.text.c_str() && until > static_cast<double>(now_ms))
                out[i].outcome = CachedLookup::Outcome::unknown;
        }
    }
    return out;
}

std::string RegistryCache::store_unknown(const std::vector<DeviceKey>& devices, int64_t until_ms) {
    if (devices.empty()) return {};
    auto redis = connection();
    if (!redis) return redis.error();
    std::vector<RedisCommand> commands;
    std::set<std::string> factories;
    for (const auto& [factory_id, device_id] : devices) {
        commands.push_back({"ZADD", unknown_key(factory_id), std::to_string(until_ms), device_id});
        factories.insert(factory_id);
    }
    // Expired members are trimmed on the way, and each set expires when its newest member does.
    for (const auto& factory_id : factories) {
        commands.push_back(
            {"ZREMRANGEBYSCORE", unknown_key(factory_id), "-inf", std::to_string(wall_clock_ms())});
        commands.push_back({"PEXPIREAT", unknown_key(factory_id), std::to_string(until_ms)});
    }
    auto replies = (*redis)->pipeline(commands);
    if (!replies) return failed<int>(replies.error()).error();
    return {};
}

std::string RegistryCache::publish_change(std::string_view factory_id) {
    auto redis = connection();
    if (!redis) return redis.error();
    auto reply = (*redis)->command({"PUBLISH", channel(), std::string(factory_id)});
    if (!reply) return failed<int>(reply.error()).error();
    return {};
}

std::string RegistryCache::invalidate(std::string_view factory_id) {
    auto redis = connection();
    if (!redis) return redis.error();
    auto replies = (*redis)->pipeline(
        {{"DEL", unknown_key(factory_id)}, {"PUBLISH", channel(), std::string(factory_id)}});
    if (!replies) return failed<int>(replies.error()).error();
    return {};
}

std::string RegistryCache::remove_factories(const std::vector<std::string>& factory_ids) {
    if (factory_ids.empty()) return {};
    auto redis = connection();
    if (!redis) return redis.error();
    std::vector<RedisCommand> commands{{"MULTI"}};
    for (const std::string& id : factory_ids) {
        if (!is_valid_identifier(id)) continue;  // never part of a key
        commands.push_back({"SREM", factories_key(), id});
        commands.push_back({"DEL", factory_key(id), devices_key(id), unknown_key(id)});
        written_.erase(id);
    }
    commands.push_back({"EXEC"});
    auto replies = (*redis)->pipeline(commands);
    if (!replies) return failed<int>(replies.error()).error();
    return {};
}

Result<std::vector<std::string>> RegistryCache::factory_ids() {
    auto redis = connection();
    if (!redis) return fail(redis.error());
    auto ids = (*redis)->command({"SMEMBERS", factories_key()});
    if (!ids) return failed<std::vector<std::string>>(ids.error());
    std::vector<std::string> out;
    for (const RedisReply& id : ids->elements) out.push_back(id.text);
    return out;
}

}  // namespace plantd
