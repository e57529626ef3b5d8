#pragma once
// The write-ahead log's on-disk format. A segment file starts with an 8-byte magic, then holds
// records, each a 16-byte header (magic, body size, CRC-32 of the body, flags) and a body
// (received time, oversize marker, topic size, topic, payload). Little-endian throughout.
//
// The reader never trusts a byte: a record whose header or checksum does not hold is skipped by
// looking for the next record magic, and a record cut short by a crash ends the segment ("torn").
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/raw_message.hpp"

namespace plantd::wal {

inline constexpr std::string_view segment_magic = "PLNTWAL1";
inline constexpr size_t record_header_bytes = 16;
inline constexpr size_t record_fixed_body_bytes = 20;  // received_ms, oversize bytes, topic size

// Appends one record holding `message` to `out`.
void append_record(std::string& out, const RawMessage& message);
// The encoded size of a record holding `message`.
size_t record_bytes(const RawMessage& message);

class SegmentReader {
  public:
    // `max_body_bytes` bounds what a header may claim (a larger claim is corruption).
    SegmentReader(std::string_view bytes, size_t max_body_bytes);

    enum class Status { record, end, torn };
    // The next intact record, or the end. Damaged bytes on the way are skipped and counted.
    Status next(RawMessage& out);

    bool has_segment_magic() const { return has_magic_; }
    size_t offset() const { return offset_; }
    // Bytes skipped because a header or checksum did not hold.
    size_t corrupt_bytes() const { return corrupt_bytes_; }
    // Bytes of an incomplete last record (a write cut short by a crash).
    size_t torn_bytes() const { return torn_bytes_; }

  private:
    // Moves to the next record magic after the current offset (or to the end), counting what it skips.
    void resync();

    std::string_view bytes_;
    size_t max_body_bytes_;
    size_t offset_ = 0;
    size_t corrupt_bytes_ = 0;
    size_t torn_bytes_ = 0;
    size_t last_magic_ = std::string_view::npos;
    bool has_magic_ = false;
};

}  // namespace plantd::wal
