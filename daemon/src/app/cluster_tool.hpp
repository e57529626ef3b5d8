#pragma once
// `plantd cluster status [--json]`: the members of the cluster as Redis holds them (instance id,
// version, last heartbeat, lease validity, owned factories) and each factory's owner with its lease's
// remaining time. Exit code 0, or 1 if Redis cannot be read.
#include <ostream>

#include "config/config.hpp"

namespace plantd {

int run_cluster_status(const Config& config, bool json, std::ostream& out, std::ostream& err);

}  // namespace plantd
