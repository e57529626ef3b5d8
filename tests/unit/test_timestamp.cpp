#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "decoding/timestamp.hpp"
#include "util/clock.hpp"

using namespace plantd;

TEST_CASE("RFC 3339 timestamps parse to epoch milliseconds") {
    CHECK(parse_rfc3339_ms("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_rfc3339_ms("2026-11-21T10:00:30.000Z") == 1795255230000);
    CHECK(parse_rfc3339_ms("2026-11-21T10:00:30.123Z") == 1795255230123);
    CHECK(parse_rfc3339_ms("2026-11-21T10:00:30.1Z") == 1795255230100);
    CHECK(parse_rfc3339_ms("2026-11-21T10:00:30.123456789Z") == 1795255230123);  // truncated to ms
    CHECK(parse_rfc3339_ms("2026-11-21T12:00:30+02:00") == 1795255230000);
    CHECK(parse_rfc3339_ms("2026-11-21T05:30:30-04:30") == 1795255230000);
    CHECK(parse_rfc3339_ms("2026-11-21t10:00:30z") == 1795255230000);
    CHECK(parse_rfc3339_ms("2024-02-29T00:00:00Z") == 1709164800000);  // leap day
    CHECK(parse_rfc3339_ms("2016-12-31T23:59:60Z") == 1483228800000);  // leap second: next minute's start
    CHECK(parse_rfc3339_ms("2026-11-21T10:00:30.1234567890123Z") == 1795255230123);  // any fraction length
}

TEST_CASE("anything that is not RFC 3339 is refused") {
    for (const char* bad :
         {"", "2026-11-21", "2026-11-21T10:00:30", "2026-11-21T10:00:30.Z", "2026-13-01T00:00:00Z",
          "2026-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T10:60:00Z",
          "2026-11-21T10:00:30+2:00", "2026-11-21T10:00:30+02:00x", "2026-11-21T10:00:61Z",
          "2026/11/21T10:00:30Z", "1763700000123", "２026-11-21T10:00:30Z", "2026-11-21T10:00:30+24:00"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_rfc3339_ms(bad).has_value());
    }
}

TEST_CASE("milliseconds format back to RFC 3339") {
    CHECK(format_rfc3339_ms(1795255230000) == "2026-11-21T10:00:30.000Z");
    CHECK(format_rfc3339_ms(1795255230123) == "2026-11-21T10:00:30.123Z");
    CHECK(format_rfc3339_ms(0) == "1970-01-01T00:00:00.000Z");
}
