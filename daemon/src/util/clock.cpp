#include "util/clock.hpp"

#include <fmt/format.h>
#include <ctime>

namespace plantd {

std::string format_rfc3339_ms(int64_t epoch_ms) {
    int64_t seconds = epoch_ms / 1000;
    int64_t millis = epoch_ms % 1000;
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    std::time_t t = static_cast<std::time_t>(seconds);
    std::tm utc{};
    gmtime_r(&t, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1,
                       utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

}  // namespace plantd
