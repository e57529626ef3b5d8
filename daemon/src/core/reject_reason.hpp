#pragma once
// Why a message, record or field was rejected, and what the rejection dropped. Stable names: they are
// /metrics labels and appear in dead letters, so operators can alert on them.
#include <array>
#include <cstdint>
#include <string_view>

namespace plantd {

enum class RejectReason : uint8_t {
    malformed_json,
    bad_topic,
    unknown_factory,
    unknown_device,
    foreign_device,
    identity_mismatch,
    oversize,
    bad_timestamp,
    rate_limited,
    invalid_field,
    invalid_record,
    influx_rejected,
    shutdown_unwritten,
    registry_unavailable,
    buffer_overflow,
    sparkplug_malformed,
    sparkplug_no_birth,
    sparkplug_bad_seq,
    sparkplug_stale_death,
    sparkplug_too_many_nodes,
    sparkplug_too_many_devices,
    sparkplug_unknown_metric,
    count_  // not a reason: the number of reasons
};

inline constexpr size_t reject_reason_count = static_cast<size_t>(RejectReason::count_);

inline std::string_view to_string(RejectReason reason) {
    static constexpr std::array<std::string_view, reject_reason_count> names{"malformed_json",
                                                                             "bad_topic",
                                                                             "unknown_factory",
                                                                             "unknown_device",
                                                                             "foreign_device",
                                                                             "identity_mismatch",
                                                                             "oversize",
                                                                             "bad_timestamp",
                                                                             "rate_limited",
                                                                             "invalid_field",
                                                                             "invalid_record",
                                                                             "influx_rejected",
                                                                             "shutdown_unwritten",
                                                                             "registry_unavailable",
                                                                             "buffer_overflow",
                                                                             "sparkplug_malformed",
                                                                             "sparkplug_no_birth",
                                                                             "sparkplug_bad_seq",
                                                                             "sparkplug_stale_death",
                                                                             "sparkplug_too_many_nodes",
                                                                             "sparkplug_too_many_devices",
                                                                             "sparkplug_unknown_metric"};
    return names[static_cast<size_t>(reason)];
}

// What a rejection dropped: a whole message, one record of it, one field, or a line InfluxDB refused.
enum class RejectScope : uint8_t { message, record, field, point };

inline std::string_view to_string(RejectScope scope) {
    switch (scope) {
        case RejectScope::message:
            return "message";
        case RejectScope::record:
            return "record";
        case RejectScope::field:
            return "field";
        case RejectScope::point:
            return "point";
    }
    return "unknown";
}

}  // namespace plantd
