#include "durability/dead_letter_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

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

size_t read_dead_letters(const std::string& path, const std::function<bool(StoredDeadLetter&&)>& visit) {
    size_t unreadable = 0;
    size_t number = 0;
    simdjson::dom::parser parser;
    for (const std::string& file : {path + ".1", path}) {
        std::ifstream in(file, std::ios::binary);
        std::string line;
        while (std::getline(in, line)) {
            ++number;
            simdjson::dom::element entry;
            if (parser.parse(line).get(entry) != simdjson::SUCCESS || !entry.is_object()) {
                ++unreadable;
                continue;
            }
            StoredDeadLetter letter;
            letter.number = number;
            letter.id = string_of(entry, "id");
            if (letter.id.empty()) letter.id = hash_id(line);
            letter.time_ms = parse_rfc3339_ms(string_of(entry, "time")).value_or(0);
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
            if (entry["payload"].get(text) == simdjson::SUCCESS) {
                letter.payload = std::string(text);
            } else if (auto bytes = base64_decode(string_of(entry, "payload_base64"))) {
                letter.payload = std::move(*bytes);
            } else {
                letter.payload_whole = false;
            }
            if (letter.reason == "payload_too_large") letter.payload_whole = false;
            if (!visit(std::move(letter))) return unreadable;
        }
    }
    return unreadable;
}

ReplayMarks::ReplayMarks(std::string dead_letter_path) : path_(std::move(dead_letter_path) + ".replayed") {
    std::ifstream in(path_);
    std::string id;
    while (std::getline(in, id))
        if (!id.empty()) ids_.insert(id);
}

std::string ReplayMarks::add(const std::vector<std::string>& ids) {
    if (ids.empty()) return {};
    std::string text;
    for (const auto& id : ids) text += id + "\n";
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return fmt::format("cannot open {}: {}", path_, std::strerror(errno));
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const int error = errno;
    const bool synced = written && ::fsync(fd) == 0;
    ::close(fd);
    if (!written || !synced) return fmt::format("cannot write {}: {}", path_, std::strerror(error));
    ids_.insert(ids.begin(), ids.end());
    return {};
}

void ReplayMarks::compact(const std::unordered_set<std::string>& existing) {
    size_t kept = 0;
    for (const auto& id : ids_) kept += existing.count(id);
    if (ids_.size() < 1000 || ids_.size() < 2 * kept) return;
    // Marks of entries the store has rotated away: rewritten without them (atomically).
    std::string text;
    for (const auto& id : ids_)
        if (existing.count(id)) text += id + "\n";
    const std::string temporary = path_ + ".tmp";
    std::ofstream(temporary, std::ios::binary | std::ios::trunc) << text;
    if (::rename(temporary.c_str(), path_.c_str()) != 0) return;
    std::erase_if(ids_, [&](const std::string& id) { return existing.count(id) == 0; });
}

}  // namespace plantd
