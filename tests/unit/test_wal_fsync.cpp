// The write-ahead log in mode "power" on a disk whose fsync fails: nothing is acknowledged until a
// sync succeeds, whether the failing sync is a commit's own or the periodic one between commits.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "durability/write_ahead_log.hpp"
#include "durability_rig.hpp"

using namespace plantd;
using namespace plantd::test;

TEST_CASE("write-ahead log, mode power: a failed fsync fails the commit until a sync works; nothing twice") {
    ScratchDirectory scratch;
    auto config = durability_in(scratch.path);
    config.mode = DurabilityMode::power;
    config.fsync_interval_ms = 0;  // every commit syncs: the test decides which sync fails
    {
        auto log = WriteAheadLog::open(config, 1 << 20);
        REQUIRE(log.ok());
        auto& wal = **log;
        std::string error;
        wal.stage(message(0));
        REQUIRE(wal.commit(error));
        const uint32_t first_segment = wal.committed_segment();
        bool disk_fails = true;
        wal.set_sync_for_test([&](int fd) {
            if (!disk_fails) return ::fdatasync(fd);
            errno = EIO;
            return -1;
        });
        wal.stage(message(1));
        wal.stage(message(2));
        CHECK_FALSE(wal.commit(error));  // written, but not durable: not acknowledged
        CHECK(error.find("fsync of") != std::string::npos);
        CHECK(error.find("Input/output error") != std::string::npos);
        CHECK(wal.sync_failures() == 1);
        CHECK(wal.sync_failing());
        CHECK(wal.unresolved() == 1);
        CHECK(wal.has_staged());  // kept for the next try
        // Still failing: a new segment cannot be made durable either.
        CHECK_FALSE(wal.commit(error));
        CHECK(wal.sync_failures() == 2);
        disk_fails = false;
        REQUIRE(wal.commit(error));
        CHECK_FALSE(wal.sync_failing());
        CHECK(wal.committed_segment() != first_segment);  // the segment the failed sync held was given up
        CHECK(wal.unresolved() == 3);
        // A crash now: the next start replays each message once.
    }
    config.mode = DurabilityMode::process;
    auto log = WriteAheadLog::open(config, 1 << 20);
    REQUIRE(log.ok());
    std::vector<int64_t> replayed;
    (*log)->recover([&](RawMessage&& m) { replayed.push_back(m.received_ms - 1'700'000'000'000); });
    CHECK(replayed == std::vector<int64_t>{0, 1, 2});
}

TEST_CASE("write-ahead log, mode power: a periodic fsync that fails stops the next commit until one works") {
    ScratchDirectory scratch;
    auto config = durability_in(scratch.path);
    config.mode = DurabilityMode::power;
    config.fsync_interval_ms = 50;
    auto log = WriteAheadLog::open(config, 1 << 20);
    REQUIRE(log.ok());
    auto& wal = **log;
    std::string error;
    wal.stage(message(0));
    REQUIRE(wal.commit(error));  // the first commit syncs
    wal.stage(message(1));
    REQUIRE(wal.commit(error));  // within fsync_interval: acknowledged, synced by the next tick
    bool disk_fails = true;
    wal.set_sync_for_test([&](int fd) {
        if (!disk_fails) return ::fdatasync(fd);
        errno = EIO;
        return -1;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    wal.tick();  // the periodic sync fails
    CHECK(wal.sync_failures() == 1);
    CHECK(wal.sync_failing());
    wal.stage(message(2));
    CHECK_FALSE(wal.commit(error));  // at once, not after another interval: syncs first, fails
    CHECK(wal.sync_failures() == 2);
    CHECK(wal.has_staged());
    disk_fails = false;
    REQUIRE(wal.commit(error));
    CHECK_FALSE(wal.sync_failing());
    CHECK(wal.unresolved() == 3);
}
