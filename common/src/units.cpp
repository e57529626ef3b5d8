#include "common/units.hpp"

#include <charconv>

namespace plantd {

namespace {

// Splits "123unit" into number and unit; the number is a non-negative integer.
std::optional<std::pair<uint64_t, std::string_view>> split_number(std::string_view text) {
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data()) return std::nullopt;
    std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
    while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
    return std::make_pair(value, unit);
}

std::optional<uint64_t> multiply(uint64_t value, uint64_t factor) {
    if (factor != 0 && value > UINT64_MAX / factor) return std::nullopt;
    return value * factor;
}

}  // namespace

std::optional<int64_t> parse_duration_ms(std::string_view text) {
    auto split = split_number(text);
    if (!split) return std::nullopt;
    auto [value, unit] = *split;
    uint64_t factor;
    if (unit == "ms")
        factor = 1;
    else if (unit == "s")
        factor = 1000;
    else if (unit == "m" || unit == "min")
        factor = 60'000;
    else if (unit == "h")
        factor = 3'600'000;
    else if (unit == "d")
        factor = 86'400'000;
    else
        return std::nullopt;
    auto ms = multiply(value, factor);
    if (!ms || *ms > static_cast<uint64_t>(INT64_MAX / 1000)) return std::nullopt;
    return static_cast<int64_t>(*ms);
}

std::optional<uint64_t> parse_size_bytes(std::string_view text) {
    auto split = split_number(text);
    if (!split) return std::nullopt;
    auto [value, unit] = *split;
    uint64_t factor;
    if (unit.empty() || unit == "B")
        factor = 1;
    else if (unit == "KiB" || unit == "KB" || unit == "K")
        factor = 1024;
    else if (unit == "MiB" || unit == "MB" || unit == "M")
        factor = 1024 * 1024;
    else if (unit == "GiB" || unit == "GB" || unit == "G")
        factor = 1024ull * 1024 * 1024;
    else
        return std::nullopt;
    return multiply(value, factor);
}

}  // namespace plantd
