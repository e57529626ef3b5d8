#pragma once
// JSON text for the few places that write JSON by hand (dead letters, /health, the registry in Redis).
#include <string>
#include <string_view>

namespace plantd {

// JSON string escaping (quotes included); the input must be valid UTF-8.
void append_json_string(std::string& out, std::string_view text);

}  // namespace plantd
