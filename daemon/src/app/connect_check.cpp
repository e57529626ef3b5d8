#include "app/connect_check.hpp"

#include <fmt/format.h>

#include "app/registry_tool.hpp"
#include "config/broker_uri.hpp"
#include "mqtt/mqtt_codec.hpp"
#include "mqtt/mqtt_handshake.hpp"
#include "mqtt/mqtt_transport.hpp"
#include "registry/mysql_session.hpp"
#include "registry/redis_connection.hpp"
#include "writer/influx_client.hpp"

namespace plantd {

namespace {

struct Line {
    std::ostream& out;
    bool all_ok = true;
    void operator()(std::string_view what, bool ok, const std::string& detail) {
        all_ok = all_ok && ok;
        out << fmt::format("{:<9} {:<6} {}\n", what, ok ? "ok" : "FAILED", detail);
    }
    void skipped(std::string_view what, const std::string& why) {
        out << fmt::format("{:<9} {:<6} {}\n", what, "-", why);
    }
};

std::string check_broker(const Config& config, std::string& reached) {
    auto endpoint = parse_broker_uri(config.mqtt.uri);
    if (!endpoint) return endpoint.error();
    MqttTransport transport;
    // Its own client id, with a clean session that ends with the connection: the daemon's persistent
    // session (and the messages the broker holds for it) is not touched.
    auto request = connect_request(
        config.mqtt, config.mqtt.version == 4 ? mqtt_codec::version_3_1_1 : mqtt_codec::version_5,
        config.mqtt.client_id + "-check");
    request.clean_start = true;
    request.session_expiry_s = 0;
    request.will_topic.clear();
    std::vector<char> in(64 * 1024);
    size_t begin = 0, end = 0;
    mqtt_codec::Connack connack;
    int64_t keepalive_ms = 0;
    const std::string problem =
        mqtt_handshake(transport, *endpoint, config.mqtt, request, {in, begin, end}, connack, keepalive_ms);
    if (!problem.empty())
        return fmt::format("{} (as client id {}: a broker whose ACL names client ids must allow it)", problem,
                           request.client_id);
    std::string goodbye;
    mqtt_codec::encode_disconnect(request.version, goodbye);
    transport.write_all(goodbye, 1'000);
    transport.close();
    reached = fmt::format("{} (MQTT {}, {}, client id {}{})", config.mqtt.uri,
                          request.version == mqtt_codec::version_5 ? "5" : "3.1.1",
                          endpoint->tls ? "TLS" : "no TLS", request.client_id,
                          request.username ? ", user " + *request.username : std::string());
    return {};
}

}  // namespace

int check_connections(const Config& config, std::ostream& out) {
    Line line{out};
    std::string reached;
    std::string problem = check_broker(config, reached);
    line("mqtt", problem.empty(),
         problem.empty() ? reached : fmt::format("{}: {}", config.mqtt.uri, problem));

    InfluxClient influx(config.influxdb);
    const WriteOutcome answer = influx.check_access();
    const std::string target = config.influxdb.api == InfluxApi::v1
                                   ? fmt::format("{} (v1)", config.influxdb.url)
                                   : fmt::format("{} (v2, org {}, bucket {})", config.influxdb.url,
                                                 config.influxdb.org, config.influxdb.bucket);
    if (answer.status == WriteStatus::ok)
        line("influxdb", true, target + ": answers and takes plantd's credentials");
    else
        line("influxdb", false,
             fmt::format(
                 "{}: {} (HTTP {}): {}{}", target, to_string(answer.status), answer.http_status,
                 answer.message,
                 answer.status == WriteStatus::unauthorized ? " — fix the credentials in [influxdb]" : ""));

    const std::string mysql = fmt::format("{}:{}/{}", config.registry.mysql_host, config.registry.mysql_port,
                                          config.registry.mysql_database);
    if (!config.registry.enabled) {
        line.skipped("mysql", "not used ([registry] enabled = false)");
    } else if (auto session = MysqlSession::connect(config.registry)) {
        line("mysql", true, fmt::format("{} as {}", mysql, config.registry.mysql_user));
    } else {
        line("mysql", false, fmt::format("{}: {}", mysql, session.error()));
    }

    // Redis serves the registry and, with rules, the alerts' acknowledgements: checked whenever named.
    if (config.registry.redis_host.empty()) {
        line.skipped("redis", "not used (no [registry] redis_host)");
    } else {
        const std::string redis =
            fmt::format("{}:{}", config.registry.redis_host, config.registry.redis_port);
        auto connection = RedisConnection::connect(config.registry, config.registry.connect_timeout_ms);
        if (!connection) {
            line("redis", false, fmt::format("{}: {}", redis, connection.error()));
        } else if (auto pong = (*connection)->command({"PING"}); !pong) {
            line("redis", false, fmt::format("{}: PING: {}", redis, pong.error()));
        } else {
            line("redis", true, redis + ": PING answered");
        }
    }
    return line.all_ok ? exit_ok : exit_failed;
}

}  // namespace plantd
