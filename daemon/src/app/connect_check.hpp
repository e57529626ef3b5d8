#pragma once
// `plantd check --connect`: the smoke test after a deployment. Connects to every dependency the
// configuration names, with its credentials and TLS settings (the broker, InfluxDB, MySQL, Redis),
// prints one line for each (what was reached, or what failed and why) and returns 0 only if all
// answered. It never writes data and never takes over the daemon's MQTT session.
#include <ostream>

#include "config/config.hpp"

namespace plantd {

int check_connections(const Config& config, std::ostream& out);

}  // namespace plantd
