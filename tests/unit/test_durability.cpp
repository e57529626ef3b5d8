// The write-ahead log's format and segments, the disk buffer's batch files: round trips, damage,
// a crash cut short, a full file system, and the lock against a second plantd.
#include <doctest/doctest.h>

#include <zlib.h>

#include <sys/resource.h>
#include <unistd.h>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "config/config.hpp"
#include "durability/batch_file.hpp"
#include "durability/disk_buffer.hpp"
#include "durability/wal_format.hpp"
#include "durability/write_ahead_log.hpp"
#include "durability_rig.hpp"

using namespace plantd;
using namespace plantd::test;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    return std::move(content).str();
}

constexpr uint64_t test_salt = 0x5eed'1234'abcd'0042;

// A record of the first format, written here by hand: header, then the body with a plain CRC-32.
std::string unsalted_record(const RawMessage& m) {
    std::string body;
    auto le = [](std::string& out, uint64_t v, int bytes) {
        for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
    };
    le(body, static_cast<uint64_t>(m.received_ms), 8);
    le(body, m.oversize_payload_bytes, 8);
    le(body, m.topic_size, 4);
    body += m.data;
    std::string out = "PWAL";
    le(out, body.size(), 4);
    le(out, crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())), 4);
    le(out, 0, 4);
    return out + body;
}

std::vector<RawMessage> read_all(std::string_view bytes, size_t* corrupt = nullptr, size_t* torn = nullptr) {
    wal::SegmentReader reader(bytes, 1 << 20);
    std::vector<RawMessage> out;
    RawMessage m;
    while (reader.next(m) == wal::SegmentReader::Status::record) out.push_back(m);
    if (corrupt) *corrupt = reader.corrupt_bytes();
    if (torn) *torn = reader.torn_bytes();
    return out;
}

std::vector<std::string> segment_files(const std::string& directory) {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(directory + "/wal"))
        if (entry.path().extension() == ".wal") out.push_back(entry.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST_CASE("wal format: records round-trip with topic, payload, time and oversize marker") {
    std::string segment = wal::segment_header(test_salt);
    RawMessage big = message(7);
    big.oversize_payload_bytes = 123456;
    for (int i = 0; i < 5; ++i) wal::append_record(segment, message(i), test_salt);
    wal::append_record(segment, big, test_salt);
    CHECK(segment.size() ==
          wal::segment_header_bytes + 5 * wal::record_bytes(message(0)) + wal::record_bytes(big));
    size_t corrupt = 1, torn = 1;
    auto records = read_all(segment, &corrupt, &torn);
    REQUIRE(records.size() == 6);
    CHECK(corrupt == 0);
    CHECK(torn == 0);
    for (int i = 0; i < 5; ++i) {
        CHECK(records[i].topic() == message(i).topic());
        CHECK(records[i].payload() == message(i).payload());
        CHECK(records[i].received_ms == 1'700'000'000'000 + i);
        CHECK(records[i].oversize_payload_bytes == 0);
    }
    CHECK(records[5].oversize_payload_bytes == 123456);
}

TEST_CASE("wal format: a write cut short is torn, damage in the middle costs only the damaged record") {
    std::string segment = wal::segment_header(test_salt);
    for (int i = 0; i < 4; ++i) wal::append_record(segment, message(i), test_salt);
    const size_t one = wal::record_bytes(message(0));

    // A crash in the middle of the last write.
    for (size_t cut : {size_t{1}, size_t{10}, one - 1}) {
        size_t corrupt = 0, torn = 0;
        auto records = read_all(std::string_view(segment).substr(0, segment.size() - cut), &corrupt, &torn);
        CHECK(records.size() == 3);
        CHECK(torn == one - cut);
        CHECK(corrupt == 0);
    }
    // A flipped payload byte in record 1: its checksum fails; records 0, 2, 3 survive.
    std::string damaged = segment;
    damaged[wal::segment_header_bytes + one + one - 3] ^= 0x5a;
    size_t corrupt = 0;
    auto records = read_all(damaged, &corrupt);
    REQUIRE(records.size() == 3);
    CHECK(records[0].received_ms == 1'700'000'000'000);
    CHECK(records[1].received_ms == 1'700'000'000'002);
    CHECK(corrupt == one);
    // A header claiming a huge body is damage too, not a reason to read past the end.
    damaged = segment;
    damaged[wal::segment_header_bytes + 7] = '\x7f';
    records = read_all(damaged, &corrupt);
    CHECK(records.size() == 3);
    // Found by fuzz_wal: a record magic at offset 0 (no segment magic) with a bad size looped forever.
    CHECK(read_all(std::string("PWAL\x02\xff_p\x01\x02\x03\x04\x05\x06\x07\x08\x09", 17)).empty());
    CHECK(read_all(std::string("PWALPWALPWALPWALPWAL")).empty());
    // Garbage without any record, and an empty file.
    CHECK(read_all("garbage that is not a segment at all").empty());
    CHECK(read_all("").empty());
}

TEST_CASE(
    "wal format: a record forged inside a payload is not replayed when damage makes the reader resync") {
    // A publisher of factory A sends a payload holding a whole, well-formed log record for factory B,
    // with a correct plain CRC-32 (and one with the checksum of some other salt).
    RawMessage forged =
        RawMessage::make("plant/factory/B/device/d1/telemetry", R"({"metrics":{"t":666}})", 1);
    std::string inner_other = wal::segment_header(0x1111);
    wal::append_record(inner_other, forged, 0x1111);
    const std::string payload = unsalted_record(forged) + inner_other.substr(wal::segment_header_bytes);
    RawMessage carrier = RawMessage::make("plant/factory/A/device/d1/telemetry", payload, 2);
    std::string segment = wal::segment_header(test_salt);
    wal::append_record(segment, carrier, test_salt);
    wal::append_record(segment, message(1), test_salt);
    // Intact, the carrier is read whole and the forged bytes stay payload.
    auto records = read_all(segment);
    REQUIRE(records.size() == 2);
    CHECK(records[0].topic() == "plant/factory/A/device/d1/telemetry");
    CHECK(records[0].payload() == payload);
    // A torn or flipped byte in the carrier's header: the reader resyncs into its payload, finds both
    // forged records (magic, size and their own checksums hold) and skips them, then the next record.
    for (size_t at : {size_t{4}, size_t{9}, size_t{17}}) {
        CAPTURE(at);
        std::string damaged = segment;
        damaged[wal::segment_header_bytes + at] ^= 0x40;
        size_t corrupt = 0;
        records = read_all(damaged, &corrupt);
        REQUIRE(records.size() == 1);
        CHECK(records[0].topic() == message(1).topic());
        CHECK(corrupt == wal::record_bytes(carrier));
    }
    // The same segment in the first format (no salt): an earlier version's files are still read.
    const std::string old_format = std::string(wal::segment_magic_unsalted) + unsalted_record(message(1));
    records = read_all(old_format);
    REQUIRE(records.size() == 1);
    CHECK(records[0].payload() == message(1).payload());
    // A file whose header is gone cannot prove any record is ours: all of it is damage.
    size_t corrupt = 0;
    CHECK(read_all(std::string_view(segment).substr(wal::segment_header_bytes), &corrupt).empty());
    CHECK(corrupt == segment.size() - wal::segment_header_bytes);
}

TEST_CASE("write-ahead log: segments are deleted once every message in them is resolved") {
    ScratchDirectory scratch;
    auto log = WriteAheadLog::open(durability_in(scratch.path), 1 << 20);
    REQUIRE(log.ok());
    auto& wal = **log;
    std::vector<uint32_t> segments;
    std::string error;
    for (int i = 0; i < 300; ++i) {  // ~300 × 1 KiB: several 64 KiB segments
        wal.stage(message(i, 1000));
        REQUIRE(wal.commit(error));
        segments.push_back(wal.committed_segment());
    }
    CHECK(segments.front() != segments.back());
    CHECK(wal.unresolved() == 300);
    CHECK(segment_files(scratch.path).size() >= 4);
    for (int i = 0; i < 300; ++i) wal.release(segments[i]);
    CHECK(wal.unresolved() == 0);
    // Every closed segment is gone; the open one stays until close().
    CHECK(segment_files(scratch.path).size() == 1);
    wal.close();
    CHECK(segment_files(scratch.path).empty());
}

TEST_CASE(
    "write-ahead log: what was not resolved is replayed by the next start, and the lock keeps out a second "
    "plantd") {
    ScratchDirectory scratch;
    const auto config = durability_in(scratch.path);
    {
        auto log = WriteAheadLog::open(config, 1 << 20);
        REQUIRE(log.ok());
        std::string error;
        for (int i = 0; i < 10; ++i) (*log)->stage(message(i));
        REQUIRE((*log)->commit(error));
        auto second = WriteAheadLog::open(config, 1 << 20);
        REQUIRE_FALSE(second.ok());
        CHECK(second.error().find("in use by another plantd") != std::string::npos);
        for (int i = 0; i < 4; ++i) (*log)->release((*log)->committed_segment());
        // No close(): a crash.
    }
    auto log = WriteAheadLog::open(config, 1 << 20);
    REQUIRE(log.ok());
    std::vector<RawMessage> replayed;
    auto recovery = (*log)->recover([&](RawMessage&& m) { replayed.push_back(std::move(m)); });
    // The whole segment comes back (points are idempotent): order and content as written.
    REQUIRE(replayed.size() == 10);
    CHECK(recovery.records == 10);
    CHECK(recovery.segments == 1);
    for (int i = 0; i < 10; ++i) CHECK(replayed[i].payload() == message(i).payload());
    const uint32_t old_segment = replayed[0].wal_segment;
    CHECK(old_segment != 0);
    CHECK(segment_files(scratch.path).size() == 2);  // the old one and the new open one
    for (auto& m : replayed) (*log)->release(m.wal_segment);
    CHECK(segment_files(scratch.path).size() == 1);
    (*log)->close();
    CHECK(segment_files(scratch.path).empty());
}

TEST_CASE("write-ahead log: a full file system fails the commit, cuts back, and a later commit succeeds") {
    ScratchDirectory scratch;
    auto log = WriteAheadLog::open(durability_in(scratch.path), 1 << 20);
    REQUIRE(log.ok());
    auto& wal = **log;
    std::string error;
    wal.stage(message(0));
    REQUIRE(wal.commit(error));
    const auto files = segment_files(scratch.path);
    REQUIRE(files.size() == 1);
    const std::string path = scratch.path + "/wal/" + files[0];
    const auto good_size = std::filesystem::file_size(path);

    // RLIMIT_FSIZE stands in for a full disk: writes beyond it fail (EFBIG; SIGXFSZ ignored).
    auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit saved{};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit limited = saved;
    limited.rlim_cur = good_size + 100;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
    wal.stage(message(1, 500));
    wal.stage(message(2, 500));
    const bool committed = wal.commit(error);
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, previous_handler);
    CHECK_FALSE(committed);
    CHECK(error.find("cannot write") != std::string::npos);
    CHECK(wal.write_failures() == 1);
    CHECK(std::filesystem::file_size(path) == good_size);  // no half record left behind
    CHECK(wal.has_staged());

    REQUIRE(wal.commit(error));  // room again: the same records go in
    size_t corrupt = 1, torn = 1;
    auto records = read_all(read_file(path), &corrupt, &torn);
    REQUIRE(records.size() == 3);
    CHECK(records[2].payload() == message(2, 500).payload());
    CHECK(corrupt == 0);
    CHECK(torn == 0);
}

TEST_CASE("batch files: round trip, and damage is an error that names the problem") {
    Batch batch;
    batch.destination = "plant_a";
    batch.body = "telemetry,factory_id=fa,device_id=d1 t=1 1000\n";
    batch.end_line("fa", 1000, "plant/factory/fa/device/d1/telemetry");
    batch.body += "telemetry,factory_id=fa,device_id=d1 u=1 1000\n";
    batch.end_line("fa", 1000, "plant/factory/fa/device/d1/telemetry");
    batch.body += "telemetry,factory_id=fb,device_id=d2 t=2 2000\n";
    batch.end_line("fb", 2000, "plant/factory/fb/device/d2/telemetry");
    CHECK(batch.topic_ends.size() == 2);  // one per run of lines from one topic
    const std::string bytes = encode_batch(batch);
    auto decoded = decode_batch(bytes);
    REQUIRE(decoded.ok());
    CHECK(decoded->destination == "plant_a");
    CHECK(decoded->body == batch.body);
    CHECK(decoded->lines() == 3);
    CHECK(decoded->factory_of(2) == "fb");
    CHECK(decoded->line_time_ms[2] == 2000);
    CHECK(decoded->line(0) == batch.line(0));
    CHECK(decoded->topic_of(1) == "plant/factory/fa/device/d1/telemetry");
    CHECK(decoded->topic_of(2) == "plant/factory/fb/device/d2/telemetry");

    std::string damaged = bytes;
    damaged[bytes.size() - 5] ^= 1;
    CHECK(decode_batch(damaged).error() == "checksum mismatch");
    CHECK_FALSE(decode_batch(bytes.substr(0, bytes.size() - 1)).ok());
    CHECK_FALSE(decode_batch("PLNTBUF1").ok());
    CHECK(decode_batch("nonsense").error() == "not a plantd batch file");
}

TEST_CASE("a batch cut back after a failed encoding keeps its lines' topics consistent") {
    Batch batch;
    batch.body = "m a=1 1\n";
    batch.end_line("fa", 1, "t/one");
    const size_t lines = batch.lines(), bytes = batch.body.size();
    batch.body += "m a=2 2\n";
    batch.end_line("fa", 2, "t/two");
    batch.truncate(lines, bytes);
    CHECK(batch.lines() == 1);
    CHECK(batch.topic_text == "t/one");
    batch.body += "m a=3 3\n";
    batch.end_line("fa", 3, "t/three");
    CHECK(batch.topic_of(0) == "t/one");
    CHECK(batch.topic_of(1) == "t/three");
    batch.truncate(0, 0);
    CHECK(batch.topic_text.empty());
    CHECK(batch.topic_ends.empty());
}

TEST_CASE("disk buffer: stores in order, respects its share, and a new start finds the files again") {
    ScratchDirectory scratch;
    auto config = durability_in(scratch.path);
    Batch batch;
    batch.destination = "plant";
    for (int i = 0; i < 100; ++i) {
        batch.body +=
            "telemetry,factory_id=fa,device_id=d1 seq=" + std::to_string(i) + " " + std::to_string(i) + "\n";
        batch.end_line("fa", i);
    }
    const uint64_t one = encode_batch(batch).size();
    config.buffer_max_bytes = 2 * (3 * one + 10);  // two writers: each may hold three
    {
        auto buffer = DiskBuffer::open(config, 1, 2);
        REQUIRE(buffer.ok());
        std::string error;
        DiskBuffer::Entry entries[4];
        for (int i = 0; i < 3; ++i)
            REQUIRE(buffer->store(batch, entries[i], error) == DiskBuffer::StoreStatus::stored);
        CHECK(buffer->store(batch, entries[3], error) == DiskBuffer::StoreStatus::no_room);
        CHECK(buffer->bytes() == 3 * one);
        buffer->remove(entries[0]);
        CHECK(buffer->bytes() == 2 * one);
        auto loaded = buffer->load(entries[1]);
        REQUIRE(loaded.ok());
        CHECK(loaded->body == batch.body);
        // A crash while writing leaves a temporary file: the next start removes it.
        std::ofstream(scratch.path + "/buffer/.1-000000000099.batch.tmp") << "half";
    }
    auto other_writer = DiskBuffer::open(config, 0, 2);
    REQUIRE(other_writer.ok());
    CHECK(other_writer->take_found().empty());
    auto buffer = DiskBuffer::open(config, 1, 2);
    REQUIRE(buffer.ok());
    auto found = buffer->take_found();
    REQUIRE(found.size() == 2);
    CHECK(found[0].sequence < found[1].sequence);
    CHECK(found[0].lines == 100);
    CHECK(found[0].destination == "plant");
    CHECK(buffer->bytes() == 2 * one);
    CHECK_FALSE(std::filesystem::exists(scratch.path + "/buffer/.1-000000000099.batch.tmp"));
    // With one writer fewer, writer 0 of 1 takes over what writer 1 of 2 left.
    auto single = DiskBuffer::open(config, 0, 1);
    REQUIRE(single.ok());
    CHECK(single->take_found().size() == 2);
}

TEST_CASE("[durability] config: modes, policy, and errors that name the key") {
    auto config = load_config_text(
        "[durability]\nmode = \"power\"\nfsync_interval = \"200ms\"\nbuffer_full_policy = \"drop_oldest\"\n"
        "directory = \"/tmp/x\"\n",
        "t.toml");
    REQUIRE(config.ok());
    CHECK(config->durability.mode == DurabilityMode::power);
    CHECK(config->durability.fsync_interval_ms == 200);
    CHECK(config->durability.buffer_full_policy == BufferFullPolicy::drop_oldest);
    CHECK(load_config_text("", "t.toml")->durability.mode == DurabilityMode::process);
    auto bad = load_config_text("[durability]\nmode = \"disk\"\n", "t.toml");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().find("[durability] mode") != std::string::npos);
    bad = load_config_text("[durability]\nbuffer_full_policy = \"drop_newest\"\n", "t.toml");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().find("buffer_full_policy") != std::string::npos);
    bad = load_config_text("[durability]\nsegment_bytes = \"64MiB\"\nwal_max_bytes = \"100MiB\"\n", "t.toml");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().find("at least twice segment_bytes") != std::string::npos);
}

TEST_CASE("the fuzz corpus files (written by an independent encoder) read as documented") {
    const std::string corpus = std::string(PLANTD_SOURCE_DIR) + "/tests/fuzz/corpus/wal/";
    auto records = read_all(read_file(corpus + "segment.wal"));
    REQUIRE(records.size() == 3);
    CHECK(records[2].topic() == "plant/factory/f1/device/d2/telemetry");
    CHECK(records[2].payload() == R"({"metrics":{"t":2}})");
    size_t torn = 0;
    CHECK(read_all(read_file(corpus + "torn.wal"), nullptr, &torn).size() == 2);
    CHECK(torn > 0);
    // A salted segment whose first record is damaged and carries a forged record in its payload.
    size_t forged_corrupt = 0;
    auto survivors = read_all(read_file(corpus + "forged-in-payload.wal"), &forged_corrupt);
    REQUIRE(survivors.size() == 1);
    CHECK(survivors[0].topic() == "plant/factory/A/device/d2/telemetry");
    CHECK(forged_corrupt > 0);
    auto batch = decode_batch(read_file(corpus + "batch.batch"));
    REQUIRE(batch.ok());
    CHECK(batch->lines() == 2);
    CHECK(batch->factory_of(1) == "f2");
    CHECK(batch->topic_of(1).empty());  // the first format kept no topics
    auto with_topics = decode_batch(read_file(corpus + "topics.batch"));
    REQUIRE_MESSAGE(with_topics.ok(), with_topics.error());
    CHECK(with_topics->lines() == 3);
    CHECK(with_topics->factory_of(2) == "f2");
    CHECK(with_topics->topic_of(1) == "plant/factory/f1/device/d1/telemetry");
    CHECK(with_topics->topic_of(2) == "plant/factory/f2/device/d2/telemetry");
}
