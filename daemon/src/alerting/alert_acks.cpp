#include "alerting/alert_acks.hpp"

#include "common/identifiers.hpp"
#include "registry/redis_connection.hpp"

namespace plantd {

std::string alert_ack_channel(const RegistryConfig& config) {
    return config.redis_prefix + ":alerts:acks";
}

std::string alert_ack_message(const AlertAck& ack) {
    return ack.factory_id + " " + ack.alert_id + " " + ack.by;
}

std::optional<AlertAck> parse_alert_ack(const std::string& message) {
    const size_t first = message.find(' ');
    const size_t second = first == std::string::npos ? first : message.find(' ', first + 1);
    if (second == std::string::npos) return std::nullopt;
    AlertAck ack{message.substr(0, first), message.substr(first + 1, second - first - 1),
                 message.substr(second + 1)};
    if (!is_valid_identifier(ack.factory_id) || ack.alert_id.empty() || ack.alert_id.size() > 36 ||
        contains_control_character(ack.alert_id) || ack.by.empty() || ack.by.size() > 128 ||
        contains_control_character(ack.by))
        return std::nullopt;
    return ack;
}

std::string publish_alert_ack(const RegistryConfig& config, const AlertAck& ack) {
    auto redis = RedisConnection::connect(config, config.connect_timeout_ms);
    if (!redis) return redis.error();
    auto reply = (*redis)->command({"PUBLISH", alert_ack_channel(config), alert_ack_message(ack)});
    if (!reply) return reply.error();
    return {};
}

}  // namespace plantd
