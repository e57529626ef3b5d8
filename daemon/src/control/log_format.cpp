#include "control/log_format.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <spdlog/pattern_formatter.h>

namespace plantd {

namespace {

// "<N>": sd-daemon(3)'s priority prefix.
class SyslogPriority final : public spdlog::custom_flag_formatter {
  public:
    void format(const spdlog::details::log_msg& message, const std::tm&, spdlog::memory_buf_t& out) override {
        int priority = 6;
        switch (message.level) {
            case spdlog::level::trace:
            case spdlog::level::debug:
                priority = 7;
                break;
            case spdlog::level::info:
                priority = 6;
                break;
            case spdlog::level::warn:
                priority = 4;
                break;
            case spdlog::level::err:
                priority = 3;
                break;
            case spdlog::level::critical:
                priority = 2;
                break;
            default:
                break;
        }
        const char text[] = {'<', static_cast<char>('0' + priority), '>'};
        out.append(text, text + 3);
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<SyslogPriority>();
    }
};

}  // namespace

bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (!stream) return false;
    struct stat st {};
    if (::fstat(2, &st) != 0) return false;
    unsigned long long device = 0, inode = 0;
    if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
    return device == static_cast<unsigned long long>(st.st_dev) &&
           inode == static_cast<unsigned long long>(st.st_ino);
}

std::unique_ptr<spdlog::formatter> make_log_formatter(bool journal) {
    if (journal) {
        auto formatter = std::make_unique<spdlog::pattern_formatter>();
        formatter->add_flag<SyslogPriority>('*').set_pattern("%*%v");
        return formatter;
    }
    return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v",
                                                       spdlog::pattern_time_type::utc);
}

}  // namespace plantd
