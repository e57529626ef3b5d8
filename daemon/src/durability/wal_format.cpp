#include "durability/wal_format.hpp"

#include <cstring>

#include "durability/file_io.hpp"

namespace plantd::wal {

namespace {

constexpr uint32_t record_magic = 0x4C415750;  // "PWAL" read as little-endian bytes

using file_io::get_le32;
using file_io::get_le64;
using file_io::put_le32;
using file_io::put_le64;

}  // namespace

namespace {

uint32_t crc_seed_of(uint64_t salt) {
    std::string bytes;
    put_le64(bytes, salt);
    return file_io::crc32_of(bytes);
}

}  // namespace

std::string segment_header(uint64_t salt) {
    std::string out(segment_magic);
    put_le64(out, salt);
    return out;
}

size_t record_bytes(const RawMessage& message) {
    return record_header_bytes + record_fixed_body_bytes + message.data.size();
}

void append_record(std::string& out, const RawMessage& message, uint64_t salt) {
    const size_t header_at = out.size();
    put_le32(out, record_magic);
    put_le32(out, static_cast<uint32_t>(record_fixed_body_bytes + message.data.size()));
    put_le32(out, 0);  // checksum, filled in below
    put_le32(out, 0);  // flags (none yet)
    const size_t body_at = out.size();
    put_le64(out, static_cast<uint64_t>(message.received_ms));
    put_le64(out, static_cast<uint64_t>(message.oversize_payload_bytes));
    put_le32(out, message.topic_size);
    out.append(message.data);
    const uint32_t crc = file_io::crc32_of(std::string_view(out).substr(body_at), crc_seed_of(salt));
    for (int i = 0; i < 4; ++i) out[header_at + 8 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
}

SegmentReader::SegmentReader(std::string_view bytes, size_t max_body_bytes)
    : bytes_(bytes), max_body_bytes_(max_body_bytes) {
    if (bytes_.size() >= segment_header_bytes && bytes_.substr(0, segment_magic.size()) == segment_magic) {
        has_magic_ = salted_ = true;
        crc_seed_ = crc_seed_of(get_le64(bytes_.data() + segment_magic.size()));
        offset_ = segment_header_bytes;
    } else if (bytes_.substr(0, segment_magic_unsalted.size()) == segment_magic_unsalted) {
        has_magic_ = true;  // an earlier version's segment: its records carry plain CRC-32s
        offset_ = segment_magic_unsalted.size();
    } else {
        // Not a segment we wrote, or its header is damaged: without the salt no record can be
        // told from a forged one, so all of it is damage.
        corrupt_bytes_ = bytes_.size();
        offset_ = bytes_.size();
    }
    // The last record magic: a record cut short before it was damaged, not torn (found once here, so
    // that damage costs linear time).
    last_magic_ = bytes_.rfind("PWAL");
}

void SegmentReader::resync() {
    // Always forward: from the byte after the current offset to the next record magic.
    const size_t from = offset_;
    size_t at = offset_ + 1;
    for (; at + 4 <= bytes_.size(); ++at) {
        if (get_le32(bytes_.data() + at) == record_magic) break;
    }
    if (at + 4 > bytes_.size()) at = bytes_.size();
    corrupt_bytes_ += at - from;
    offset_ = at;
}

SegmentReader::Status SegmentReader::next(RawMessage& out) {
    while (offset_ < bytes_.size()) {
        const size_t left = bytes_.size() - offset_;
        const char* p = bytes_.data() + offset_;
        if (left < record_header_bytes) {
            // A header cut short: torn if it could be the start of a record, else damage.
            if (std::memcmp(p, "PWAL", std::min<size_t>(left, 4)) == 0) {
                torn_bytes_ += left;
                offset_ = bytes_.size();
                return Status::torn;
            }
            corrupt_bytes_ += left;
            offset_ = bytes_.size();
            return Status::end;
        }
        const uint32_t magic = get_le32(p);
        const uint32_t body_size = get_le32(p + 4);
        const uint32_t crc = get_le32(p + 8);
        if (magic != record_magic || body_size < record_fixed_body_bytes || body_size > max_body_bytes_) {
            resync();
            continue;
        }
        if (left - record_header_bytes < body_size) {
            // Cut short at the end: the crash came during this write. Unless another record follows
            // (then the size was damaged, not the write cut short).
            if (last_magic_ == std::string_view::npos || last_magic_ <= offset_) {
                torn_bytes_ += left;
                offset_ = bytes_.size();
                return Status::torn;
            }
            resync();
            continue;
        }
        const char* body = p + record_header_bytes;
        if (file_io::crc32_of(std::string_view(body, body_size), crc_seed_) != crc) {
            resync();
            continue;
        }
        const auto received_ms = static_cast<int64_t>(get_le64(body));
        const uint64_t oversize = get_le64(body + 8);
        const uint32_t topic_size = get_le32(body + 16);
        const size_t data_size = body_size - record_fixed_body_bytes;
        if (topic_size > data_size) {
            resync();
            continue;
        }
        out.data.assign(body + record_fixed_body_bytes, data_size);
        out.topic_size = topic_size;
        out.received_ms = received_ms;
        out.oversize_payload_bytes = static_cast<size_t>(oversize);
        offset_ += record_header_bytes + body_size;
        return Status::record;
    }
    return Status::end;
}

}  // namespace plantd::wal
