#include "app/startup_checks.hpp"

#include <spdlog/spdlog.h>

#include "registry/mysql_session.hpp"
#include "writer/influx_client.hpp"

namespace plantd {

bool recheck_influxdb(const InfluxConfig& config, Health& health) {
    // On the main thread (signals, the watchdog): a second at most.
    InfluxConfig quick = config;
    quick.request_timeout_ms = 1'000;
    InfluxClient influx(quick);
    const WriteOutcome answer = influx.check_access();
    if (answer.status != WriteStatus::ok) return false;
    health.influx_failing = false;
    health.set_influx_error({});
    return true;
}

int check_dependencies(const Config& config, Health& health) {
    InfluxClient influx(config.influxdb);
    const WriteOutcome answer = influx.check_access();
    if (answer.status == WriteStatus::unauthorized) {
        spdlog::critical(
            "{}: configuration error: InfluxDB at {} refused plantd's credentials (HTTP {}: {}); fix "
            "[influxdb] {}",
            config.source, config.influxdb.url, answer.http_status, answer.message,
            config.influxdb.api == InfluxApi::v1 ? "username and password" : "token (and org)");
        return 2;
    }
    if (answer.status == WriteStatus::network_error || answer.status == WriteStatus::server_error ||
        answer.status == WriteStatus::throttled) {
        const std::string error = fmt::format("not answering at start-up: {} (HTTP {}): {}",
                                              to_string(answer.status), answer.http_status, answer.message);
        spdlog::error(
            "influxdb: {} at {}; plantd starts anyway, keeps what it receives and writes once it answers "
            "(/ready is 503 meanwhile)",
            error, config.influxdb.url);
        health.set_influx_error(error);
        health.influx_failing = true;
    }
    if (config.registry.enabled) {
        auto session = MysqlSession::connect(config.registry);
        if (!session && is_access_denied_text(session.error())) {
            spdlog::critical(
                "{}: configuration error: {}; fix [registry] mysql_user, mysql_password (or the grants "
                "on mysql_database)",
                config.source, session.error());
            return 2;
        }
        if (!session) {
            health.set_registry_error(session.error());
            spdlog::error(
                "registry: {}; plantd starts on the copy in Redis, if there is one, and keeps trying",
                session.error());
        }
    }
    return 0;
}

}  // namespace plantd
