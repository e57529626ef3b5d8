#include "config/broker_uri.hpp"

#include <charconv>

#include <fmt/format.h>

namespace plantd {

Result<BrokerEndpoint> parse_broker_uri(std::string_view uri) {
    BrokerEndpoint endpoint;
    std::string_view rest;
    if (uri.starts_with("tcp://") || uri.starts_with("mqtt://")) {
        rest = uri.substr(uri.find("://") + 3);
    } else if (uri.starts_with("ssl://") || uri.starts_with("mqtts://")) {
        rest = uri.substr(uri.find("://") + 3);
        endpoint.tls = true;
        endpoint.port = 8883;
    } else {
        return fail(std::string("must start with tcp://, mqtt://, ssl:// or mqtts://"));
    }
    // user:password@host: refused before anything else is said about the text (an error naming a
    // "port" or "host" could otherwise repeat the password).
    if (rest.substr(0, rest.find_first_of("/?#")).find('@') != std::string_view::npos)
        return fail(
            std::string("must not hold a user name or password (they would show in logs): use [mqtt] "
                        "username and password"));
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    std::string_view port_text;
    if (rest.starts_with('[')) {
        size_t close = rest.find(']');
        if (close == std::string_view::npos) return fail(std::string("unclosed '[' in the IPv6 address"));
        endpoint.host = std::string(rest.substr(1, close - 1));
        rest = rest.substr(close + 1);
        if (rest.starts_with(':'))
            port_text = rest.substr(1);
        else if (!rest.empty())
            return fail(std::string("unexpected text after the IPv6 address"));
    } else {
        size_t colon = rest.find(':');
        if (colon != std::string_view::npos && rest.find(':', colon + 1) != std::string_view::npos) {
            return fail(std::string("an IPv6 address must be in brackets, e.g. tcp://[::1]:1883"));
        }
        endpoint.host = std::string(rest.substr(0, colon));
        if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
    }
    if (endpoint.host.empty()) return fail(std::string("has no host"));
    if (endpoint.host.find_first_of("/?#@ ") != std::string::npos) {
        return fail(fmt::format("host '{}' is not a host name or address", endpoint.host));
    }
    if (!port_text.empty() || rest.ends_with(':')) {
        int port = 0;
        auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
        if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
            return fail(fmt::format("port '{}' is not a number from 1 to 65535", port_text));
        }
        endpoint.port = port;
    }
    return endpoint;
}

}  // namespace plantd
