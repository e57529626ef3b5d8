#pragma once
// Every dependency is asked once before anything starts, so that the first minute says what is wrong:
// a credential InfluxDB or MySQL refuses is a configuration error (plantd does not start, exit 2,
// naming the keys to fix); a server that does not answer is an outage plantd rides out (degraded,
// `/ready` 503 until records can reach InfluxDB, the error text in `/health`).
#include "config/config.hpp"
#include "control/health.hpp"

namespace plantd {

// 0: go on (perhaps degraded, as `health` now says); 2: a configuration error, already logged.
int check_dependencies(const Config& config, Health& health);

// While InfluxDB has not answered since the start and no writer has tried: true (and `health`
// cleared) once it answers.
bool recheck_influxdb(const InfluxConfig& config, Health& health);

}  // namespace plantd
