#include "durability/batch_file.hpp"

#include <fmt/format.h>

#include "durability/file_io.hpp"

namespace plantd {

namespace {

constexpr std::string_view batch_magic = "PLNTBUF2";
constexpr std::string_view batch_magic_without_topics = "PLNTBUF1";
static_assert(batch_magic.back() == newest_batch_format);

void put_string(std::string& out, std::string_view s) {
    file_io::put_le32(out, static_cast<uint32_t>(s.size()));
    out.append(s);
}

// Reads forward through a byte range; any read past its end turns `ok` false.
struct Cursor {
    std::string_view rest;
    bool ok = true;

    uint64_t get(size_t bytes) {
        if (!ok || rest.size() < bytes) {
            ok = false;
            return 0;
        }
        uint64_t v = 0;
        for (size_t i = bytes; i-- > 0;) v = (v << 8) | static_cast<uint8_t>(rest[i]);
        rest.remove_prefix(bytes);
        return v;
    }
    std::string_view take(size_t bytes) {
        if (!ok || rest.size() < bytes) {
            ok = false;
            return {};
        }
        std::string_view out = rest.substr(0, bytes);
        rest.remove_prefix(bytes);
        return out;
    }
    std::string_view string() { return take(get(4)); }
};

}  // namespace

std::string encode_batch(const Batch& batch) {
    std::string payload;
    payload.reserve(batch.body.size() + batch.lines() * 16 + 256);
    put_string(payload, batch.destination);
    file_io::put_le32(payload, static_cast<uint32_t>(batch.factories.size()));
    for (const auto& factory : batch.factories) put_string(payload, factory);
    file_io::put_le32(payload, static_cast<uint32_t>(batch.lines()));
    for (size_t i = 0; i < batch.lines(); ++i) {
        file_io::put_le32(payload, batch.line_ends[i]);
        file_io::put_le32(payload, batch.line_factory[i]);
        file_io::put_le64(payload, static_cast<uint64_t>(batch.line_time_ms[i]));
    }
    put_string(payload, batch.body);
    // Lines without a topic (a batch built without end_line's topic) get one empty topic.
    const bool topics = batch.line_topic.size() == batch.lines() && !batch.topic_ends.empty();
    put_string(payload, topics ? std::string_view(batch.topic_text) : std::string_view());
    file_io::put_le32(payload, topics ? static_cast<uint32_t>(batch.topic_ends.size()) : 1);
    if (topics) {
        for (uint32_t end : batch.topic_ends) file_io::put_le32(payload, end);
    } else {
        file_io::put_le32(payload, 0);
    }
    for (size_t i = 0; i < batch.lines(); ++i) file_io::put_le32(payload, topics ? batch.line_topic[i] : 0);
    std::string out(batch_magic);
    file_io::put_le32(out, file_io::crc32_of(payload));
    file_io::put_le32(out, static_cast<uint32_t>(payload.size()));
    out += payload;
    return out;
}

Result<Batch> decode_batch(std::string_view bytes) {
    const bool with_topics = bytes.substr(0, batch_magic.size()) == batch_magic;
    if (!with_topics && bytes.substr(0, batch_magic.size()) != batch_magic_without_topics)
        return fail(std::string("not a plantd batch file"));
    Cursor header{bytes.substr(batch_magic.size())};
    const auto crc = static_cast<uint32_t>(header.get(4));
    const auto size = header.get(4);
    if (!header.ok || header.rest.size() != size)
        return fail(
            fmt::format("cut short or too long ({} bytes; the header says {})", header.rest.size(), size));
    if (file_io::crc32_of(header.rest) != crc) return fail(std::string("checksum mismatch"));
    Cursor in{header.rest};
    Batch batch;
    batch.destination = std::string(in.string());
    const uint64_t factories = in.get(4);
    if (factories > in.rest.size() / 4) return fail(std::string("bad factory count"));
    for (uint64_t i = 0; i < factories && in.ok; ++i) batch.factories.emplace_back(in.string());
    const uint64_t lines = in.get(4);
    if (lines > in.rest.size() / 16) return fail(std::string("bad line count"));
    batch.line_ends.reserve(lines);
    for (uint64_t i = 0; i < lines && in.ok; ++i) {
        batch.line_ends.push_back(static_cast<uint32_t>(in.get(4)));
        batch.line_factory.push_back(static_cast<uint32_t>(in.get(4)));
        batch.line_time_ms.push_back(static_cast<int64_t>(in.get(8)));
    }
    batch.body = std::string(in.string());
    if (with_topics) {
        batch.topic_text = std::string(in.string());
        const uint64_t topics = in.get(4);
        if (topics > in.rest.size() / 4) return fail(std::string("bad topic count"));
        uint32_t topic_end = 0;
        for (uint64_t i = 0; i < topics && in.ok; ++i) {
            batch.topic_ends.push_back(static_cast<uint32_t>(in.get(4)));
            if (batch.topic_ends.back() < topic_end || batch.topic_ends.back() > batch.topic_text.size())
                return fail(fmt::format("topic {} is out of bounds", i));
            topic_end = batch.topic_ends.back();
        }
        for (uint64_t i = 0; i < lines && in.ok; ++i) {
            batch.line_topic.push_back(static_cast<uint32_t>(in.get(4)));
            if (batch.line_topic.back() >= batch.topic_ends.size())
                return fail(fmt::format("line {}: topic index out of bounds", i));
        }
    }
    if (!in.ok || !in.rest.empty()) return fail(std::string("fields do not add up to the file's size"));
    uint32_t previous = 0;
    for (size_t i = 0; i < batch.lines(); ++i) {
        if (batch.line_ends[i] <= previous || batch.line_ends[i] > batch.body.size() ||
            batch.line_factory[i] >= batch.factories.size())
            return fail(fmt::format("line {} is out of bounds", i));
        previous = batch.line_ends[i];
    }
    if (previous != batch.body.size()) return fail(std::string("the body does not end with the last line"));
    return batch;
}

}  // namespace plantd
