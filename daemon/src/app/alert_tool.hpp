#pragma once
// The operator's alert commands: `plantd alerts list [FACTORY] [--all] [-n N]` (active alerts, or the
// history too; of one factory or of every factory) and `plantd alerts ack FACTORY ALERT_ID [--by NAME]`
// (the whole id or a unique start of it; recorded in MySQL, and told to running plantd instances
// through Redis, which publish the acknowledgement). Acknowledging never clears an alert. Returns the
// process exit code (0 done, 1 refused or failed).
#include <ostream>
#include <string>

#include "config/config.hpp"

namespace plantd {

struct AlertCommand {
    std::string verb;        // alerts-list, alerts-ack
    std::string factory_id;  // list: "" for every factory
    std::string alert_id;
    std::string by;
    bool all = false;
    size_t limit = 50;
    bool json = false;  // list: one JSON array on stdout
};

int run_alert_command(const AlertCommand& command, const RegistryConfig& config, std::ostream& out,
                      std::ostream& err);

}  // namespace plantd
