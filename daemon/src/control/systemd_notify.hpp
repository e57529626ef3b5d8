#pragma once
// sd_notify wrappers: READY=1, STOPPING=1, WATCHDOG=1, STATUS=, EXTEND_TIMEOUT_USEC=. No-ops outside systemd.
#include <chrono>
#include <string_view>

namespace plantd::systemd {

void notify_ready();
void notify_stopping();
void notify_watchdog();
void notify_status(std::string_view status);
// EXTEND_TIMEOUT_USEC=: asks systemd for this much more time to start or stop (a long log replay).
void notify_extend_timeout(std::chrono::microseconds more);
// The watchdog interval systemd asked for (WatchdogSec=), or zero when there is none.
std::chrono::microseconds watchdog_interval();

}  // namespace plantd::systemd
