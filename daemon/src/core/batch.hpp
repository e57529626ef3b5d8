#pragma once
// A batch of line-protocol lines for one InfluxDB destination. Line boundaries, each line's factory
// and the topic of the message it came from are kept so that a refused batch can be split, and a
// refused line dead-lettered with its topic and counted against its factory.
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
    // Topics: lines of one message are adjacent, so each run of lines with one topic stores it once.
    std::vector<uint32_t> line_topic;  // index into topic_ends
    std::vector<uint32_t> topic_ends;  // offset just past each topic in topic_text
    std::string topic_text;
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
    std::string_view topic_of(size_t line) const {
        if (line >= line_topic.size()) return {};  // a batch file written before topics were kept
        return topic(line_topic[line]);
    }
    std::string_view topic(size_t index) const {
        const uint32_t begin = index == 0 ? 0 : topic_ends[index - 1];
        return std::string_view(topic_text).substr(begin, topic_ends[index] - begin);
    }

    // Records that the line just appended to `body` belongs to `factory`, has time `time_ms` and
    // came from a message on `topic`.
    void end_line(std::string_view factory, int64_t time_ms, std::string_view source_topic = {}) {
        line_ends.push_back(static_cast<uint32_t>(body.size()));
        line_time_ms.push_back(time_ms);
        if (factories.empty() || factories[last_factory_] != factory) {
            last_factory_ = find_or_add_factory(factory);
        }
        line_factory.push_back(last_factory_);
        if (topic_ends.empty() || topic(topic_ends.size() - 1) != source_topic) {
            topic_text.append(source_topic);
            topic_ends.push_back(static_cast<uint32_t>(topic_text.size()));
        }
        line_topic.push_back(static_cast<uint32_t>(topic_ends.size() - 1));
    }

    // Back to its first `keep` lines and `keep_bytes` of body (an encoding that failed half way).
    void truncate(size_t keep, size_t keep_bytes) {
        body.resize(keep_bytes);
        line_ends.resize(keep);
        line_factory.resize(keep);
        line_time_ms.resize(keep);
        line_topic.resize(keep);
        const size_t topics = keep == 0 ? 0 : line_topic.back() + 1;
        topic_ends.resize(topics);
        topic_text.resize(topics == 0 ? 0 : topic_ends.back());
        if (!factories.empty() && last_factory_ >= factories.size()) last_factory_ = 0;
    }

    void clear() {
        body.clear();
        line_ends.clear();
        line_factory.clear();
        line_time_ms.clear();
        factories.clear();
        line_topic.clear();
        topic_ends.clear();
        topic_text.clear();
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
