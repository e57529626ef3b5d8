#include "app/http_server.hpp"

#include <fmt/format.h>

#include "durability/dead_letter_store.hpp"
#include "util/thread_name.hpp"

namespace plantd {

ControlServer::ControlServer(MetricsRegistry& metrics, const Accounting& accounting, Health& health)
    : metrics_(metrics), accounting_(accounting), health_(health) {
    metrics_.add_counter("plantd_internal_errors_total",
                         "Exceptions caught at a thread or callback boundary.",
                         [this] { return server_ ? static_cast<double>(server_->handler_errors()) : 0.0; });
    metrics_.add_counter(
        "plantd_control_rejected_requests_total",
        "Control-port requests refused for breaking a limit (method, body, header size) or for want of room.",
        [this] { return server_ ? static_cast<double>(server_->rejected_requests()) : 0.0; });
    metrics_.add_counter(
        "plantd_control_timed_out_connections_total",
        "Control-port connections closed because the request or the response took too long, "
        "or to make room for a new one.",
        [this] { return server_ ? static_cast<double>(server_->timed_out_connections()) : 0.0; });
}

ControlServer::~ControlServer() {
    stop();
}

std::string ControlServer::health_json() const {
    std::string out = "{\"status\":";
    const bool degraded = health_.degraded();
    append_json_string(out, health_.draining ? "draining" : degraded ? "degraded" : "ok");
    out += fmt::format(",\"mqtt_connected\":{},\"mqtt_subscribed\":{},\"influxdb_ok\":{}",
                       health_.mqtt_connected.load(), health_.mqtt_subscribed.load(),
                       !health_.influx_failing.load());
    out += ",\"influxdb_error\":";
    append_json_string(out, health_.influx_error());
    out += ",\"registry_error\":";
    append_json_string(out, health_.registry_error());
    // registry: "cache" = MySQL unreachable at start-up, running on the copy in Redis.
    out += fmt::format(",\"registry\":\"{}\",\"redis\":\"{}\"",
                       !health_.registry_enabled     ? "off"
                       : health_.registry_from_cache ? "cache"
                       : health_.registry_failing    ? "failing"
                                                     : "ok",
                       !health_.redis_enabled  ? "off"
                       : health_.redis_failing ? "failing"
                                               : "ok");
    // rules: "reload_failed" = the previous rules still run; "behind" = records were dropped for the rules.
    out += fmt::format(",\"rules\":\"{}\",\"alert_state\":\"{}\",\"alert_delivery\":\"{}\"",
                       !health_.rules_enabled        ? "off"
                       : health_.rules_reload_failed ? "reload_failed"
                       : health_.rules_behind        ? "behind"
                                                     : "ok",
                       !health_.rules_enabled        ? "off"
                       : health_.rules_state_failing ? "failing"
                                                     : "ok",
                       !health_.rules_enabled   ? "off"
                       : health_.alerts_failing ? "retrying"
                                                : "ok");
    // rules that cannot be right: a metric no device sent, a factory the registry does not know (log names
    // them).
    out += fmt::format(",\"rule_warnings\":{}", health_.rule_warnings.load());
    // cluster: this member's instance id, the members it saw (with what each owns) and its own factories.
    const std::string cluster = health_.cluster_json();
    out += ",\"cluster\":";
    out += cluster.empty() ? std::string("\"off\"") : cluster;
    // wal: "failing" = cannot write (disk full?), "full" = holds wal_max_bytes; either way nothing is
    // acknowledged. buffer: "in_use" = batches wait on disk for InfluxDB, "full" = at buffer_max_bytes.
    out += fmt::format(",\"wal\":\"{}\",\"buffer\":\"{}\"",
                       !health_.wal_enabled  ? "off"
                       : health_.wal_failing ? "failing"
                       : health_.wal_full    ? "full"
                                             : "ok",
                       !health_.buffer_enabled ? "off"
                       : health_.buffer_full   ? "full"
                       : health_.buffer_in_use ? "in_use"
                                               : "ok");
    out += fmt::format(",\"points_buffered\":{}}}", accounting_.points_buffered.load());
    return out;
}

std::string ControlServer::start(const std::string& listen) {
    const auto colon = listen.rfind(':');
    std::string host = listen.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const int port = std::stoi(listen.substr(colon + 1));
    server_ = std::make_unique<HttpListener>();
    server_->route("/metrics", [this] {
        return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render_prometheus()};
    });
    // /health: the process answers (liveness) and says what is degraded.
    server_->route("/health", [this] { return HttpResponse{200, "application/json", health_json()}; });
    // /ready: 200 only while subscribed and InfluxDB accepts writes.
    server_->route("/ready", [this] {
        return HttpResponse{health_.ready() ? 200 : 503, "application/json", health_json()};
    });
    if (auto problem = server_->start(host, port); !problem.empty()) {
        server_.reset();
        return fmt::format("[control] listen {}: cannot bind ({})", listen, problem);
    }
    port_ = server_->port();
    return {};
}

void ControlServer::stop() {
    if (server_) server_->stop();
}

}  // namespace plantd
