#pragma once
// Reading the dead-letter store back: its entries in order (the rotated file first), what each holds,
// and which ones have been replayed (their ids in "<path>.replayed", one per line; a replayed letter
// is marked, never deleted). The CLI lists and counts with it; the daemon replays with it.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <simdjson.h>

namespace plantd {

struct StoredDeadLetter {
    size_t number = 0;  // its position, counted from the first entry of the rotated file (#N)
    std::string id;     // entries written before ids existed: "h" + a hash of the line
    int64_t time_ms = 0;
    std::string kind;  // message, partial, line
    std::string topic;
    std::string factory_id;
    std::string reason;
    std::string detail;
    std::string destination;
    std::string payload;        // the bytes (decoded when the entry holds them as base64)
    bool payload_whole = true;  // false: it was too large and only its start was kept
};

struct DeadLetterFilter {
    std::string factory_id;  // "" = any
    std::string reason;      // "" = any
    std::optional<int64_t> since_ms;
    std::optional<int64_t> until_ms;
    bool matches(const StoredDeadLetter& letter) const;
};

// One line of the store, or nullopt when it is not an entry (its `number` is left 0).
std::optional<StoredDeadLetter> parse_dead_letter(std::string_view line, simdjson::dom::parser& parser);
// Calls `visit` for every readable entry (stop early by returning false); returns how many lines were
// not readable entries.
size_t read_dead_letters(const std::string& path, const std::function<bool(StoredDeadLetter&&)>& visit);

class ReplayMarks {
  public:
    explicit ReplayMarks(std::string dead_letter_path);
    bool contains(const std::string& id) const { return ids_.count(id) > 0; }
    size_t size() const { return ids_.size(); }
    // Appends the ids and fsyncs; "" or what went wrong.
    std::string add(const std::vector<std::string>& ids);
    // `still_stored`: the marked ids a complete read of the store found. When fewer than half of the
    // marks are still stored, the file is rewritten with those only (a temporary file, fsync, rename).
    void compact(const std::unordered_set<std::string>& still_stored);
    const std::string& path() const { return path_; }
    // Not "" when the marks file exists but could not be read: nothing may be replayed then.
    const std::string& error() const { return error_; }

  private:
    std::string path_;
    std::unordered_set<std::string> ids_;
    std::string error_;
    bool ends_with_newline_ = true;
};

}  // namespace plantd
