// Files a newer plantd wrote (the log's segments, the disk buffer's batches) after a downgrade: the
// older version refuses to start and names the file, rather than reading it as damage and losing it.
#include <doctest/doctest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "durability/batch_file.hpp"
#include "durability/disk_buffer.hpp"
#include "durability/file_io.hpp"
#include "durability/write_ahead_log.hpp"

using namespace plantd;

namespace {

struct Scratch {
    std::string path;
    Scratch() {
        std::string pattern = (std::filesystem::temp_directory_path() / "plantd-formats-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~Scratch() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    DurabilityConfig config() const {
        DurabilityConfig durability;
        durability.directory = path;
        durability.segment_bytes = 64 * 1024;
        durability.wal_max_bytes = 1024 * 1024;
        return durability;
    }
};

void write_file(const std::string& path, const std::string& bytes) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("format digits: only a higher digit of the same family is newer") {
    CHECK(file_io::newer_format("PLNTWAL3\x01\x02", "PLNTWAL", '2'));
    CHECK(file_io::newer_format("PLNTWAL9", "PLNTWAL", '2'));
    CHECK_FALSE(file_io::newer_format("PLNTWAL2", "PLNTWAL", '2'));
    CHECK_FALSE(file_io::newer_format("PLNTWAL1", "PLNTWAL", '2'));
    CHECK_FALSE(file_io::newer_format("PLNTWALx", "PLNTWAL", '2'));
    CHECK_FALSE(file_io::newer_format("PLNTWAL", "PLNTWAL", '2'));
    CHECK_FALSE(file_io::newer_format("garbage!", "PLNTWAL", '2'));
    CHECK_FALSE(file_io::newer_format("PLNTBUF3", "PLNTWAL", '2'));
}

TEST_CASE("a log segment of a newer format: open refuses, names the file, and leaves it alone") {
    Scratch scratch;
    const std::string segment = scratch.path + "/wal/0000000001.wal";
    const std::string bytes = std::string("PLNTWAL3") + std::string(64, '\x5a');
    write_file(segment, bytes);
    auto log = WriteAheadLog::open(scratch.config(), 1 << 20);
    REQUIRE_FALSE(log.ok());
    CHECK(log.error().find(segment) != std::string::npos);
    CHECK(log.error().find("newer plantd") != std::string::npos);
    CHECK(log.error().find("up to format 2") != std::string::npos);
    CHECK(file_io::read_file(segment) == bytes);
    // Its own format opens (and the lock was given back by the refused open).
    std::filesystem::remove(segment);
    CHECK(WriteAheadLog::open(scratch.config(), 1 << 20).ok());
}

TEST_CASE("a buffered batch of a newer format: open refuses and keeps it; damage is still set aside") {
    Scratch scratch;
    const std::string newer = scratch.path + "/buffer/0-000000000001.batch";
    const std::string bytes = std::string("PLNTBUF3") + std::string(40, '\x01');
    write_file(newer, bytes);
    auto buffer = DiskBuffer::open(scratch.config(), 0, 1);
    REQUIRE_FALSE(buffer.ok());
    CHECK(buffer.error().find(newer) != std::string::npos);
    CHECK(buffer.error().find("newer plantd") != std::string::npos);
    CHECK(file_io::read_file(newer) == bytes);

    // A damaged file of a known format is moved aside as before, and the buffer opens.
    std::filesystem::remove(newer);
    write_file(scratch.path + "/buffer/0-000000000002.batch", "PLNTBUF2 cut short");
    auto reopened = DiskBuffer::open(scratch.config(), 0, 1);
    REQUIRE(reopened.ok());
    CHECK(reopened->take_found().empty());
    CHECK(std::filesystem::exists(scratch.path + "/buffer/0-000000000002.batch.damaged"));
}
