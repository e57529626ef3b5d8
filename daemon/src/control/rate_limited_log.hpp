#pragma once
// Logs at most one line per key and interval, then says how many were suppressed: a flood of bad
// messages must not flood the journal.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include <spdlog/spdlog.h>

namespace plantd {

class RateLimitedLog {
  public:
    explicit RateLimitedLog(std::chrono::milliseconds interval) : interval_(interval) {}

    template <class... Args>
    void warn(const std::string& key, fmt::format_string<Args...> format, Args&&... args) {
        uint64_t suppressed = 0;
        {
            std::lock_guard lock(mutex_);
            auto now = std::chrono::steady_clock::now();
            auto& slot = slots_[key];
            if (slot.last.time_since_epoch().count() != 0 && now - slot.last < interval_) {
                ++slot.suppressed;
                return;
            }
            suppressed = slot.suppressed;
            slot = {now, 0};
        }
        std::string text = fmt::format(format, std::forward<Args>(args)...);
        if (suppressed > 0) {
            spdlog::warn("{} ({} similar suppressed)", text, suppressed);
        } else {
            spdlog::warn("{}", text);
        }
    }

  private:
    struct Slot {
        std::chrono::steady_clock::time_point last{};
        uint64_t suppressed = 0;
    };
    std::chrono::milliseconds interval_;
    std::mutex mutex_;
    std::unordered_map<std::string, Slot> slots_;
};

}  // namespace plantd
