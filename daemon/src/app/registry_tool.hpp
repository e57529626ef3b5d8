#pragma once
// The operator's registry commands: `plantd registry migrate|status`, `plantd factory ...`,
// `plantd device ...`. Each prints what it did or a one-line error naming the factory or device,
// and returns the process exit code (see exit codes below). After a change, running plantd
// instances are told through Redis (when configured) and apply it within milliseconds; without
// Redis they see it within [registry] refresh_interval.
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "config/config.hpp"

namespace plantd {

// The exit codes of every operator command: scripts tell "it is not there" from "it did not work".
inline constexpr int exit_ok = 0;
inline constexpr int exit_failed = 1;  // refused, or a server could not be reached
inline constexpr int exit_usage = 2;   // a bad command line or configuration
inline constexpr int exit_not_found =
    3;  // the factory, device, parameter, alert or dead letter does not exist
// exit_not_found for a store error that names something missing ("no factory f1"), else exit_failed.
int exit_code_of(const std::string& problem);

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
    bool json = false;  // list and status commands: one JSON document on stdout
};

int run_registry_command(const RegistryCommand& command, const RegistryConfig& config, std::ostream& out,
                         std::ostream& err);

}  // namespace plantd
