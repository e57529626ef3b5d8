#pragma once
// The operator's registry commands: `plantd registry migrate|status`, `plantd factory ...`,
// `plantd device ...`. Each prints what it did or a one-line error naming the factory or device,
// and returns the process exit code (0 done, 1 refused or failed).
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "config/config.hpp"

namespace plantd {

struct RegistryCommand {
    std::string verb;  // registry-migrate, registry-status, factory-add, factory-list, factory-enable,
                       // factory-disable, factory-set-policy, factory-set-rate-limit, device-add,
                       // device-list, device-enable, device-disable
    std::string factory_id;
    std::string device_id;
    std::string policy = "reject";
    std::optional<double> rate_per_s;
    std::optional<double> burst;
    bool clear_rate_limit = false;
    std::vector<std::string> tags;  // "key=value"
};

int run_registry_command(const RegistryCommand& command, const RegistryConfig& config, std::ostream& out,
                         std::ostream& err);

}  // namespace plantd
