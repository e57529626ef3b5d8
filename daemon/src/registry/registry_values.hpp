#pragma once
// What the registry accepts from an operator, checked before anything reaches MySQL: the same
// identifier rules as topics, tags that InfluxDB stores faithfully and that can never shadow
// factory_id or device_id, and the per-factory policies.
#include <optional>
#include <string>
#include <string_view>

namespace plantd {

enum class UnknownDevicePolicy { reject, auto_register };

std::string_view to_string(UnknownDevicePolicy policy);
std::optional<UnknownDevicePolicy> parse_unknown_device_policy(std::string_view text);

// "" if `id` is a valid factory or device identifier, else what is wrong (naming `what`).
std::string check_identifier(std::string_view what, std::string_view id);
// "" if key=value can be a registry tag (an InfluxDB tag on the device's points), else why not.
std::string check_tag(std::string_view key, std::string_view value);

}  // namespace plantd
