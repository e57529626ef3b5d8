// What cluster members read back from Redis: the records relayed to a factory's owner and the members'
// announcements. Anything that does not read back whole is refused, not half taken.
#include <doctest/doctest.h>

#include <string>

#include "alerting/rule_stream.hpp"
#include "cluster/lease_store.hpp"

using namespace plantd;

TEST_CASE("a relayed rule record reads back as it was sent, and a damaged one is refused") {
    RuleRecord record;
    record.factory_id = "f1";
    record.device_id = "press-1";
    record.via = "gw-1";
    record.arrived_ms = 1'700'000'000'123;
    record.sample_ms = 1'700'000'000'100;
    record.samples = {{"temperature", 61.5}, {"rpm", -3}};
    const std::string text = encode_rule_record(record);
    auto back = decode_rule_record("f1", text);
    REQUIRE(back);
    CHECK(back->factory_id == "f1");
    CHECK(back->device_id == "press-1");
    CHECK(back->via == "gw-1");
    CHECK(back->arrived_ms == record.arrived_ms);
    CHECK(back->sample_ms == record.sample_ms);
    REQUIRE(back->samples.size() == 2);
    CHECK(back->samples[0].first == "temperature");
    CHECK(back->samples[0].second == 61.5);
    CHECK(back->samples[1].first == "rpm");
    CHECK(back->samples[1].second == -3);
    // The factory is the stream's, never the record's own say.
    auto other = decode_rule_record("f2", text);
    REQUIRE(other);
    CHECK(other->factory_id == "f2");

    CHECK(decode_rule_record("f1", text.substr(0, text.rfind('\x1e'))) == std::nullopt);  // name, no value
    record.samples = {{"t", 1}};
    std::string bad = encode_rule_record(record);
    CHECK(decode_rule_record("f1", bad.replace(bad.rfind('1'), 1, "nan")) == std::nullopt);
    bad = encode_rule_record(record);
    CHECK(decode_rule_record("f1", bad.replace(bad.rfind('1'), 1, "inf")) == std::nullopt);
    CHECK(decode_rule_record("f1",
                             "bad device\x1f\x1f"
                             "1\x1f"
                             "1") == std::nullopt);
    CHECK(decode_rule_record("f1",
                             "d\x1f\x1fsoon\x1f"
                             "1") == std::nullopt);
    CHECK(decode_rule_record("f1", "") == std::nullopt);
    CHECK(decode_rule_record("f1",
                             "d\x1f\x1f"
                             "9223372036854775807\x1f"
                             "1") == std::nullopt);
    CHECK(decode_rule_record("f1",
                             "d\x1f\x1f"
                             "1\x1f"
                             "-5") == std::nullopt);
    CHECK(decode_rule_record("f1",
                             "d\x1f\x1f"
                             "1\x1f"
                             "1\x1f\x1e"
                             "5") == std::nullopt);  // no name
}

TEST_CASE("a member's announcement reads back, and one with impossible times or names is refused") {
    MemberInfo member{"plantd-a", "1.2.3", 1'700'000'000'000, 10'000, 1'700'000'007'500, {"f1", "f2"}};
    auto back = parse_member(member_json(member));
    REQUIRE(back);
    CHECK(back->instance == "plantd-a");
    CHECK(back->version == "1.2.3");
    CHECK(back->heartbeat_ms == member.heartbeat_ms);
    CHECK(back->lease_ms == 10'000);
    CHECK(back->valid_until_ms == member.valid_until_ms);
    CHECK((back->owned == std::vector<std::string>{"f1", "f2"}));

    auto with = [&](auto change) {
        MemberInfo copy = member;
        change(copy);
        return parse_member(member_json(copy));
    };
    CHECK(!with([](MemberInfo& m) { m.heartbeat_ms = INT64_MAX; }));
    CHECK(!with([](MemberInfo& m) { m.lease_ms = -1; }));
    CHECK(!with([](MemberInfo& m) { m.valid_until_ms = INT64_MIN; }));
    CHECK(!with([](MemberInfo& m) { m.instance = "a b"; }));
    CHECK(!with([](MemberInfo& m) { m.owned = {"f/1"}; }));
    CHECK(!parse_member(R"({"instance":"a"})"));
    CHECK(!parse_member("not json"));
}
