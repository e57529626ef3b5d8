// Fuzzes the TOML config loader: any text yields a config or an error message, never a crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto config = plantd::load_config_text(text, "fuzz.toml");
    if (!config.ok() && config.error().empty()) std::abort();
    return 0;
}
