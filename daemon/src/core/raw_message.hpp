#pragma once
// A message as the broker delivered it: topic and payload in one allocation (the receive thread
// makes one malloc per message, and the queue moves it, with no reference counting).
#include <cstdint>
#include <string>
#include <string_view>

namespace plantd {

struct RawMessage {
    std::string data;  // the topic, then the payload
    uint32_t topic_size = 0;
    int64_t received_ms = 0;
    // > 0: the payload was too large to keep (about this many bytes) and `data` holds only the topic.
    size_t oversize_payload_bytes = 0;
    // The write-ahead log segment that holds this message (0: none). Whoever resolves the message
    // (written, rejected, or handed to the disk buffer) releases it there.
    uint32_t wal_segment = 0;
    // Read back from the write-ahead log at start-up: the previous run took it, and its records
    // already reached the rules then (their state was saved after them), so they do not go there again.
    bool replayed = false;

    static RawMessage make(std::string_view topic, std::string_view payload, int64_t received_ms) {
        RawMessage message;
        message.data.reserve(topic.size() + payload.size());
        message.data.append(topic).append(payload);
        message.topic_size = static_cast<uint32_t>(topic.size());
        message.received_ms = received_ms;
        return message;
    }

    std::string_view topic() const { return std::string_view(data).substr(0, topic_size); }
    std::string_view payload() const { return std::string_view(data).substr(topic_size); }
    size_t size_bytes() const { return data.size(); }
    bool empty() const { return data.empty(); }
};

}  // namespace plantd
