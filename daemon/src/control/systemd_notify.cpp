#include "control/systemd_notify.hpp"

#include <systemd/sd-daemon.h>
#include <string>

namespace plantd::systemd {

void notify_ready() {
    sd_notify(0, "READY=1");
}
void notify_stopping() {
    sd_notify(0, "STOPPING=1");
}
void notify_watchdog() {
    sd_notify(0, "WATCHDOG=1");
}
void notify_status(std::string_view status) {
    sd_notify(0, ("STATUS=" + std::string(status)).c_str());
}

void notify_extend_timeout(std::chrono::microseconds more) {
    sd_notify(0, ("EXTEND_TIMEOUT_USEC=" + std::to_string(more.count())).c_str());
}

std::chrono::microseconds watchdog_interval() {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0) return std::chrono::microseconds(usec);
    return std::chrono::microseconds(0);
}

}  // namespace plantd::systemd
