#pragma once
// Human units in the config: durations ("250ms", "30s", "5m", "1h") and sizes ("64KiB", "4MiB", 1024).
#include <cstdint>
#include <optional>
#include <string_view>

namespace plantd {

std::optional<int64_t> parse_duration_ms(std::string_view text);
std::optional<uint64_t> parse_size_bytes(std::string_view text);

}  // namespace plantd
