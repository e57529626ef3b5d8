// Every decoding rule of CONTRACT §2, each with inputs that must fail.
#include <doctest/doctest.h>

#include <string>

#include "decoding/payload_decoder.hpp"

using namespace plantd;

namespace {

constexpr int64_t now_ms = 1795255230000;       // 2026-11-21T10:00:30Z
constexpr int64_t received_ms = now_ms - 1000;  // stamps records without "ts"

struct Decoded {
    std::optional<Rejection> rejection;
    DecodedMessage message;

    const Field* field(size_t record, std::string_view name) const {
        const Record& r = message.records.at(record);
        for (uint32_t i = 0; i < r.field_count; ++i) {
            if (message.field(r, i).name == name) return &message.field(r, i);
        }
        return nullptr;
    }
};

// The decoder's views point into the message's strings: keep them alive with the result.
struct Harness {
    PayloadDecoder decoder{DecoderLimits{}};
    std::string topic_factory = "f1";
    std::string topic_source = "d1";

    Decoded decode(std::string_view payload, TopicKind kind = TopicKind::device) {
        Decoded out;
        TopicMatch match{kind, topic_factory, topic_source};
        out.rejection = decoder.decode(match, payload, received_ms, now_ms, out.message);
        return out;
    }
};

}  // namespace

TEST_CASE("one record on a device topic") {
    Harness h;
    auto d = h.decode(R"({"ts": 1795255229123, "metrics": {"temperature": 71.5, "spindle_rpm": 1480,
                         "running": true, "mode": "AUTO"}})");
    REQUIRE_FALSE(d.rejection);
    REQUIRE(d.message.records.size() == 1);
    const Record& r = d.message.records[0];
    CHECK(r.device_id == "d1");
    CHECK(r.timestamp_ms == 1795255229123);
    CHECK(r.field_count == 4);
    CHECK(d.field(0, "temperature")->number == 71.5);
    CHECK(d.field(0, "spindle_rpm")->number == 1480.0);
    CHECK(d.field(0, "spindle_rpm")->integral);
    CHECK(d.field(0, "spindle_rpm")->integer == 1480);
    CHECK(d.field(0, "running")->kind == FieldKind::boolean);
    CHECK(d.field(0, "running")->boolean);
    CHECK(d.field(0, "mode")->kind == FieldKind::string);
    CHECK(d.field(0, "mode")->text == "AUTO");
    CHECK(d.message.field_rejections.empty());
}

TEST_CASE("an array of records of the same device") {
    Harness h;
    auto d = h.decode(
        R"([{"ts": 1795255229001, "metrics": {"a": 1}}, {"ts": 1795255229002, "metrics": {"a": 2}}, {"metrics": {"a": 3}}])");
    REQUIRE_FALSE(d.rejection);
    REQUIRE(d.message.records.size() == 3);
    CHECK(d.message.records[0].timestamp_ms == 1795255229001);
    CHECK(d.message.records[1].timestamp_ms == 1795255229002);
    CHECK(d.message.records[2].timestamp_ms == received_ms);
    CHECK(d.field(2, "a")->number == 3.0);
}

TEST_CASE("a gateway batch carries device_id per record") {
    Harness h;
    h.topic_source = "gw1";
    auto d = h.decode(R"({"records": [
        {"device_id": "press-01", "ts": 1795255229000, "metrics": {"pressure": 2.4}},
        {"device_id": "press-02", "metrics": {"pressure": 2.1}}]})",
                      TopicKind::gateway);
    REQUIRE_FALSE(d.rejection);
    REQUIRE(d.message.records.size() == 2);
    CHECK(d.message.records[0].device_id == "press-01");
    CHECK(d.message.records[1].device_id == "press-02");
    CHECK(d.message.records[1].timestamp_ms == received_ms);
}

TEST_CASE("gateway records without a valid device_id are dropped, the rest kept") {
    Harness h;
    auto d = h.decode(R"({"records": [{"metrics": {"p": 1}}, {"device_id": "bad id", "metrics": {"p": 2}},
        {"device_id": 7, "metrics": {"p": 3}}, {"device_id": "ok", "metrics": {"p": 4}}, 5]})",
                      TopicKind::gateway);
    REQUIRE_FALSE(d.rejection);
    REQUIRE(d.message.records.size() == 1);
    CHECK(d.message.records[0].device_id == "ok");
    CHECK(d.message.record_rejections.size() == 4);
    for (const auto& r : d.message.record_rejections) CHECK(r.reason == RejectReason::invalid_record);
}

TEST_CASE("gateway payloads that are not {\"records\": [...]} are rejected") {
    Harness h;
    for (const char* bad : {R"([{"device_id":"a","metrics":{"x":1}}])", R"({"records": {}})",
                            R"({"data": []})", R"({"records": []})", R"("records")"}) {
        CAPTURE(bad);
        auto d = h.decode(bad, TopicKind::gateway);
        REQUIRE(d.rejection);
        CHECK(d.rejection->reason == RejectReason::invalid_record);
    }
}

TEST_CASE("timestamps: integer milliseconds or RFC 3339; bad or future ones are rejected") {
    Harness h;
    auto d = h.decode(R"({"ts": "2026-11-21T10:00:29.500Z", "metrics": {"a": 1}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].timestamp_ms == now_ms - 500);

    d = h.decode(R"({"ts": null, "metrics": {"a": 1}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].timestamp_ms == received_ms);

    const int64_t limit = now_ms + 5 * 60 * 1000;
    d = h.decode(R"({"ts": )" + std::to_string(limit) + R"(, "metrics": {"a": 1}})");
    CHECK_FALSE(d.rejection);  // exactly at the skew limit
    for (std::string bad :
         {std::to_string(limit + 1), std::string("1795255229.5"), std::string("-1"),
          std::string("\"yesterday\""), std::string("\"2026-11-21\""), std::string("true"), std::string("{}"),
          std::string("[1]"), std::string("18446744073709551615"), std::string("\"2026-11-21T10:10:30Z\"")}) {
        CAPTURE(bad);
        d = h.decode(R"({"ts": )" + bad + R"(, "metrics": {"a": 1}})");
        REQUIRE(d.rejection);
        CHECK(d.rejection->reason == RejectReason::bad_timestamp);
    }
}

TEST_CASE(
    "timestamps in seconds, microseconds or nanoseconds are rejected and named; 20 years back is the floor") {
    Harness h;
    struct Case {
        std::string ts;
        std::string says;
    };
    for (const Case& c : std::vector<Case>{
             {"1795255229",
              "1795255229 looks like seconds, not milliseconds (as seconds: 2026-11-21T10:00:29.000Z)"},
             {"1795255229000000", "looks like microseconds, not milliseconds"},
             {"1795255229000000000", "looks like nanoseconds, not milliseconds"},
             {"1000", "is more than max_past_age (7300 days) before plantd's clock"},
         }) {
        CAPTURE(c.ts);
        auto d = h.decode(R"({"ts": )" + c.ts + R"(, "metrics": {"a": 1}})");
        REQUIRE(d.rejection);
        CHECK(d.rejection->reason == RejectReason::bad_timestamp);
        CHECK(d.rejection->detail.find(c.says) != std::string::npos);
    }
    const int64_t floor = now_ms - 7300LL * 86'400'000;
    auto d = h.decode(R"({"ts": )" + std::to_string(floor) + R"(, "metrics": {"a": 1}})");
    CHECK_FALSE(d.rejection);  // exactly 20 years back
    d = h.decode(R"({"ts": )" + std::to_string(floor - 1) + R"(, "metrics": {"a": 1}})");
    CHECK(d.rejection);
}

TEST_CASE("a bad timestamp drops only its record in an array") {
    Harness h;
    auto d = h.decode(R"([{"ts": "nope", "metrics": {"a": 1}}, {"ts": 1795255229005, "metrics": {"a": 2}}])");
    REQUIRE_FALSE(d.rejection);
    REQUIRE(d.message.records.size() == 1);
    CHECK(d.message.records[0].timestamp_ms == 1795255229005);
    REQUIRE(d.message.record_rejections.size() == 1);
    CHECK(d.message.record_rejections[0].reason == RejectReason::bad_timestamp);
}

TEST_CASE("metrics must be a non-empty object") {
    Harness h;
    for (const char* bad : {R"({"ts": 1795255229000})", R"({"metrics": []})", R"({"metrics": 5})",
                            R"({"metrics": "a"})", R"({"metrics": {}})", R"({"metrics": {"a": null}})",
                            R"({"metrics": null})", R"([])", R"(5)", R"("text")", R"([1, 2])"}) {
        CAPTURE(bad);
        auto d = h.decode(bad);
        REQUIRE(d.rejection);
        CHECK(d.rejection->reason == RejectReason::invalid_record);
    }
}

TEST_CASE("null values are skipped, not rejected") {
    Harness h;
    auto d = h.decode(R"({"metrics": {"a": null, "b": 2}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].field_count == 1);
    CHECK(d.message.field_rejections.empty());
}

TEST_CASE("nested objects flatten with '.' up to 4 levels") {
    Harness h;
    auto d = h.decode(
        R"({"metrics": {"axis": {"x": 1, "y": {"z": 2, "w": {"v": 3, "deep": {"u": 4}}}}, "k": 5}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.field(0, "axis.x")->number == 1.0);
    CHECK(d.field(0, "axis.y.z")->number == 2.0);
    CHECK(d.field(0, "axis.y.w.v")->number == 3.0);
    CHECK(d.field(0, "k")->number == 5.0);
    CHECK(d.field(0, "axis.y.w.deep.u") == nullptr);
    REQUIRE(d.message.field_rejections.size() == 1);
    CHECK(d.message.field_rejections[0].reason == RejectReason::invalid_field);
    CHECK(d.message.field_rejections[0].detail.find("deeper than 4") != std::string::npos);
}

TEST_CASE("arrays, NaN, Infinity and out-of-range numbers are rejected field by field") {
    Harness h;
    auto d = h.decode(R"({"metrics": {"arr": [1, 2], "nan": NaN, "inf": Infinity, "ninf": -Infinity,
                          "big": 1e999, "huge": 123456789012345678901234567890, "ok": 1.5,
                          "nested": {"n": NaN, "fine": 2}}})");
    REQUIRE_FALSE(d.rejection);
    REQUIRE(d.message.records.size() == 1);
    CHECK(d.message.records[0].field_count == 2);
    CHECK(d.field(0, "ok")->number == 1.5);
    CHECK(d.field(0, "nested.fine")->number == 2.0);
    CHECK(d.message.field_rejections.size() == 7);
    for (const auto& r : d.message.field_rejections) CHECK(r.reason == RejectReason::invalid_field);
}

TEST_CASE("big unsigned integers within 64 bits are kept as floats") {
    Harness h;
    auto d = h.decode(R"({"metrics": {"u": 18446744073709551615, "i": -9223372036854775808}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.field(0, "u")->number == 18446744073709551615.0);
    CHECK_FALSE(d.field(0, "u")->integral);
    CHECK(d.field(0, "i")->integral);
    CHECK(d.field(0, "i")->integer == INT64_MIN);
}

TEST_CASE("strings: at most 1 KiB, no control characters") {
    Harness h;
    std::string ok(1024, 's');
    std::string long_text(1025, 's');
    auto d = h.decode(R"({"metrics": {"ok": ")" + ok + R"(", "long": ")" + long_text +
                      R"(", "ctl": "a\u0001b", "nl": "a\nb", "del": "a\u007fb", "esc": "say \"hi\" \\o/"}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.field(0, "ok")->text.size() == 1024);
    CHECK(d.field(0, "esc")->text == R"(say "hi" \o/)");
    CHECK(d.field(0, "long") == nullptr);
    CHECK(d.field(0, "ctl") == nullptr);
    CHECK(d.field(0, "nl") == nullptr);
    CHECK(d.field(0, "del") == nullptr);
    CHECK(d.message.field_rejections.size() == 4);
}

TEST_CASE("metric names: invalid ones are rejected as fields") {
    Harness h;
    std::string long_name(129, 'n');
    auto d = h.decode(
        R"({"metrics": {"_hidden": 1, "": 2, ")" + long_name +
        R"(": 3, "tab\there": 4, "trailing\\": 5, "ok name, with=specials \"q\"": 6, "caf\u00e9": 7}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].field_count == 2);
    CHECK(d.field(0, "ok name, with=specials \"q\"")->number == 6.0);
    CHECK(d.field(0, "caf\xc3\xa9")->number == 7.0);
    CHECK(d.message.field_rejections.size() == 5);
}

TEST_CASE("the field name \"time\" is rejected: InfluxDB would refuse the whole point") {
    Harness h;
    auto d = h.decode(R"({"metrics": {"time": 1, "t": {"time": 2}, "x": 3}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].field_count == 2);  // x and t.time
    CHECK(d.field(0, "t.time")->number == 2.0);
    REQUIRE(d.message.field_rejections.size() == 1);
}

TEST_CASE("metrics named like the tags plantd sets are rejected: no shadowing of factory_id or device_id") {
    Harness h;
    auto d =
        h.decode(R"({"metrics": {"factory_id": "f2", "device_id": 7, "x": 1, "meta": {"factory_id": 1}}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].field_count == 2);  // x and meta.factory_id
    CHECK(d.field(0, "factory_id") == nullptr);
    CHECK(d.field(0, "device_id") == nullptr);
    CHECK(d.message.field_rejections.size() == 2);
}

TEST_CASE("a payload near the limit full of NaN still decodes, field by field") {
    PayloadDecoder decoder(DecoderLimits{.max_payload_bytes = 64 * 1024});
    DecodedMessage out;
    std::string factory = "f1", device = "d1";
    TopicMatch match{TopicKind::device, factory, device};
    std::string payload = R"({"metrics": {"ok": 1)";
    for (int i = 0; payload.size() < 64 * 1024 - 40; ++i) payload += ",\"n" + std::to_string(i) + "\":NaN";
    payload += "}}";
    auto rejection = decoder.decode(match, payload, received_ms, now_ms, out);
    REQUIRE_FALSE(rejection);
    CHECK(out.records[0].field_count == 1);
    CHECK(out.field_rejections.size() > 5000);
}

TEST_CASE("a flattened name longer than 128 bytes is rejected") {
    Harness h;
    std::string part(60, 'p');
    auto d =
        h.decode(R"({"metrics": {")" + part + R"(": {")" + part + R"(": {")" + part + R"(": 1}}, "x": 1}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].field_count == 1);
    CHECK(d.message.field_rejections.size() == 1);
}

TEST_CASE("duplicate metric names: the first wins") {
    Harness h;
    auto d = h.decode(R"({"metrics": {"a": 1, "a": 2, "b.c": 3, "b": {"c": 4}}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].field_count == 2);
    CHECK(d.field(0, "a")->number == 1.0);
    CHECK(d.field(0, "b.c")->number == 3.0);
    CHECK(d.message.field_rejections.size() == 2);
}

TEST_CASE("a record whose every field is invalid is rejected as invalid_field") {
    Harness h;
    auto d = h.decode(R"({"metrics": {"a": [1], "b": NaN}})");
    REQUIRE(d.rejection);
    CHECK(d.rejection->reason == RejectReason::invalid_field);
}

TEST_CASE("identity mismatch rejects the whole message") {
    Harness h;
    for (const char* bad :
         {R"({"factory_id": "f2", "metrics": {"a": 1}})", R"({"device_id": "d2", "metrics": {"a": 1}})",
          R"({"factory_id": 1, "metrics": {"a": 1}})", R"({"device_id": null, "metrics": {"a": 1}})",
          R"([{"metrics": {"a": 1}}, {"factory_id": "F1", "metrics": {"a": 2}}])",
          R"({"factory_id": "f1", "factory_id": "f2", "metrics": {"a": 1}})"}) {
        CAPTURE(bad);
        auto d = h.decode(bad);
        REQUIRE(d.rejection);
        CHECK(d.rejection->reason == RejectReason::identity_mismatch);
        CHECK(d.message.records.empty());
    }
    // Matching claims are fine.
    auto d = h.decode(R"({"factory_id": "f1", "device_id": "d1", "metrics": {"a": 1}})");
    CHECK_FALSE(d.rejection);
}

TEST_CASE("identity mismatch on gateway topics: factory_id anywhere, or gateway_id") {
    Harness h;
    h.topic_source = "gw1";
    for (
        const char* bad :
        {R"({"factory_id": "f2", "records": [{"device_id": "a", "metrics": {"x": 1}}]})",
         R"({"gateway_id": "gw2", "records": [{"device_id": "a", "metrics": {"x": 1}}]})",
         R"({"records": [{"device_id": "a", "metrics": {"x": 1}}, {"device_id": "b", "factory_id": "f9", "metrics": {"x": 1}}]})"}) {
        CAPTURE(bad);
        auto d = h.decode(bad, TopicKind::gateway);
        REQUIRE(d.rejection);
        CHECK(d.rejection->reason == RejectReason::identity_mismatch);
    }
}

TEST_CASE("malformed JSON is rejected") {
    Harness h;
    for (const char* bad :
         {"", "{", "garbage", R"({"metrics": {"a": 1}} trailing)", R"({"metrics": {"a": 1}}})",
          R"({"metrics": {"a": tru}})", R"({"metrics": {"a": 1,}})", R"({'metrics': {}})",
          R"({"metrics": {"a": 01}})", R"({"metrics" {"a": 1}})", "\xff\xfe{}",
          R"({"metrics": {"a": "\ud800"}})", R"({"metrics": {"a": NaNa}})"}) {
        CAPTURE(bad);
        auto d = h.decode(bad);
        REQUIRE(d.rejection);
        CHECK(d.rejection->reason == RejectReason::malformed_json);
    }
}

TEST_CASE("payloads above max_payload_bytes are rejected as oversize") {
    PayloadDecoder decoder(DecoderLimits{.max_payload_bytes = 100});
    DecodedMessage out;
    std::string topic_factory = "f1", topic_device = "d1";
    TopicMatch match{TopicKind::device, topic_factory, topic_device};
    std::string payload = R"({"metrics": {"a": ")" + std::string(100, 'x') + R"("}})";
    auto rejection = decoder.decode(match, payload, received_ms, now_ms, out);
    REQUIRE(rejection);
    CHECK(rejection->reason == RejectReason::oversize);
    CHECK_FALSE(decoder.decode(match, R"({"metrics": {"a": 1}})", received_ms, now_ms, out));
}

TEST_CASE("unknown keys in a record are ignored") {
    Harness h;
    auto d = h.decode(R"({"seq": 7, "metrics": {"a": 1}, "note": {"x": [1]}})");
    REQUIRE_FALSE(d.rejection);
    CHECK(d.message.records[0].field_count == 1);
}

TEST_CASE("the decoder is reusable: state never leaks between messages") {
    Harness h;
    auto first = h.decode(R"({"metrics": {"a": 1, "b": [1]}})");
    REQUIRE_FALSE(first.rejection);
    auto second = h.decode(R"({"metrics": {"c": 2}})");
    REQUIRE_FALSE(second.rejection);
    CHECK(second.message.records[0].field_count == 1);
    CHECK(second.message.field_rejections.empty());
}
