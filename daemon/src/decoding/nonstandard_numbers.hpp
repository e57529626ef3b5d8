#pragma once
// Gateways written in Python or JavaScript emit NaN, Infinity and numbers beyond double or 64-bit
// range. Strict JSON parsers reject the whole document for them; CONTRACT §2 wants only the
// field rejected. This rare-path rewrite replaces each such token (outside strings) with a string
// sentinel that the decoder recognises and rejects field by field.
#include <optional>
#include <string>
#include <string_view>

namespace plantd {

// Marks a replaced token inside a JSON string value: "\u0000" + kind + ':' + original token.
inline constexpr std::string_view nonfinite_sentinel_prefix = std::string_view("\0NF:", 4);
inline constexpr std::string_view out_of_range_sentinel_prefix = std::string_view("\0OR:", 4);

// Returns the rewritten document, or nullopt when there was nothing to rewrite.
std::optional<std::string> rewrite_nonstandard_numbers(std::string_view json);

}  // namespace plantd
