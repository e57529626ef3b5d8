// Shared by the durability unit tests: a scratch directory, numbered messages, a small log config.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "config/config.hpp"
#include "core/raw_message.hpp"

namespace plantd::test {

struct ScratchDirectory {
    std::string path;
    ScratchDirectory() {
        std::string pattern = (std::filesystem::temp_directory_path() / "plantd-unit-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~ScratchDirectory() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

inline RawMessage message(int i, size_t payload_bytes = 0) {
    std::string payload = R"({"metrics":{"seq":)" + std::to_string(i) + "}}";
    payload.append(payload_bytes, ' ');
    return RawMessage::make("f/factory/f1/device/d" + std::to_string(i % 3) + "/telemetry", payload,
                            1'700'000'000'000 + i);
}

inline DurabilityConfig durability_in(const std::string& directory) {
    DurabilityConfig config;
    config.directory = directory;
    config.segment_bytes = 64 * 1024;
    config.wal_max_bytes = 1024 * 1024;
    return config;
}

}  // namespace plantd::test
