#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "common/identifiers.hpp"

using namespace plantd;

TEST_CASE("identifiers follow ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$") {
    CHECK(is_valid_identifier("f1"));
    CHECK(is_valid_identifier("press-01"));
    CHECK(is_valid_identifier("A.b_c-9"));
    CHECK(is_valid_identifier(std::string(64, 'a')));
    CHECK_FALSE(is_valid_identifier(""));
    CHECK_FALSE(is_valid_identifier(std::string(65, 'a')));
    CHECK_FALSE(is_valid_identifier("-leading"));
    CHECK_FALSE(is_valid_identifier("_leading"));
    CHECK_FALSE(is_valid_identifier(".leading"));
    for (std::string bad :
         std::initializer_list<std::string>{"a b", "a,b", "a=b", "a/b", "a+b", "a#b", "a*b", "a\"b", "a\\b",
                                            "a\nb", "a'b", "a;b", "caf\xc3\xa9", std::string("a\0b", 3)}) {
        CAPTURE(bad);
        CHECK_FALSE(is_valid_identifier(bad));
    }
}

TEST_CASE("metric names: 1-128 bytes, no control characters, not starting with '_'") {
    CHECK(is_valid_metric_name("temperature"));
    CHECK(is_valid_metric_name("axis.x"));
    CHECK(
        is_valid_metric_name("Temp \xc2\xb0"
                             "C, \"raw\"=1"));  // degree sign, quotes, comma, equals, space
    CHECK(is_valid_metric_name(std::string(128, 'm')));
    CHECK_FALSE(is_valid_metric_name(""));
    CHECK_FALSE(is_valid_metric_name(std::string(129, 'm')));
    CHECK_FALSE(is_valid_metric_name("_internal"));
    CHECK_FALSE(is_valid_metric_name("a\nb"));
    CHECK_FALSE(is_valid_metric_name("a\tb"));
    CHECK_FALSE(is_valid_metric_name("a\x7f"));
    CHECK_FALSE(is_valid_metric_name("a\xc2\x85"));  // U+0085, a C1 control
}

TEST_CASE("keys that line protocol cannot hold faithfully are detected") {
    CHECK(is_line_protocol_safe_key("plain"));
    CHECK(is_line_protocol_safe_key("a\\b"));       // backslash before an ordinary character
    CHECK(is_line_protocol_safe_key("a\\\\"));      // an even run at the end
    CHECK(is_line_protocol_safe_key("a\\\\,b"));    // an even run before a comma
    CHECK_FALSE(is_line_protocol_safe_key("a\\"));  // odd run at the end
    CHECK_FALSE(is_line_protocol_safe_key("a\\,b"));
    CHECK_FALSE(is_line_protocol_safe_key("a\\=b"));
    CHECK_FALSE(is_line_protocol_safe_key("a\\ b"));
    CHECK_FALSE(is_line_protocol_safe_key("a\\\"b"));
    CHECK_FALSE(is_line_protocol_safe_key("a\\\\\\"));
}
