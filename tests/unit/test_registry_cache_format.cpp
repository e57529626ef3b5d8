// The registry's copy in Redis: what plantd writes it reads back exactly, and what anybody else could
// have written there is checked as strictly as MySQL rows (Redis is shared, so it is not trusted).
#include <doctest/doctest.h>

#include "decoding/record.hpp"
#include "encoding/line_protocol.hpp"
#include "registry/device_registry.hpp"
#include "registry/registry_cache.hpp"
#include "registry/registry_values.hpp"

using namespace plantd;

TEST_CASE("devices round-trip through their Redis form, hostile tag values included") {
    RegistryDevice device;
    device.enabled = false;
    device.tags = {{"line", "L1"}, {"model", "X 200,rev=2 \"q\" a\\b é 漢"}, {"site", "a\\\\b"}};
    const std::string text = RegistryCache::encode_device(device);
    auto back = RegistryCache::decode_device(text);
    REQUIRE(back);
    CHECK(back->enabled == false);
    CHECK(back->tags == device.tags);

    for (const char* bad : {"", "{}", "not json", R"({"enabled":true})", R"({"enabled":1,"tags":[]})",
                            R"({"enabled":true,"tags":[["k"]]})",
                            R"({"enabled":true,"tags":[["device_id","spoof"]]})",  // reserved key
                            R"({"enabled":true,"tags":[["factory_id","f2"]]})",    // reserved key
                            R"({"enabled":true,"tags":[["k","v\u0000"]]})",        // control character
                            R"({"enabled":true,"tags":[["k","a\\"]]})"}) {         // unstorable backslash
        CAPTURE(bad);
        CHECK_FALSE(RegistryCache::decode_device(bad));
    }
}

TEST_CASE("factories round-trip through their Redis form") {
    RegistryFactory factory;
    factory.enabled = false;
    factory.unknown_devices = UnknownDevicePolicy::auto_register;
    factory.rate_limit_per_s = 12.5;
    factory.rate_burst = 40;
    factory.destination = "plant_f1";
    factory.parameters.emplace("temp", RegistryParameter(ParameterType::float_number, "degC", 0));
    factory.parameters.emplace("count", RegistryParameter(ParameterType::integer, "", 0));
    factory.parameters.emplace("axis.x \"q\"", RegistryParameter(ParameterType::string, "", 0));
    const std::string text = RegistryCache::encode_factory(factory);
    auto back = RegistryCache::decode_factory(text);
    REQUIRE(back);
    const RegistryFactory& f = **back;
    CHECK(f.enabled == false);
    CHECK(f.unknown_devices == UnknownDevicePolicy::auto_register);
    CHECK(f.rate_limit_per_s == 12.5);
    CHECK(f.rate_burst == 40);
    CHECK(f.destination == "plant_f1");
    REQUIRE(f.parameters.size() == 3);
    CHECK(f.parameters.at("temp").type == ParameterType::float_number);
    CHECK(f.parameters.at("temp").unit == "degC");
    CHECK(f.parameters.at("count").type == ParameterType::integer);
    CHECK(f.parameters.at("axis.x \"q\"").type == ParameterType::string);
    // The same content always gives the same text (fingerprints compare it).
    RegistryFactory copy = factory;
    CHECK(RegistryCache::encode_factory(copy) == text);

    // Another writer's destination that is not a safe name is ignored, not used.
    auto odd = RegistryCache::decode_factory(
        R"({"enabled":true,"unknown_devices":"reject","destination":"x/../y","parameters":{}})");
    REQUIRE(odd);
    CHECK((*odd)->destination.empty());
    for (
        const char* bad :
        {"", "[]", R"({"enabled":true,"unknown_devices":"maybe","destination":"","parameters":{}})",
         R"({"enabled":true,"unknown_devices":"reject","destination":"","parameters":{"t":["complex",""]}})",
         R"({"enabled":true,"unknown_devices":"reject","destination":"","parameters":{"_t":["float",""]}})"}) {
        CAPTURE(bad);
        CHECK_FALSE(RegistryCache::decode_factory(bad));
    }
}

TEST_CASE("Redis keys are namespaced by prefix and by factory") {
    RegistryConfig config;
    config.redis_prefix = "site-a";
    RegistryCache cache(config);
    CHECK(cache.devices_key("f1") == "site-a:registry:{f1}:devices");
    CHECK(cache.factory_key("f1") == "site-a:registry:{f1}:factory");
    CHECK(cache.unknown_key("f1") == "site-a:registry:{f1}:unknown");
    CHECK(cache.factories_key() == "site-a:registry:factories");
    CHECK(cache.channel() == "site-a:registry:changes");
    CHECK(cache.devices_key("f1") != cache.devices_key("f10"));
}

TEST_CASE("parameter types, names, units and destinations") {
    for (auto type :
         {ParameterType::float_number, ParameterType::integer, ParameterType::boolean, ParameterType::string})
        CHECK(parse_parameter_type(to_string(type)) == type);
    CHECK_FALSE(parse_parameter_type("double"));
    CHECK(natural_type(FieldKind::number) == ParameterType::float_number);
    CHECK(natural_type(FieldKind::boolean) == ParameterType::boolean);
    CHECK(natural_type(FieldKind::string) == ParameterType::string);

    CHECK(check_parameter_name("temp") == "");
    CHECK(check_parameter_name("axis.x y,z=1") == "");
    for (std::string bad : {std::string(""), std::string("_time"), std::string("a\nb"), std::string(129, 'a'),
                            std::string("a\\"), std::string("\xff")}) {
        CAPTURE(bad);
        CHECK(check_parameter_name(bad) != "");
    }
    CHECK(check_unit("degC") == "");
    CHECK(check_unit("°C") == "");
    CHECK(check_unit("") != "");
    CHECK(check_unit(std::string(33, 'm')) != "");
    CHECK(check_destination("plant_f1") == "");
    for (const char* bad : {"", "a b", "a/b", "a;DROP", "a\"", "plant$", "x\n"}) {
        CAPTURE(bad);
        CHECK(check_destination(bad) != "");
    }
}

TEST_CASE("a field the registry says is an integer is written as an integer") {
    DecodedMessage message;
    message.fields.resize(2);
    message.fields[0].name = "count";
    message.fields[0].integer = -42;
    message.fields[0].number = -42;
    message.fields[0].integral = true;
    message.fields[0].write_as_integer = true;
    message.fields[1].name = "temp";
    message.fields[1].number = 21;
    Record record{.device_id = "d1", .timestamp_ms = 1000, .first_field = 0, .field_count = 2};
    std::string line;
    append_record_line(line, "telemetry", "f1", record, message, {});
    CHECK(line == "telemetry,device_id=d1,factory_id=f1 count=-42i,temp=21 1000\n");
}
