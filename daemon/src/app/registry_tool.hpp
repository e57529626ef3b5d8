#pragma once
// The operator's registry commands: `plantd registry migrate|status`, `plantd factory ...`,
// `plantd device ...`. Each prints what it did or a one-line error naming the factory or device,
// and returns the process exit code (0 done, 1 refused or failed). After a change, running plantd
// instances are told through Redis (when configured) and apply it within milliseconds; without
// Redis they see it within [registry] refresh_interval.
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "config/config.hpp"

namespace plantd {

struct RegistryCommand {
    std::string verb;  // registry-migrate, registry-status, factory-add, factory-list, factory-enable,
                       // factory-disable, factory-set-policy, factory-set-rate-limit, device-add,
                       // device-list, device-enable, device-disable, factory-set-destination,
                       // parameter-add, parameter-list, parameter-set-unit, device-set-tags,
                       // device-remove, factory-remove
    std::string factory_id;
    std::string device_id;
    std::string policy = "reject";
    std::optional<double> rate_per_s;
    std::optional<double> burst;
    bool clear_rate_limit = false;
    std::vector<std::string> tags;  // "key=value"
    std::string destination;        // factory-set-destination ("" with clear)
    bool clear = false;  // factory-set-destination, parameter-set-unit, device-set-tags: remove the value
    bool purge = false;  // factory-remove: with its devices, parameters and alert history
    std::string parameter;
    std::string type;  // float, integer, boolean, string
    std::string unit;
};

int run_registry_command(const RegistryCommand& command, const RegistryConfig& config, std::ostream& out,
                         std::ostream& err);

}  // namespace plantd
