#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "decoding/topic_template.hpp"

using namespace plantd;

TEST_CASE("a device template matches whole levels and captures factory and device") {
    auto tmpl = TopicTemplate::parse("factory/{factory_id}/device/{device_id}/telemetry", TopicKind::device);
    REQUIRE(tmpl.ok());
    CHECK(tmpl->subscription_filter() == "factory/+/device/+/telemetry");
    auto match = tmpl->match("factory/f1/device/press-01/telemetry");
    REQUIRE(match);
    CHECK(match->factory_id == "f1");
    CHECK(match->source_id == "press-01");
    CHECK(match->kind == TopicKind::device);
    CHECK_FALSE(tmpl->match("factory/f1/device/press-01/telemetry/extra"));
    CHECK_FALSE(tmpl->match("factory/f1/device/press-01"));
    CHECK_FALSE(tmpl->match("factory/f1/gateway/g1/telemetry"));
    CHECK_FALSE(tmpl->match("Factory/f1/device/d/telemetry"));
    CHECK_FALSE(tmpl->match(""));
    auto empty_level = tmpl->match("factory//device/d/telemetry");
    REQUIRE(empty_level);  // matched; the empty identifier is refused by the router
    CHECK(empty_level->factory_id.empty());
}

TEST_CASE("templates with placeholders anywhere, and gateway templates") {
    auto tmpl = TopicTemplate::parse("{factory_id}/{gateway_id}", TopicKind::gateway);
    REQUIRE(tmpl.ok());
    CHECK(tmpl->subscription_filter() == "+/+");
    auto match = tmpl->match("plantA/gw7");
    REQUIRE(match);
    CHECK(match->factory_id == "plantA");
    CHECK(match->source_id == "gw7");
    CHECK(match->kind == TopicKind::gateway);
}

TEST_CASE("bad templates are refused with a reason") {
    struct Case {
        const char* text;
        TopicKind kind;
        const char* error_part;
    };
    for (auto c : {Case{"", TopicKind::device, "empty"},
                   Case{"factory/{factory_id}/telemetry", TopicKind::device, "no {device_id}"},
                   Case{"factory/{device_id}/telemetry", TopicKind::device, "no {factory_id}"},
                   Case{"factory/{factory_id}/{gateway_id}", TopicKind::device, "placeholder"},
                   Case{"factory/f-{factory_id}/{device_id}", TopicKind::device, "whole topic level"},
                   Case{"factory/{factory_id}/{device_id}/#", TopicKind::device, "wildcards"},
                   Case{"factory/+/{factory_id}/{device_id}", TopicKind::device, "wildcards"},
                   Case{"factory/{factory_id}//{device_id}", TopicKind::device, "empty topic level"},
                   Case{"$SYS/{factory_id}/{device_id}", TopicKind::device, "reserved"},
                   Case{"{factory_id}/{factory_id}/{device_id}", TopicKind::device, "twice"},
                   Case{"{factory_id}/{device_id}", TopicKind::gateway, "{gateway_id}"},
                   Case{"{factory_id}/x", TopicKind::gateway, "no {gateway_id}"}}) {
        std::string text = c.text;
        CAPTURE(text);
        auto result = TopicTemplate::parse(c.text, c.kind);
        REQUIRE_FALSE(result.ok());
        CAPTURE(result.error());
        CHECK(result.error().find(c.error_part) != std::string::npos);
    }
}

TEST_CASE("the router validates identifiers from the topic") {
    TopicRouter router(
        *TopicTemplate::parse("factory/{factory_id}/device/{device_id}/telemetry", TopicKind::device),
        *TopicTemplate::parse("factory/{factory_id}/gateway/{gateway_id}/telemetry", TopicKind::gateway));
    TopicMatch match;
    CHECK(router.route("factory/f1/device/d1/telemetry", match) == TopicError::none);
    CHECK(match.kind == TopicKind::device);
    CHECK(router.route("factory/f1/gateway/g1/telemetry", match) == TopicError::none);
    CHECK(match.kind == TopicKind::gateway);
    CHECK(router.route("factory/f1/other/g1/telemetry", match) == TopicError::no_match);
    CHECK(router.route("factory/bad id/device/d1/telemetry", match) == TopicError::invalid_factory_id);
    CHECK(router.route("factory/-f/device/d1/telemetry", match) == TopicError::invalid_factory_id);
    CHECK(router.route("factory//device/d1/telemetry", match) == TopicError::invalid_factory_id);
    CHECK(router.route("factory/f1/device/d*1/telemetry", match) == TopicError::invalid_source_id);
    CHECK(router.route("factory/f1/device/" + std::string(65, 'x') + "/telemetry", match) ==
          TopicError::invalid_source_id);
    CHECK(router.subscription_filters() ==
          std::vector<std::string>{"factory/+/device/+/telemetry", "factory/+/gateway/+/telemetry"});
}
