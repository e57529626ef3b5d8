// The daemon's alert plumbing that needs no server: the published JSON, the state kept in Redis
// (round trip, and garbage refused), the InfluxDB line, topics, acknowledgement messages, [rules].
#include <doctest/doctest.h>
#include <simdjson.h>

#include "alerting/alert_acks.hpp"
#include "alerting/alert_json.hpp"
#include "alerting/alert_sinks.hpp"
#include "config/config.hpp"

using namespace plantd;

namespace {

rules::ActiveAlert sample_alert() {
    rules::ActiveAlert a;
    a.factory_id = "f1";
    a.device_id = "press-01";
    a.rule_id = "overheat";
    a.alert_id = "0b6e2d8c-0000-4000-8000-000000000001";
    a.state = rules::AlertState::firing;
    a.severity = rules::Severity::critical;
    a.message = "Press \"overheating\"\n, = now";
    a.started_ms = 1'763'719'230'000;
    a.fired_ms = 1'763'719'260'000;
    a.value = {{"temperature", 88.2}, {"rate(axis.x)", -0.5}};
    return a;
}

}  // namespace

TEST_CASE("alert events: the contract's JSON, valid whatever the message holds") {
    rules::AlertEvent event;
    event.alert = sample_alert();
    event.at_ms = 1'763'719'260'000;
    event.sample_ms = 1'763'719'259'990;
    const std::string json = alert_event_json(event);
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    REQUIRE_FALSE(parser.parse(json).get(root));
    CHECK(std::string_view(root["alert_id"]) == "0b6e2d8c-0000-4000-8000-000000000001");
    CHECK(std::string_view(root["factory_id"]) == "f1");
    CHECK(std::string_view(root["device_id"]) == "press-01");
    CHECK(std::string_view(root["rule"]) == "overheat");
    CHECK(std::string_view(root["severity"]) == "critical");
    CHECK(std::string_view(root["state"]) == "firing");
    CHECK(std::string_view(root["message"]) == "Press \"overheating\"\n, = now");
    CHECK(double(root["value"]["temperature"]) == 88.2);
    CHECK(std::string_view(root["started_at"]) == "2025-11-21T10:00:30.000Z");
    CHECK(std::string_view(root["at"]) == "2025-11-21T10:01:00.000Z");
    CHECK(std::string_view(root["sample_at"]) == "2025-11-21T10:00:59.990Z");
    CHECK(root["resolved_at"].is_null());
    CHECK(std::string_view(root["event"]) == "transition");
    CHECK(bool(root["acknowledged"]) == false);
    event.kind = rules::AlertEvent::Kind::reminder;
    event.sample_ms.reset();
    REQUIRE_FALSE(parser.parse(alert_event_json(event)).get(root));
    CHECK(std::string_view(root["event"]) == "reminder");
    CHECK(root["sample_at"].is_null());
}

TEST_CASE("alert state in Redis: round trip, and anything malformed is refused") {
    rules::ActiveAlert a = sample_alert();
    a.acknowledged = true;
    a.acknowledged_by = "alice";
    a.acknowledged_ms = 1'763'719'300'000;
    auto back = parse_active_alert(active_alert_json(a), "f1", "press-01", "overheat");
    REQUIRE(back.has_value());
    CHECK(back->alert_id == a.alert_id);
    CHECK(back->state == rules::AlertState::firing);
    CHECK(back->severity == rules::Severity::critical);
    CHECK(back->message == a.message);
    CHECK(back->started_ms == a.started_ms);
    CHECK(back->fired_ms == a.fired_ms);
    CHECK(back->acknowledged);
    CHECK(back->acknowledged_by == "alice");
    CHECK(back->value == a.value);
    CHECK_FALSE(back->cleared_ms.has_value());
    a.cleared_ms = 1'763'719'310'000;  // kept firing after its condition cleared
    CHECK(parse_active_alert(active_alert_json(a), "f1", "press-01", "overheat")->cleared_ms == a.cleared_ms);
    // The key names factory, device and rule; a stored text cannot move an alert to another factory.
    CHECK(parse_active_alert(active_alert_json(a), "f 2", "press-01", "overheat") == std::nullopt);
    CHECK(parse_active_alert(active_alert_json(a), "f1", "", "overheat") == std::nullopt);
    CHECK(parse_active_alert("{}", "f1", "d", "r") == std::nullopt);
    CHECK(parse_active_alert("not json", "f1", "d", "r") == std::nullopt);
    std::string resolved = active_alert_json(a);
    resolved.replace(resolved.find("\"firing\""), 8, "\"resolved\"");
    CHECK(parse_active_alert(resolved, "f1", "d", "r") == std::nullopt);
    std::string bad_severity = active_alert_json(a);
    bad_severity.replace(bad_severity.find("\"critical\""), 10, "\"loud\"");
    CHECK(parse_active_alert(bad_severity, "f1", "d", "r") == std::nullopt);
    a.fired_ms.reset();
    a.state = rules::AlertState::pending;
    auto pending = parse_active_alert(active_alert_json(a), "f1", "press-01", "overheat");
    REQUIRE(pending.has_value());
    CHECK_FALSE(pending->fired_ms.has_value());
}

TEST_CASE("alert lines for InfluxDB and alert topics") {
    rules::AlertEvent event;
    event.alert = sample_alert();
    event.at_ms = 1'763'719'260'000;
    CHECK(alert_line("alerts", event) ==
          "alerts,device_id=press-01,factory_id=f1,rule=overheat,severity=critical,state=firing "
          "alert_id=\"0b6e2d8c-0000-4000-8000-000000000001\",message=\"Press \\\"overheating\\\"\n, = now\","
          "acknowledged=false,value.temperature=88.2,value.rate(axis.x)=-0.5 1763719260000");
    CHECK(alert_topic("factory/{factory_id}/alerts/{device_id}", "f1", "press-01") ==
          "factory/f1/alerts/press-01");
    CHECK(alert_topic("x/{device_id}/{factory_id}/{device_id}", "f", "d") == "x/d/f/d");
}

TEST_CASE("acknowledgement messages: only well-formed ones are taken") {
    auto ack =
        parse_alert_ack(alert_ack_message({"f1", "0b6e2d8c-0000-4000-8000-000000000001", "Alice Smith"}));
    REQUIRE(ack.has_value());
    CHECK(ack->factory_id == "f1");
    CHECK(ack->alert_id == "0b6e2d8c-0000-4000-8000-000000000001");
    CHECK(ack->by == "Alice Smith");
    CHECK_FALSE(parse_alert_ack("f1 id").has_value());
    CHECK_FALSE(parse_alert_ack("f/1 id by").has_value());
    CHECK_FALSE(parse_alert_ack("f1 id by\nnext").has_value());
    CHECK_FALSE(parse_alert_ack("f1 " + std::string(40, 'a') + " by").has_value());
    CHECK_FALSE(parse_alert_ack("*").has_value());
}

TEST_CASE("[rules] settings are checked") {
    auto error_of = [](std::string_view text) {
        auto result = load_config_text(text, "t.toml");
        return result.ok() ? std::string("(accepted)") : result.error();
    };
    CHECK(error_of("[rules]\nalert_topic = \"alerts/{device_id}\"\n").find("[rules] alert_topic") !=
          std::string::npos);
    CHECK(error_of("[rules]\nalert_topic = \"a/+/{factory_id}/{device_id}\"\n").find("alert_topic") !=
          std::string::npos);
    CHECK(error_of("[rules]\nvalue_ttl = \"10\"\n").find("value_ttl") != std::string::npos);
    CHECK(error_of("[rules]\nalert_measurement = \"_x\"\n").find("alert_measurement") != std::string::npos);
    CHECK(error_of("[rules]\nrule_dir = \"x\"\n").find("rule_dir") != std::string::npos);
    auto relative = load_config_text("[rules]\ndirectory = \"rules\"\n", "/etc/plantd/plantd.toml");
    REQUIRE(relative.ok());
    CHECK(relative->rules.directory == "/etc/plantd/rules");
}
