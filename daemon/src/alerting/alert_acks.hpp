#pragma once
// Acknowledgements travel from `plantd alerts ack` (which records them in MySQL) to the running
// daemons over Redis pub/sub: channel {prefix}:alerts:acks, message "factory alert_id by".
#include <optional>
#include <string>

#include "config/config.hpp"

namespace plantd {

struct AlertAck {
    std::string factory_id;
    std::string alert_id;
    std::string by;
};

std::string alert_ack_channel(const RegistryConfig& config);
std::string alert_ack_message(const AlertAck& ack);
// Anyone who can publish may send anything: only well-formed messages are taken.
std::optional<AlertAck> parse_alert_ack(const std::string& message);
// Publishes an acknowledgement; "" or why not.
std::string publish_alert_ack(const RegistryConfig& config, const AlertAck& ack);

}  // namespace plantd
