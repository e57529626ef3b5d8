#pragma once
// The disk buffer of one writer: batches InfluxDB has not taken (it is down, or slower than the
// input) are kept as files under `{directory}/buffer`, so that their messages can leave the
// write-ahead log and memory while new data keeps flowing. Files are written beside and renamed
// (a crash leaves a whole file or none), and fsync'd in durability mode "power". Each writer owns
// its own share of buffer_max_bytes; files a previous run left are found again at open().
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "core/batch.hpp"

namespace plantd {

class DiskBuffer {
  public:
    struct Entry {
        std::string path;
        std::string destination;
        uint64_t bytes = 0;
        uint64_t lines = 0;
        uint64_t sequence = 0;  // order of storing (older first)
    };

    // `writer` of `writers`: files of writers that no longer exist are taken over by writer % writers.
    static Result<DiskBuffer> open(const DurabilityConfig& config, size_t writer, size_t writers);

    // The entries found at open(), oldest first (their line counts are read from the files).
    std::vector<Entry> take_found() { return std::move(found_); }

    enum class StoreStatus { stored, no_room, failed };
    // Writes `batch` to a file; `no_room`: it would exceed this writer's share.
    StoreStatus store(const Batch& batch, Entry& entry, std::string& error);
    Result<Batch> load(const Entry& entry) const;
    void remove(const Entry& entry);
    // A damaged file is moved aside (".damaged"), kept for an operator, and no longer counted.
    void set_aside(const Entry& entry);

    uint64_t bytes() const { return bytes_; }
    uint64_t capacity() const { return capacity_; }
    const std::string& directory() const { return directory_; }

  private:
    DiskBuffer(const DurabilityConfig& config, std::string directory, size_t writer, uint64_t capacity)
        : power_safe_(config.mode == DurabilityMode::power),
          directory_(std::move(directory)),
          writer_(writer),
          capacity_(capacity) {}

    bool power_safe_;
    std::string directory_;
    size_t writer_;
    uint64_t capacity_;
    uint64_t bytes_ = 0;
    uint64_t next_sequence_ = 1;
    std::vector<Entry> found_;
};

}  // namespace plantd
