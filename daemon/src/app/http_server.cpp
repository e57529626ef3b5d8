#include "app/http_server.hpp"

#include <fmt/format.h>
#include <httplib.h>

#include "durability/dead_letter_store.hpp"
#include "util/thread_name.hpp"

namespace plantd {

ControlServer::ControlServer(MetricsRegistry& metrics, const Accounting& accounting, Health& health)
    : metrics_(metrics), accounting_(accounting), health_(health) {
    metrics_.add_counter("plantd_internal_errors_total",
                         "Exceptions caught at a thread or callback boundary.",
                         [this] { return static_cast<double>(internal_errors_.load()); });
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
    auto colon = listen.rfind(':');
    std::string host = listen.substr(0, colon);
    int port = std::stoi(listen.substr(colon + 1));
    server_ = std::make_unique<httplib::Server>();
    server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
        response.set_content(metrics_.render_prometheus(), "text/plain; version=0.0.4; charset=utf-8");
    });
    // /health: the process answers (liveness) and says what is degraded.
    server_->Get("/health", [this](const httplib::Request&, httplib::Response& response) {
        response.set_content(health_json(), "application/json");
    });
    // /ready: 200 only while subscribed and InfluxDB accepts writes.
    server_->Get("/ready", [this](const httplib::Request&, httplib::Response& response) {
        response.status = health_.ready() ? 200 : 503;
        response.set_content(health_json(), "application/json");
    });
    server_->set_exception_handler(
        [this](const httplib::Request&, httplib::Response& response, std::exception_ptr) {
            internal_errors_.fetch_add(1);
            response.status = 500;
        });
    if (port == 0) {
        port_ = server_->bind_to_any_port(host);
        if (port_ < 0) return fmt::format("[control] listen {}: cannot bind", listen);
    } else {
        if (!server_->bind_to_port(host, port)) {
            return fmt::format("[control] listen {}: cannot bind (in use, or not a local address?)", listen);
        }
        port_ = port;
    }
    thread_ = std::thread([this] {
        name_this_thread("plantd-http");
        server_->listen_after_bind();
    });
    return {};
}

void ControlServer::stop() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
}

}  // namespace plantd
