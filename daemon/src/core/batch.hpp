#pragma once
// A batch of line-protocol lines for one InfluxDB destination. Line boundaries and each line's
// factory are kept so that a refused batch can be split, and a refused line dead-lettered and
// counted against its factory.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plantd {

struct Batch {
    std::string destination;  // v1 database, v2 bucket
    std::string body;
    std::vector<uint32_t> line_ends;     // offset just past each line's '\n'
    std::vector<uint32_t> line_factory;  // index into factories
    std::vector<int64_t> line_time_ms;   // each line's timestamp, for the latency histogram
    std::vector<std::string> factories;
    std::chrono::steady_clock::time_point opened{};
    // The write-ahead log segments holding the messages these lines came from, with counts: released
    // once the batch is resolved (written, dead-lettered, or moved to the disk buffer).
    std::vector<std::pair<uint32_t, uint32_t>> wal_refs;

    void add_wal_ref(uint32_t segment) {
        if (segment == 0) return;
        if (!wal_refs.empty() && wal_refs.back().first == segment)
            ++wal_refs.back().second;
        else
            wal_refs.emplace_back(segment, 1);
    }

    size_t lines() const { return line_ends.size(); }
    size_t line_begin(size_t i) const { return i == 0 ? 0 : line_ends[i - 1]; }
    // Lines [first, last) as one contiguous slice of the body.
    std::string_view slice(size_t first, size_t last) const {
        return std::string_view(body).substr(line_begin(first), line_begin(last) - line_begin(first));
    }
    std::string_view line(size_t i) const { return slice(i, i + 1); }
    const std::string& factory_of(size_t line) const { return factories[line_factory[line]]; }

    // Records that the line just appended to `body` belongs to `factory` and has time `time_ms`.
    void end_line(std::string_view factory, int64_t time_ms) {
        line_ends.push_back(static_cast<uint32_t>(body.size()));
        line_time_ms.push_back(time_ms);
        if (factories.empty() || factories[last_factory_] != factory) {
            last_factory_ = find_or_add_factory(factory);
        }
        line_factory.push_back(last_factory_);
    }

    void clear() {
        body.clear();
        line_ends.clear();
        line_factory.clear();
        line_time_ms.clear();
        factories.clear();
        wal_refs.clear();
        last_factory_ = 0;
    }

  private:
    uint32_t find_or_add_factory(std::string_view factory) {
        for (size_t i = 0; i < factories.size(); ++i) {
            if (factories[i] == factory) return static_cast<uint32_t>(i);
        }
        factories.emplace_back(factory);
        return static_cast<uint32_t>(factories.size() - 1);
    }
    uint32_t last_factory_ = 0;
};

}  // namespace plantd
