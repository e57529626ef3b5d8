// Line-protocol escaping of every special character in every position.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "encoding/line_protocol.hpp"

using namespace plantd;

namespace {
std::string escaped_key(std::string_view text) {
    std::string out;
    append_escaped_key(out, text);
    return out;
}
std::string escaped_measurement(std::string_view text) {
    std::string out;
    append_escaped_measurement(out, text);
    return out;
}
std::string quoted(std::string_view text) {
    std::string out;
    append_quoted_string(out, text);
    return out;
}
std::string float_text(double value) {
    std::string out;
    append_float(out, value);
    return out;
}
}  // namespace

TEST_CASE("keys escape comma, equals and space at the start, middle and end") {
    for (char special : {',', '=', ' '}) {
        std::string s(1, special);
        CAPTURE(s);
        CHECK(escaped_key(s + "ab") == "\\" + s + "ab");
        CHECK(escaped_key("a" + s + "b") == "a\\" + s + "b");
        CHECK(escaped_key("ab" + s) == "ab\\" + s);
        CHECK(escaped_key(s + s) == "\\" + s + "\\" + s);
    }
    CHECK(escaped_key("plain") == "plain");
    CHECK(escaped_key("a\"b") == "a\"b");  // quotes need no escape in keys
    CHECK(escaped_key("a\\b") == "a\\b");  // nor backslashes (see is_line_protocol_safe_key)
    CHECK(escaped_key("caf\xc3\xa9") == "caf\xc3\xa9");
}

TEST_CASE("measurements escape comma and space, not equals") {
    CHECK(escaped_measurement("tele metry,x=1") == "tele\\ metry\\,x=1");
    CHECK(escaped_measurement(",") == "\\,");
    CHECK(escaped_measurement(" ") == "\\ ");
}

TEST_CASE("string field values escape quote and backslash at every position") {
    CHECK(quoted("") == "\"\"");
    CHECK(quoted("plain text, with = and spaces") == "\"plain text, with = and spaces\"");
    CHECK(quoted("\"start") == "\"\\\"start\"");
    CHECK(quoted("mid\"dle") == "\"mid\\\"dle\"");
    CHECK(quoted("end\"") == "\"end\\\"\"");
    CHECK(quoted("\\start") == "\"\\\\start\"");
    CHECK(quoted("mid\\dle") == "\"mid\\\\dle\"");
    CHECK(quoted("end\\") == "\"end\\\\\"");
    CHECK(quoted("\\\"") == "\"\\\\\\\"\"");
}

TEST_CASE("floats are the shortest text that reads back exactly") {
    CHECK(float_text(71.5) == "71.5");
    CHECK(float_text(1480) == "1480");
    CHECK(float_text(0.1) == "0.1");
    CHECK(float_text(-2.5e-7) == "-2.5e-07");
    CHECK(float_text(1e20) == "1e+20");
    CHECK(std::stod(float_text(0.30000000000000004)) == 0.30000000000000004);
    CHECK(std::stod(float_text(1.7976931348623157e308)) == 1.7976931348623157e308);
}

TEST_CASE("a record becomes one line with sorted tags and millisecond time") {
    DecodedMessage message;
    message.fields.resize(4);
    message.fields[0].name = "temperature";
    message.fields[0].number = 71.5;
    message.fields[1].name = "running";
    message.fields[1].kind = FieldKind::boolean;
    message.fields[1].boolean = true;
    message.fields[2].name = "mode name";
    message.fields[2].kind = FieldKind::string;
    message.fields[2].text = "AUTO \"x\"";
    message.fields[3].name = "rpm";
    message.fields[3].number = 1480;
    message.fields[3].integral = true;
    Record record{.device_id = "press-01", .timestamp_ms = 1795255230123, .first_field = 0, .field_count = 4};

    std::string line;
    append_record_line(line, "telemetry", "f1", record, message, {});
    CHECK(line ==
          "telemetry,device_id=press-01,factory_id=f1 temperature=71.5,running=true,mode\\ name=\"AUTO "
          "\\\"x\\\"\","
          "rpm=1480 1795255230123\n");

    std::string with_tags;
    ExtraTags tags{{"area", "north"}, {"line", "L 2"}, {"model", "x=1"}};
    append_record_line(with_tags, "telemetry", "f1", record, message, tags);
    CHECK(with_tags.starts_with(
        "telemetry,area=north,device_id=press-01,factory_id=f1,line=L\\ 2,model=x\\=1 "));
}
