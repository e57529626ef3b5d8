#include "durability/dead_letter_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>

#include "decoding/timestamp.hpp"
#include "durability/dead_letter_store.hpp"
#include "durability/file_io.hpp"

namespace plantd {

namespace {

std::string string_of(simdjson::dom::element entry, const char* key) {
    std::string_view value;
    if (entry[key].get(value) != simdjson::SUCCESS) return {};
    return std::string(value);
}

// FNV-1a: a stable name for an entry written before entries had ids.
std::string hash_id(std::string_view line) {
    uint64_t hash = 0xcbf29ce484222325ull;
    for (char c : line) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ull;
    }
    return fmt::format("h{:016x}", hash);
}

}  // namespace

bool DeadLetterFilter::matches(const StoredDeadLetter& letter) const {
    if (!factory_id.empty() && letter.factory_id != factory_id) return false;
    if (!reason.empty() && letter.reason != reason) return false;
    if (since_ms && letter.time_ms < *since_ms) return false;
    if (until_ms && letter.time_ms >= *until_ms) return false;
    return true;
}

std::optional<StoredDeadLetter> parse_dead_letter(std::string_view line, simdjson::dom::parser& parser) {
    simdjson::dom::element entry;
    if (parser.parse(line.data(), line.size()).get(entry) != simdjson::SUCCESS || !entry.is_object())
        return std::nullopt;
    StoredDeadLetter letter;
    letter.id = string_of(entry, "id");
    // An id goes into the marks file one per line: only plain ones are taken, else the line's hash.
    const bool plain_id =
        letter.id.size() <= 64 && std::all_of(letter.id.begin(), letter.id.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        });
    if (letter.id.empty() || !plain_id) letter.id = hash_id(line);
    const auto time = parse_rfc3339_ms(string_of(entry, "time"));
    letter.time_ms = time.value_or(0);
    letter.kind = string_of(entry, "kind");
    letter.topic = string_of(entry, "topic");
    if (letter.topic.empty()) {
        if (auto bytes = base64_decode(string_of(entry, "topic_base64"))) letter.topic = *bytes;
    }
    letter.factory_id = string_of(entry, "factory_id");
    letter.reason = string_of(entry, "reason");
    letter.detail = string_of(entry, "detail");
    letter.destination = string_of(entry, "destination");
    std::string_view text;
    std::string_view encoded;
    if (entry["payload"].get(text) == simdjson::SUCCESS) {
        letter.payload = std::string(text);
    } else if (entry["payload_base64"].get(encoded) == simdjson::SUCCESS && base64_decode(encoded)) {
        letter.payload = *base64_decode(encoded);
    } else {
        letter.payload_whole = false;  // no payload at all: nothing to replay
    }
    // Without the time of receipt a replay could not give a payload without `ts` its time.
    if (letter.reason == "payload_too_large" || !time) letter.payload_whole = false;
    return letter;
}

size_t read_dead_letters(const std::string& path, const std::function<bool(StoredDeadLetter&&)>& visit) {
    size_t unreadable = 0;
    size_t number = 0;
    simdjson::dom::parser parser;
    for (const std::string& file : {path + ".1", path}) {
        std::ifstream in(file, std::ios::binary);
        std::string line;
        while (std::getline(in, line)) {
            ++number;
            auto letter = parse_dead_letter(line, parser);
            if (!letter) {
                ++unreadable;
                continue;
            }
            letter->number = number;
            if (!visit(std::move(*letter))) return unreadable;
        }
    }
    return unreadable;
}

ReplayMarks::ReplayMarks(std::string dead_letter_path) : path_(std::move(dead_letter_path) + ".replayed") {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) error_ = fmt::format("cannot read {}: {}", path_, std::strerror(errno));
        return;
    }
    ::close(fd);
    const std::string text = file_io::read_file(path_);
    ends_with_newline_ = text.empty() || text.back() == '\n';
    size_t at = 0;
    while (at < text.size()) {
        const size_t end = std::min(text.find('\n', at), text.size());
        if (end > at) ids_.emplace(text, at, end - at);
        at = end + 1;
    }
}

std::string ReplayMarks::add(const std::vector<std::string>& ids) {
    if (ids.empty()) return {};
    // After a torn last line (a crash mid-append), a newline first keeps the ids apart.
    std::string text = ends_with_newline_ ? "" : "\n";
    for (const auto& id : ids) text += id + "\n";
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return fmt::format("cannot open {}: {}", path_, std::strerror(errno));
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const int error = errno;
    const bool synced = written && ::fsync(fd) == 0;
    ::close(fd);
    if (!written || !synced) return fmt::format("cannot write {}: {}", path_, std::strerror(error));
    ends_with_newline_ = true;
    ids_.insert(ids.begin(), ids.end());
    return {};
}

void ReplayMarks::compact(const std::unordered_set<std::string>& still_stored) {
    if (ids_.size() < 1000 || ids_.size() < 2 * still_stored.size()) return;
    // Marks of entries the store has rotated away: rewritten without them, durably, then renamed over.
    std::string text;
    for (const auto& id : ids_)
        if (still_stored.count(id)) text += id + "\n";
    const std::string temporary = path_ + ".tmp";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return;
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const bool synced = written && ::fsync(fd) == 0;
    ::close(fd);
    if (!synced || ::rename(temporary.c_str(), path_.c_str()) != 0) {
        ::unlink(temporary.c_str());
        return;
    }
    const auto slash = path_.rfind('/');
    file_io::sync_directory(slash == std::string::npos ? "." : path_.substr(0, slash));
    std::erase_if(ids_, [&](const std::string& id) { return still_stored.count(id) == 0; });
    ends_with_newline_ = true;
}

}  // namespace plantd
