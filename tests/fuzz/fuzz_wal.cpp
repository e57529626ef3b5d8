// libFuzzer target: the write-ahead log's segment reader and the disk buffer's batch decoder, on
// arbitrary bytes (a damaged disk). Neither may crash, read out of bounds or loop forever, and every
// record the reader returns must be consistent.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "durability/batch_file.hpp"
#include "durability/wal_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    plantd::wal::SegmentReader reader(bytes, 1 << 20);
    plantd::RawMessage message;
    size_t records = 0;
    while (reader.next(message) == plantd::wal::SegmentReader::Status::record) {
        if (message.topic_size > message.data.size()) __builtin_trap();
        (void)message.topic();
        (void)message.payload();
        if (++records > size) __builtin_trap();  // each record takes bytes: more means a loop
    }
    if (reader.offset() > size) __builtin_trap();
    auto batch = plantd::decode_batch(bytes);
    if (batch) {
        for (size_t i = 0; i < batch->lines(); ++i) {
            (void)batch->line(i);
            (void)batch->factory_of(i);
        }
    }
    return 0;
}
