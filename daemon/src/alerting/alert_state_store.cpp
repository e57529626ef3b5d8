#include "alerting/alert_state_store.hpp"

#include <fmt/format.h>

#include <charconv>
#include <set>

#include "alerting/alert_json.hpp"
#include "common/identifiers.hpp"

namespace plantd {

namespace {
constexpr int64_t timeout_ms = 1'000;
}

AlertStateStore::AlertStateStore(const RegistryConfig& config) : config_(config) {}

std::string AlertStateStore::connect() {
    if (redis_) return {};
    auto connected =
        RedisConnection::connect(config_, std::min<int64_t>(config_.connect_timeout_ms, timeout_ms));
    if (!connected) return connected.error();
    redis_ = std::move(*connected);
    return {};
}

std::string AlertStateStore::key(std::string_view factory_id, std::string_view what) const {
    // {factory} in braces: a factory's keys stay in one Redis Cluster slot.
    return fmt::format("{}:rules:{{{}}}:{}", config_.redis_prefix, factory_id, what);
}

std::string AlertStateStore::save(const std::vector<rules::AlertChange>& alerts,
                                  const std::vector<rules::DeviceSeen>& seen) {
    if (alerts.empty() && seen.empty()) return {};
    if (auto problem = connect(); !problem.empty()) return problem;
    std::vector<RedisCommand> commands;
    std::set<std::string> factories;
    for (const auto& change : alerts) {
        factories.insert(change.factory_id);
        std::string field = change.device_id + "/" + change.rule_id;
        if (change.alert)
            commands.push_back(
                {"HSET", key(change.factory_id, "alerts"), field, active_alert_json(*change.alert)});
        else
            commands.push_back({"HDEL", key(change.factory_id, "alerts"), field});
    }
    for (const auto& device : seen) {
        factories.insert(device.factory_id);
        commands.push_back({"HSET", key(device.factory_id, "seen"), device.device_id,
                            device.via.empty()
                                ? std::to_string(device.last_seen_ms)
                                : std::to_string(device.last_seen_ms).append(1, ' ').append(device.via)});
    }
    RedisCommand add{"SADD", config_.redis_prefix + ":rules:factories"};
    add.insert(add.end(), factories.begin(), factories.end());
    commands.push_back(std::move(add));
    auto replies = redis_->pipeline(commands);
    if (!replies) {
        redis_.reset();
        return replies.error();
    }
    return {};
}

Result<RuleState> AlertStateStore::load() {
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    RuleState state;
    auto factories = redis_->command({"SMEMBERS", config_.redis_prefix + ":rules:factories"});
    if (!factories) {
        redis_.reset();
        return fail(factories.error());
    }
    for (const RedisReply& factory : factories->elements) {
        const std::string& factory_id = factory.text;
        if (!is_valid_identifier(factory_id)) {
            ++state.skipped;
            continue;
        }
        auto replies =
            redis_->pipeline({{"HGETALL", key(factory_id, "alerts")}, {"HGETALL", key(factory_id, "seen")}});
        if (!replies) {
            redis_.reset();
            return fail(replies.error());
        }
        const auto& alerts = (*replies)[0].elements;
        for (size_t i = 0; i + 1 < alerts.size(); i += 2) {
            const std::string& field = alerts[i].text;
            const size_t slash = field.find('/');
            // "@gateway/rule": a gateway's own alert.
            const bool gateway = !field.empty() && field[0] == '@';
            auto alert = slash == std::string::npos
                             ? std::nullopt
                             : parse_active_alert(
                                   alerts[i + 1].text, factory_id,
                                   std::string_view(field).substr(gateway ? 1 : 0, slash - (gateway ? 1 : 0)),
                                   std::string_view(field).substr(slash + 1));
            if (alert && gateway != alert->gateway) alert.reset();
            if (alert)
                state.alerts.push_back(std::move(*alert));
            else
                ++state.skipped;
        }
        const auto& seen = (*replies)[1].elements;
        for (size_t i = 0; i + 1 < seen.size(); i += 2) {
            int64_t ms = 0;
            const std::string& text = seen[i + 1].text;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
            // "<ms>" or "<ms> <gateway>"
            const std::string_view via = end < text.data() + text.size() && *end == ' '
                                             ? std::string_view(end + 1, text.data() + text.size() - end - 1)
                                             : std::string_view();
            if (!is_valid_identifier(seen[i].text) || ec != std::errc() ||
                (via.empty() && end != text.data() + text.size())) {
                ++state.skipped;
                continue;
            }
            // A gateway that does not read back is dropped, not the last-seen time.
            state.seen.push_back(
                {factory_id, seen[i].text, ms, is_valid_identifier(via) ? std::string(via) : ""});
        }
    }
    return state;
}

std::string AlertStateStore::save_instance_alert(std::string_view instance,
                                                 const std::optional<rules::ActiveAlert>& alert) {
    if (auto problem = connect(); !problem.empty()) return problem;
    const std::string where = key("_plantd", fmt::format("ingestion:{}", instance));
    auto reply =
        alert ? redis_->command({"SET", where, active_alert_json(*alert)}) : redis_->command({"DEL", where});
    if (!reply) {
        redis_.reset();
        return reply.error();
    }
    return {};
}

Result<std::optional<rules::ActiveAlert>> AlertStateStore::load_instance_alert(std::string_view instance) {
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    auto reply = redis_->command({"GET", key("_plantd", fmt::format("ingestion:{}", instance))});
    if (!reply) {
        redis_.reset();
        return fail(reply.error());
    }
    if (reply->text.empty()) return std::optional<rules::ActiveAlert>();
    // Read as an ordinary factory's alert, then given back its own factory (which no factory can be).
    auto alert = parse_active_alert(reply->text, "plantd", instance, "ingestion");
    if (alert) alert->factory_id = "_plantd";
    return alert;
}

}  // namespace plantd
