#pragma once
// What makes a metric name unfit to be an InfluxDB field, whatever format it came in (JSON or
// Sparkplug): one rule for both, so that a metric is written, or rejected, the same way.
#include <string_view>

#include "common/identifiers.hpp"

namespace plantd {

// "" when `name` can be a field, else why not.
inline std::string_view field_name_problem(std::string_view name) {
    if (!is_valid_metric_name(name))
        return "invalid metric name (1-128 bytes, no control characters, not starting with '_')";
    if (name == "time") return "\"time\" is reserved by InfluxDB, which would refuse the whole point";
    // A field named like a tag would shadow it in query results (the real tag becomes "factory_id_1"):
    // a payload could make a point appear to belong to another factory.
    if (name == "factory_id" || name == "device_id")
        return "the name of a tag plantd sets from the topic; it would shadow the tag in queries";
    if (!is_line_protocol_safe_key(name))
        return "metric name ends a backslash run before a separator; InfluxDB cannot store it";
    return {};
}

}  // namespace plantd
