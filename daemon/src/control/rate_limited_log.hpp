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

    // Once an interval: one line for what was held back and not yet said by a later line of its key,
    // so that no rejection stays invisible in the log ("held back in the last 10 s: 1200 malformed_json").
    void log_summary() {
        std::string held;
        uint64_t total = 0;
        {
            std::lock_guard lock(mutex_);
            auto now = std::chrono::steady_clock::now();
            if (now - last_summary_ < interval_) return;
            last_summary_ = now;
            for (auto& [key, slot] : slots_) {
                if (slot.suppressed == 0) continue;
                held += fmt::format("{}{} {}", held.empty() ? "" : ", ", slot.suppressed, key);
                total += slot.suppressed;
                slot.suppressed = 0;
            }
        }
        if (total > 0)
            spdlog::warn("held back in the last {:g} s: {} similar log lines ({})",
                         static_cast<double>(interval_.count()) / 1000.0, total, held);
    }

  private:
    struct Slot {
        std::chrono::steady_clock::time_point last{};
        uint64_t suppressed = 0;
    };
    std::chrono::milliseconds interval_;
    std::mutex mutex_;
    std::unordered_map<std::string, Slot> slots_;
    std::chrono::steady_clock::time_point last_summary_ = std::chrono::steady_clock::now();
};

}  // namespace plantd
