#pragma once
// Validation of the identifiers and names that CONTRACT §2 fixes.
#include <string>
#include <string_view>

namespace plantd {

// factory_id, device_id, gateway_id: ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$
bool is_valid_identifier(std::string_view id);

// 1-128 bytes of (already validated) UTF-8, no C0/C1 control characters or DEL, not starting with '_'.
bool is_valid_metric_name(std::string_view name);

// True when the text contains a C0/C1 control character or DEL (UTF-8 input).
bool contains_control_character(std::string_view text);

// InfluxDB 1.x line protocol has no escape for a backslash in keys: a run of an odd number of
// backslashes right before ',', '=', ' ', '"' or the end of the key would swallow the separator.
// Such a key cannot be written faithfully and is rejected instead of corrupting the line.
bool is_line_protocol_safe_key(std::string_view key);

// Text from the network or an operator, safe to print in a log line or an error: control characters
// become '?', and more than `max` bytes are cut with "...".
std::string printable(std::string_view text, size_t max = 200);

}  // namespace plantd
