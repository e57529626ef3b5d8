#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace plantd {

// Parses an RFC 3339 date-time ("2026-11-21T10:00:30.123Z", "...+02:00") to epoch milliseconds.
// Fractions beyond milliseconds are truncated. Returns nullopt for anything that is not RFC 3339.
std::optional<int64_t> parse_rfc3339_ms(std::string_view text);

}  // namespace plantd
