#pragma once
// The broker address in [mqtt] uri.
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace plantd {

struct BrokerEndpoint {
    std::string host;
    int port = 1883;
    bool tls = false;
};

// tcp:// and mqtt:// (plain), ssl:// and mqtts:// (TLS); host names, IPv4 or [IPv6]; the port
// defaults to 1883 or 8883. The error says what is wrong with the text.
Result<BrokerEndpoint> parse_broker_uri(std::string_view uri);

}  // namespace plantd
