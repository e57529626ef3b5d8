#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace plantd {

inline int64_t wall_clock_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Monotonic milliseconds, for ages and heartbeats (not for timestamps).
inline int64_t steady_clock_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Monotonic nanoseconds, for rate limits.
inline int64_t steady_clock_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// "2026-11-21T10:00:30.000Z"
std::string format_rfc3339_ms(int64_t epoch_ms);

}  // namespace plantd
