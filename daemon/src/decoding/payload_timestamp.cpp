// What a record's `ts` may be: epoch milliseconds or RFC 3339, between max_past_age back and
// max_future_skew ahead; a value in the wrong unit (seconds, microseconds, nanoseconds) is named.
#include <fmt/format.h>

#include "decoding/decoder_text.hpp"
#include "decoding/payload_decoder.hpp"
#include "decoding/timestamp.hpp"
#include "util/clock.hpp"

namespace plantd {

using simdjson::dom::element_type;

std::optional<int64_t> PayloadDecoder::read_timestamp(Element value, std::string& problem) const {
    int64_t ms = 0;
    const bool integer = value.type() == element_type::INT64;  // a unit mistake is only possible there
    switch (value.type()) {
        case element_type::INT64:
            ms = value.get_int64().value_unsafe();
            break;
        case element_type::UINT64:
            problem = "is out of range";
            return std::nullopt;
        case element_type::STRING: {
            std::string_view text = value.get_string().value_unsafe();
            auto parsed = parse_rfc3339_ms(text);
            if (!parsed) {
                problem = fmt::format("{} is not an RFC 3339 date-time", printable_quoted(text));
                return std::nullopt;
            }
            ms = *parsed;
            break;
        }
        default:
            problem = fmt::format("is {}, expected integer epoch milliseconds or an RFC 3339 string",
                                  json_type_name(value.type()));
            return std::nullopt;
    }
    return plausible_timestamp_ms(ms, integer, now_ms_, limits_, problem);
}

std::optional<int64_t> plausible_timestamp_ms(int64_t ms, bool integer, int64_t now_ms_,
                                              const DecoderLimits& limits_, std::string& problem) {
    if (ms < 0) {
        problem = fmt::format("{} is before 1970", ms);
        return std::nullopt;
    }
    // Epoch seconds (1763700000) would land in January 1970, microseconds far in the future: say so.
    const int64_t earliest = now_ms_ - limits_.max_past_age_ms;
    const int64_t latest = now_ms_ + limits_.max_future_skew_ms;
    auto plausible = [&](int64_t candidate) { return candidate >= earliest && candidate <= latest; };
    if (ms < earliest) {
        if (integer && ms <= INT64_MAX / 1000 && plausible(ms * 1000))
            problem = fmt::format(
                "{} looks like seconds, not milliseconds (as seconds: {}); send epoch milliseconds", ms,
                format_rfc3339_ms(ms * 1000));
        else
            problem = fmt::format("{} ({}) is more than max_past_age ({} days) before plantd's clock", ms,
                                  format_rfc3339_ms(ms), limits_.max_past_age_ms / 86'400'000);
        return std::nullopt;
    }
    if (ms > latest) {
        if (integer && plausible(ms / 1000))
            problem = fmt::format("{} looks like microseconds, not milliseconds (as microseconds: {})", ms,
                                  format_rfc3339_ms(ms / 1000));
        else if (integer && plausible(ms / 1'000'000))
            problem = fmt::format("{} looks like nanoseconds, not milliseconds (as nanoseconds: {})", ms,
                                  format_rfc3339_ms(ms / 1'000'000));
        else
            problem = fmt::format("{} is {} ms ahead of plantd's clock (max_future_skew {} ms)", ms,
                                  ms - now_ms_, limits_.max_future_skew_ms);
        return std::nullopt;
    }
    return ms;
}

}  // namespace plantd
