#include "registry/registry_values.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include "common/identifiers.hpp"

namespace plantd {

std::string_view to_string(UnknownDevicePolicy policy) {
    return policy == UnknownDevicePolicy::reject ? "reject" : "auto_register";
}

std::optional<UnknownDevicePolicy> parse_unknown_device_policy(std::string_view text) {
    if (text == "reject") return UnknownDevicePolicy::reject;
    if (text == "auto_register") return UnknownDevicePolicy::auto_register;
    return std::nullopt;
}

std::string check_identifier(std::string_view what, std::string_view id) {
    if (is_valid_identifier(id)) return {};
    return fmt::format(
        "{} \"{}\" is not a valid identifier (1-64 of A-Z a-z 0-9 _ . -, starting with a letter "
        "or digit)",
        what, printable(id));
}

std::string check_tag(std::string_view key, std::string_view value) {
    if (key.empty() || key.size() > 128 || contains_control_character(key) || key.front() == '_') {
        return fmt::format(
            "tag key \"{}\" must be 1-128 bytes without control characters, not starting with '_'",
            printable(key));
    }
    if (key == "factory_id" || key == "device_id" || key == "time") {
        return fmt::format("tag key \"{}\" is reserved (plantd sets factory_id and device_id itself)", key);
    }
    if (!is_line_protocol_safe_key(key)) {
        return fmt::format(
            "tag key \"{}\" cannot be stored faithfully by InfluxDB (a backslash before a separator)",
            printable(key));
    }
    if (!simdjson::validate_utf8(key.data(), key.size()) ||
        !simdjson::validate_utf8(value.data(), value.size())) {
        return fmt::format("tag {}: key and value must be UTF-8", printable(key));
    }
    if (value.empty() || value.size() > 256 || contains_control_character(value) ||
        !is_line_protocol_safe_key(value)) {
        return fmt::format(
            "tag value \"{}\" (key {}) must be 1-256 bytes without control characters or a "
            "backslash before a separator",
            printable(value), key);
    }
    return {};
}

}  // namespace plantd

namespace plantd {

ParameterType natural_type(FieldKind kind) {
    switch (kind) {
        case FieldKind::boolean:
            return ParameterType::boolean;
        case FieldKind::string:
            return ParameterType::string;
        case FieldKind::number:
            break;
    }
    return ParameterType::float_number;
}

std::string_view to_string(ParameterType type) {
    switch (type) {
        case ParameterType::float_number:
            return "float";
        case ParameterType::integer:
            return "integer";
        case ParameterType::boolean:
            return "boolean";
        case ParameterType::string:
            return "string";
    }
    return "float";
}

std::optional<ParameterType> parse_parameter_type(std::string_view text) {
    if (text == "float") return ParameterType::float_number;
    if (text == "integer") return ParameterType::integer;
    if (text == "boolean") return ParameterType::boolean;
    if (text == "string") return ParameterType::string;
    return std::nullopt;
}

std::string check_parameter_name(std::string_view name) {
    if (is_valid_metric_name(name) && is_line_protocol_safe_key(name) &&
        simdjson::validate_utf8(name.data(), name.size()))
        return {};
    return fmt::format("parameter \"{}\" is not a valid metric name (docs/CONTRACT.md §2: at most 128 bytes)",
                       printable(name));
}

std::string check_unit(std::string_view unit) {
    if (!unit.empty() && unit.size() <= 32 && !contains_control_character(unit) &&
        simdjson::validate_utf8(unit.data(), unit.size()))
        return {};
    return fmt::format("unit \"{}\" must be 1-32 bytes of UTF-8 without control characters", printable(unit));
}

std::string check_destination(std::string_view name) {
    // InfluxDB accepts almost anything, but the name goes into URLs and `CREATE DATABASE`: keep it to
    // the identifier alphabet, with the same length limit as identifiers plus a prefix.
    bool ok = !name.empty() && name.size() <= 128;
    for (char c : name) {
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.');
    }
    if (ok) return {};
    return fmt::format("destination \"{}\" must be 1-128 of A-Z a-z 0-9 _ . -", printable(name));
}

}  // namespace plantd
