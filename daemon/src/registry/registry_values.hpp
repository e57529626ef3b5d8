#pragma once
// What the registry accepts from an operator, checked before anything reaches MySQL: the same
// identifier rules as topics, tags that InfluxDB stores faithfully and that can never shadow
// factory_id or device_id, and the per-factory policies.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "decoding/record.hpp"

namespace plantd {

enum class UnknownDevicePolicy { reject, auto_register };

std::string_view to_string(UnknownDevicePolicy policy);
std::optional<UnknownDevicePolicy> parse_unknown_device_policy(std::string_view text);

// The InfluxDB field type of a parameter (a metric name of a factory). JSON numbers are floats
// unless the registry says integer (CONTRACT §5).
enum class ParameterType : uint8_t { float_number, integer, boolean, string };

std::string_view to_string(ParameterType type);
std::optional<ParameterType> parse_parameter_type(std::string_view text);
// The type a value of this kind is written as when nothing says otherwise (numbers as floats).
ParameterType natural_type(FieldKind kind);

// "" if `name` can be a parameter (a metric name as the decoder produces it), else why not.
std::string check_parameter_name(std::string_view name);
// "" if `unit` can be a parameter's unit (1-32 printable UTF-8 bytes), else why not.
std::string check_unit(std::string_view unit);
// "" if `name` can be an InfluxDB database or bucket of a factory, else why not.
std::string check_destination(std::string_view name);

// "" if `id` is a valid factory or device identifier, else what is wrong (naming `what`).
std::string check_identifier(std::string_view what, std::string_view id);
// "" if key=value can be a registry tag (an InfluxDB tag on the device's points), else why not.
std::string check_tag(std::string_view key, std::string_view value);

}  // namespace plantd
