#include "alerting/alert_json.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <cmath>

#include "common/identifiers.hpp"
#include "util/clock.hpp"
#include "util/json_text.hpp"

namespace plantd {

namespace {

void append_number(std::string& out, double value) {
    if (std::isfinite(value))
        out += fmt::format("{}", value);
    else
        out += "null";
}

void append_field(std::string& out, std::string_view key, std::string_view text) {
    out += ',';
    append_json_string(out, key);
    out += ':';
    append_json_string(out, text);
}

void append_time(std::string& out, std::string_view key, std::optional<int64_t> ms) {
    out += ',';
    append_json_string(out, key);
    out += ':';
    if (ms)
        append_json_string(out, format_rfc3339_ms(*ms));
    else
        out += "null";
}

}  // namespace

std::string alert_value_json(const std::vector<rules::MetricValue>& value) {
    std::string out = "{";
    for (size_t i = 0; i < value.size(); ++i) {
        if (i) out += ',';
        append_json_string(out, value[i].name);
        out += ':';
        append_number(out, value[i].value);
    }
    out += '}';
    return out;
}

std::string alert_event_json(const rules::AlertEvent& event) {
    const rules::ActiveAlert& a = event.alert;
    std::string out = "{\"alert_id\":";
    append_json_string(out, a.alert_id);
    append_field(out, "factory_id", a.factory_id);
    append_field(out, "device_id", a.device_id);
    append_field(out, "rule", a.rule_id);
    append_field(out, "severity", rules::to_string(a.severity));
    append_field(out, "state", rules::to_string(a.state));
    out += ",\"value\":" + alert_value_json(a.value);
    append_field(out, "message", a.message);
    append_time(out, "started_at", a.started_ms);
    append_time(out, "at", event.at_ms);
    append_time(out, "sample_at", event.sample_ms);
    append_time(out, "fired_at", a.fired_ms);
    append_time(out, "resolved_at", event.resolved_ms);
    if (!event.reason.empty()) append_field(out, "reason", event.reason);
    if (a.gateway) out += ",\"gateway\":true";
    out += fmt::format(",\"acknowledged\":{}", a.acknowledged);
    if (a.acknowledged) {
        append_field(out, "acknowledged_by", a.acknowledged_by);
        append_time(out, "acknowledged_at", a.acknowledged_ms);
    }
    append_field(out, "event",
                 event.kind == rules::AlertEvent::Kind::transition        ? "transition"
                 : event.kind == rules::AlertEvent::Kind::acknowledgement ? "acknowledgement"
                                                                          : "reminder");
    out += '}';
    return out;
}

std::string active_alert_json(const rules::ActiveAlert& a) {
    std::string out = "{\"alert_id\":";
    append_json_string(out, a.alert_id);
    append_field(out, "kind", a.kind == rules::RuleKind::deadman ? "deadman" : "threshold");
    append_field(out, "state", rules::to_string(a.state));
    append_field(out, "severity", rules::to_string(a.severity));
    append_field(out, "message", a.message);
    out += fmt::format(",\"started_ms\":{},\"fired_ms\":{},\"acknowledged\":{},\"acknowledged_ms\":{}",
                       a.started_ms, a.fired_ms ? std::to_string(*a.fired_ms) : "null", a.acknowledged,
                       a.acknowledged_ms);
    append_field(out, "acknowledged_by", a.acknowledged_by);
    if (a.cleared_ms) out += fmt::format(",\"cleared_ms\":{}", *a.cleared_ms);
    if (a.gateway) out += ",\"gateway\":true";
    out += ",\"value\":" + alert_value_json(a.value);
    out += '}';
    return out;
}

std::optional<rules::ActiveAlert> parse_active_alert(std::string_view json, std::string_view factory_id,
                                                     std::string_view device_id, std::string_view rule_id) {
    if (!is_valid_identifier(factory_id) || !is_valid_identifier(device_id) ||
        !is_valid_identifier(rule_id) || json.size() > 64 * 1024)
        return std::nullopt;
    rules::ActiveAlert a;
    a.factory_id = factory_id;
    a.device_id = device_id;
    a.rule_id = rule_id;
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(json.data(), json.size()).get(root)) return std::nullopt;
    std::string_view alert_id, kind, state, severity, message, acknowledged_by;
    simdjson::dom::object value;
    if (root["alert_id"].get(alert_id) || root["kind"].get(kind) || root["state"].get(state) ||
        root["severity"].get(severity) || root["message"].get(message) ||
        root["started_ms"].get(a.started_ms) || root["acknowledged"].get(a.acknowledged) ||
        root["acknowledged_ms"].get(a.acknowledged_ms) || root["acknowledged_by"].get(acknowledged_by) ||
        root["value"].get(value))
        return std::nullopt;
    if (alert_id.empty() || alert_id.size() > 64 || contains_control_character(alert_id)) return std::nullopt;
    if (!rules::parse_alert_state(state, a.state) || a.state == rules::AlertState::resolved)
        return std::nullopt;
    if (!rules::parse_severity(severity, a.severity)) return std::nullopt;
    a.alert_id = alert_id;
    a.kind = kind == "deadman" ? rules::RuleKind::deadman : rules::RuleKind::threshold;
    a.message = message;
    a.acknowledged_by = acknowledged_by;
    int64_t fired = 0;
    if (!root["fired_ms"].get(fired)) a.fired_ms = fired;
    int64_t cleared = 0;
    if (!root["cleared_ms"].get(cleared)) a.cleared_ms = cleared;
    bool gateway = false;
    if (!root["gateway"].get(gateway)) a.gateway = gateway;
    for (auto field : value) {
        double number = NAN;
        if (field.value.get(number) && !field.value.is_null()) return std::nullopt;
        a.value.push_back({std::string(field.key), number});
    }
    return a;
}

}  // namespace plantd
