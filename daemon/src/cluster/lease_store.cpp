#include "cluster/lease_store.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>

#include "common/identifiers.hpp"
#include "util/json_writer.hpp"

namespace plantd {

namespace {
constexpr int64_t timeout_ms = 1'000;

// KEYS: owner, fence. ARGV: instance, lease ms. The token, or nil while someone holds the lease.
constexpr const char* acquire_script = R"(
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token)";
// KEYS: owner. ARGV: expected holder, lease ms. 1: renewed; 0: no longer ours.
constexpr const char* renew_script = R"(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0)";
// KEYS: owner. ARGV: expected holder.
constexpr const char* release_script = R"(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0)";

std::optional<uint64_t> parse_token(std::string_view text) {
    uint64_t token = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), token);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return token;
}
}  // namespace

std::string owner_value(std::string_view instance, uint64_t token) {
    return fmt::format("{} {}", instance, token);
}

std::string member_json(const MemberInfo& member) {
    JsonWriter json;
    json.begin_object()
        .field("instance", member.instance)
        .field("version", member.version)
        .key("heartbeat_ms")
        .number(member.heartbeat_ms)
        .key("lease_ms")
        .number(member.lease_ms)
        .key("valid_until_ms")
        .number(member.valid_until_ms)
        .key("owned")
        .begin_array();
    for (const auto& factory : member.owned) json.string(factory);
    json.end_array().end_object();
    return json.text();
}

std::optional<MemberInfo> parse_member(std::string_view text) {
    if (text.size() > 4 * 1024 * 1024) return std::nullopt;
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(text.data(), text.size()).get(root)) return std::nullopt;
    MemberInfo member;
    std::string_view instance, version;
    simdjson::dom::array owned;
    if (root["instance"].get(instance) || root["version"].get(version) ||
        root["heartbeat_ms"].get(member.heartbeat_ms) || root["lease_ms"].get(member.lease_ms) ||
        root["valid_until_ms"].get(member.valid_until_ms) || root["owned"].get(owned))
        return std::nullopt;
    // Times far outside any clock's range would overflow the members' arithmetic on them.
    constexpr int64_t far = int64_t{1} << 52;
    if (!is_valid_identifier(instance) || member.heartbeat_ms < 0 || member.heartbeat_ms > far ||
        member.lease_ms < 0 || member.lease_ms > far || member.valid_until_ms < -far ||
        member.valid_until_ms > far)
        return std::nullopt;
    member.instance = instance;
    member.version = version;
    for (auto element : owned) {
        std::string_view factory;
        if (element.get(factory) || !is_valid_identifier(factory)) return std::nullopt;
        member.owned.emplace_back(factory);
    }
    return member;
}

LeaseStore::LeaseStore(const RegistryConfig& config) : config_(config) {}

std::string LeaseStore::connect() {
    return ensure_connected(redis_, config_, timeout_ms);
}

std::string LeaseStore::key(std::string_view factory, std::string_view what) const {
    // {factory} in braces: a factory's keys (and its rule state) stay in one Redis Cluster slot.
    return fmt::format("{}:cluster:{{{}}}:{}", config_.redis_prefix, factory, what);
}

Result<std::optional<uint64_t>> LeaseStore::acquire(std::string_view factory, std::string_view instance,
                                                    int64_t lease_ms) {
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    auto reply = redis_->command({"EVAL", acquire_script, "2", key(factory, "owner"), key(factory, "fence"),
                                  std::string(instance), std::to_string(lease_ms)});
    if (!reply) return failed<std::optional<uint64_t>>(reply.error());
    if (reply->type != RedisReply::Type::integer) return std::optional<uint64_t>();
    return std::optional<uint64_t>(static_cast<uint64_t>(reply->integer));
}

Result<std::vector<bool>> LeaseStore::renew(const std::vector<std::pair<std::string, uint64_t>>& leases,
                                            std::string_view instance, int64_t lease_ms) {
    if (leases.empty()) return std::vector<bool>();
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    std::vector<RedisCommand> commands;
    for (const auto& [factory, token] : leases)
        commands.push_back({"EVAL", renew_script, "1", key(factory, "owner"), owner_value(instance, token),
                            std::to_string(lease_ms)});
    auto replies = redis_->pipeline(commands);
    if (!replies) return failed<std::vector<bool>>(replies.error());
    std::vector<bool> renewed;
    for (const auto& reply : *replies) renewed.push_back(reply.integer == 1);
    return renewed;
}

std::string LeaseStore::release(std::string_view factory, std::string_view instance, uint64_t token) {
    if (auto problem = connect(); !problem.empty()) return problem;
    auto reply =
        redis_->command({"EVAL", release_script, "1", key(factory, "owner"), owner_value(instance, token)});
    if (!reply) {
        redis_.reset();
        return reply.error();
    }
    return {};
}

Result<std::vector<std::optional<LeaseHolder>>> LeaseStore::holders(
    const std::vector<std::string>& factories) {
    using Holders = std::vector<std::optional<LeaseHolder>>;
    if (factories.empty()) return Holders();
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    std::vector<RedisCommand> commands;
    for (const auto& factory : factories) {
        commands.push_back({"GET", key(factory, "owner")});
        commands.push_back({"PTTL", key(factory, "owner")});
    }
    auto replies = redis_->pipeline(commands);
    if (!replies) return failed<Holders>(replies.error());
    Holders result;
    for (size_t i = 0; i + 1 < replies->size(); i += 2) {
        const std::string& value = (*replies)[i].text;
        const size_t space = value.rfind(' ');
        auto token = space == std::string::npos ? std::nullopt
                                                : parse_token(std::string_view(value).substr(space + 1));
        if ((*replies)[i].type != RedisReply::Type::string || !token) {
            result.emplace_back();
            continue;
        }
        result.push_back(LeaseHolder{value.substr(0, space), *token, (*replies)[i + 1].integer});
    }
    return result;
}

std::string LeaseStore::announce(const MemberInfo& member) {
    if (auto problem = connect(); !problem.empty()) return problem;
    auto reply = redis_->command(
        {"HSET", config_.redis_prefix + ":cluster:members", member.instance, member_json(member)});
    if (!reply) {
        redis_.reset();
        return reply.error();
    }
    return {};
}

std::string LeaseStore::withdraw(std::string_view instance) {
    if (auto problem = connect(); !problem.empty()) return problem;
    auto reply = redis_->command({"HDEL", config_.redis_prefix + ":cluster:members", std::string(instance)});
    if (!reply) {
        redis_.reset();
        return reply.error();
    }
    return {};
}

Result<std::vector<MemberInfo>> LeaseStore::members() {
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    auto reply = redis_->command({"HGETALL", config_.redis_prefix + ":cluster:members"});
    if (!reply) return failed<std::vector<MemberInfo>>(reply.error());
    std::vector<MemberInfo> members;
    for (size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
        auto member = parse_member(reply->elements[i + 1].text);
        if (member && member->instance == reply->elements[i].text) members.push_back(std::move(*member));
    }
    return members;
}

std::string LeaseStore::add_factories(const std::vector<std::string>& factories) {
    if (factories.empty()) return {};
    if (auto problem = connect(); !problem.empty()) return problem;
    RedisCommand add{"SADD", config_.redis_prefix + ":cluster:factories"};
    add.insert(add.end(), factories.begin(), factories.end());
    auto reply = redis_->command(add);
    if (!reply) {
        redis_.reset();
        return reply.error();
    }
    return {};
}

Result<std::vector<std::string>> LeaseStore::factories() {
    if (auto problem = connect(); !problem.empty()) return fail(problem);
    auto replies = redis_->pipeline({{"SMEMBERS", config_.redis_prefix + ":cluster:factories"},
                                     {"SMEMBERS", config_.redis_prefix + ":rules:factories"}});
    if (!replies) return failed<std::vector<std::string>>(replies.error());
    std::vector<std::string> factories;
    for (const auto& reply : *replies)
        for (const auto& element : reply.elements)
            if (is_valid_identifier(element.text)) factories.push_back(element.text);
    std::sort(factories.begin(), factories.end());
    factories.erase(std::unique(factories.begin(), factories.end()), factories.end());
    return factories;
}

}  // namespace plantd
