#pragma once
// What turns one MQTT payload into records: the seam between the worker and the wire formats. JSON
// (PayloadDecoder, CONTRACT §2) is the format today; others (Sparkplug B's protobuf) implement the
// same interface, so the worker never knows which format it decodes. One instance per worker thread.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "decoding/record.hpp"

namespace plantd {

struct DecoderLimits {
    size_t max_payload_bytes = 256 * 1024;
    int64_t max_future_skew_ms = 5 * 60 * 1000;
    int64_t max_past_age_ms = 7300LL * 86'400'000;  // 20 years: older is a unit mistake, not data
    size_t max_string_bytes = 1024;
    int max_depth = 4;
};

// `ms` if it lies between max_past_age before `now_ms` and max_future_skew after it; else nullopt
// and why (an integer in the wrong unit, seconds or microseconds or nanoseconds, is named as such).
std::optional<int64_t> plausible_timestamp_ms(int64_t ms, bool integer, int64_t now_ms,
                                              const DecoderLimits& limits, std::string& problem);

class PayloadFormat {
  public:
    virtual ~PayloadFormat() = default;
    // Fills `out` with the accepted records (and the records and fields dropped on the way).
    // Returns the rejection of the whole message, or nullopt when at least one record was accepted.
    // `received_ms` stamps records without a timestamp; `now_ms` bounds future timestamps.
    virtual std::optional<Rejection> decode(const TopicMatch& topic, std::string_view payload,
                                            int64_t received_ms, int64_t now_ms, DecodedMessage& out) = 0;
};

// The JSON format of CONTRACT §2.
std::unique_ptr<PayloadFormat> make_json_format(DecoderLimits limits);

}  // namespace plantd
