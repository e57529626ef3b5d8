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
    return ensure_connected(redis_, config_, timeout_ms);
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
        if (std::string problem = read_factory(factory_id, state); !problem.empty()) return fail(problem);
    }
    return state;
}

Result<RuleState> AlertStateStore::load_factory(const std::string& factory_id, std::string& position) {
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    RuleState state;
    if (std::string problem = read_factory(factory_id, state); !problem.empty()) return fail(problem);
    auto reply =
        redis_->command({"GET", fmt::format("{}:cluster:{{{}}}:position", config_.redis_prefix, factory_id)});
    if (!reply) {
        redis_.reset();
        return fail(reply.error());
    }
    position = reply->text;
    return state;
}

std::string AlertStateStore::read_factory(const std::string& factory_id, RuleState& state) {
    {
        auto replies =
            redis_->pipeline({{"HGETALL", key(factory_id, "alerts")}, {"HGETALL", key(factory_id, "seen")}});
        if (!replies) {
            redis_.reset();
            return replies.error();
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
    return {};
}

namespace {
// KEYS: owner, alerts, seen, position, records. ARGV: owner, position ("": unchanged), the number of
// alert fields, then (field, JSON or "" to delete) pairs, then (device, seen) pairs.
constexpr const char* fenced_save_script = R"(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[2], ARGV[i]) else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[4], ARGV[2])
  redis.call('XTRIM', KEYS[5], 'MINID', ARGV[2])
end
return 1)";
}  // namespace

AlertStateStore::Fenced AlertStateStore::save_fenced(std::string_view factory_id, std::string_view owner,
                                                     const std::vector<rules::AlertChange>& alerts,
                                                     const std::vector<rules::DeviceSeen>& seen,
                                                     std::string_view position, std::string& problem) {
    if (problem = connect(); !problem.empty()) return Fenced::failed;
    const std::string cluster_key = fmt::format("{}:cluster:{{{}}}:", config_.redis_prefix, factory_id);
    RedisCommand script{"EVAL",
                        fenced_save_script,
                        "5",
                        cluster_key + "owner",
                        key(factory_id, "alerts"),
                        key(factory_id, "seen"),
                        cluster_key + "position",
                        cluster_key + "records",
                        std::string(owner),
                        std::string(position),
                        std::to_string(alerts.size())};
    for (const auto& change : alerts) {
        script.push_back(change.device_id + "/" + change.rule_id);  // a gateway's device id has its '@'

        script.push_back(change.alert ? active_alert_json(*change.alert) : std::string());
    }
    for (const auto& device : seen) {
        script.push_back(device.device_id);
        script.push_back(device.via.empty()
                             ? std::to_string(device.last_seen_ms)
                             : std::to_string(device.last_seen_ms).append(1, ' ').append(device.via));
    }
    auto replies = redis_->pipeline(
        {script, {"SADD", config_.redis_prefix + ":rules:factories", std::string(factory_id)}});
    if (!replies) {
        redis_.reset();
        problem = replies.error();
        return Fenced::failed;
    }
    return (*replies)[0].integer == 1 ? Fenced::saved : Fenced::not_owner;
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
