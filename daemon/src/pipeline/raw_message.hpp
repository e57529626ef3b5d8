#pragma once
// A message as the broker delivered it. Topic and payload are shared with the MQTT library's
// message (no copy on the receive thread).
#include <cstdint>
#include <memory>
#include <string>

namespace plantd {

struct RawMessage {
    std::shared_ptr<const std::string> topic;
    std::shared_ptr<const std::string> payload;
    int64_t received_ms = 0;

    size_t size_bytes() const { return (topic ? topic->size() : 0) + (payload ? payload->size() : 0); }
};

}  // namespace plantd
