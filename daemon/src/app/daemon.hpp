#pragma once
#include "config/config.hpp"

namespace plantd {

// Runs plantd until SIGTERM or SIGINT, then drains: stop receiving, write every buffered record,
// exit 0. Returns the process exit code. Must be called before any other thread is started.
int run_daemon(const Config& config);
// --check-config: the rule files of [rules] directory; "" or every problem, naming file, rule and key.
std::string check_rules(const std::string& directory);

// Logs to stderr (the journal under systemd) at the configured level.
void configure_logging(const std::string& level);

}  // namespace plantd
