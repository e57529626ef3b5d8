#pragma once
// Tags a record gets beyond factory_id and device_id (from the registry), sorted by key; each a valid
// InfluxDB tag (checked where they are read).
#include <string>
#include <utility>
#include <vector>

namespace plantd {

using ExtraTags = std::vector<std::pair<std::string, std::string>>;

}  // namespace plantd
