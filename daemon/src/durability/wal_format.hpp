#pragma once
// The write-ahead log's on-disk format. A segment file starts with a 16-byte header (the magic
// "PLNTWAL2" and a random 8-byte salt, one per plantd run), then holds records, each a 16-byte header
// (magic, body size, checksum, flags) and a body (received time, oversize marker, topic size, topic,
// payload). Little-endian throughout.
//
// The checksum is the CRC-32 of the salt followed by the body. The salt is what makes a record found
// after damage trustworthy: the reader skips damaged bytes by looking for the next record magic, and
// may then land inside a payload, whose bytes a publisher chose. A record forged there (say, a
// message for another factory) would need the checksum of a salt the publisher never sees, so it is
// skipped as damage (one chance in 2^32 per forged record). A record cut short by a crash ends the
// segment ("torn"). Segments of the first format ("PLNTWAL1", no salt) are still read; a file with
// neither header holds nothing the reader can trust, and is read as damage.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/raw_message.hpp"

namespace plantd::wal {

inline constexpr std::string_view segment_magic = "PLNTWAL2";
inline constexpr std::string_view segment_magic_unsalted = "PLNTWAL1";
inline constexpr size_t segment_header_bytes = 16;  // magic, salt
inline constexpr size_t record_header_bytes = 16;
inline constexpr size_t record_fixed_body_bytes = 20;  // received_ms, oversize bytes, topic size

// The header a new segment starts with.
std::string segment_header(uint64_t salt);
// Appends one record holding `message` to `out`, for a segment whose header holds `salt`.
void append_record(std::string& out, const RawMessage& message, uint64_t salt);
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
    bool salted() const { return salted_; }
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
    bool salted_ = false;
    uint32_t crc_seed_ = 0;  // the CRC-32 of the salt: every record's checksum continues from it
};

}  // namespace plantd::wal
