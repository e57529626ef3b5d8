#include "durability/dead_letter_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "util/clock.hpp"
#include "util/json_text.hpp"

namespace plantd {

std::string base64_encode(std::string_view data) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((data.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < data.size(); i += 3) {
        uint32_t n =
            (uint32_t(uint8_t(data[i])) << 16) | (uint32_t(uint8_t(data[i + 1])) << 8) | uint8_t(data[i + 2]);
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += alphabet[(n >> 6) & 63];
        out += alphabet[n & 63];
    }
    if (i < data.size()) {
        uint32_t n = uint32_t(uint8_t(data[i])) << 16;
        if (i + 1 < data.size()) n |= uint32_t(uint8_t(data[i + 1])) << 8;
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += i + 1 < data.size() ? alphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string DeadLetterStore::to_json(const DeadLetter& letter) {
    std::string out;
    out.reserve(letter.payload.size() + letter.detail.size() + 256);
    out += "{\"time\":";
    append_json_string(out, format_rfc3339_ms(letter.time_ms));
    out += ",\"kind\":";
    append_json_string(out, letter.kind);
    // A topic that is not UTF-8 (a broker may pass one) is kept byte for byte too.
    if (simdjson::validate_utf8(letter.topic.data(), letter.topic.size())) {
        out += ",\"topic\":";
        append_json_string(out, letter.topic);
    } else {
        out += ",\"topic\":\"\",\"topic_base64\":\"";
        out += base64_encode(letter.topic);
        out += '"';
    }
    if (!letter.destination.empty()) {
        out += ",\"destination\":";
        append_json_string(out, letter.destination);
    }
    out += ",\"factory_id\":";
    append_json_string(out, letter.factory_id);
    out += ",\"reason\":";
    append_json_string(out, to_string(letter.reason));
    out += ",\"detail\":";
    append_json_string(out, simdjson::validate_utf8(letter.detail.data(), letter.detail.size())
                                ? letter.detail
                                : "(not UTF-8)");
    // Text payloads stay readable; anything that is not UTF-8 is kept byte for byte in base64.
    if (simdjson::validate_utf8(letter.payload.data(), letter.payload.size())) {
        out += ",\"payload\":";
        append_json_string(out, letter.payload);
    } else {
        out += ",\"payload_base64\":\"";
        out += base64_encode(letter.payload);
        out += '"';
    }
    out += '}';
    return out;
}

Result<std::unique_ptr<DeadLetterStore>> DeadLetterStore::open(const std::string& path, uint64_t max_bytes,
                                                               double factory_share) {
    std::error_code ec;
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec)
        return fail(
            fmt::format("dead-letter store {}: cannot create {}: {}", path, parent.string(), ec.message()));
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return fail(fmt::format("dead-letter store {}: cannot open: {}", path, std::strerror(errno)));
    struct stat st {};
    uint64_t size = ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return std::unique_ptr<DeadLetterStore>(new DeadLetterStore(path, max_bytes, factory_share, fd, size));
}

DeadLetterStore::~DeadLetterStore() {
    if (fd_ >= 0) ::close(fd_);
}

bool DeadLetterStore::rotate() {
    std::string older = path_ + ".1";
    if (::rename(path_.c_str(), older.c_str()) != 0) return false;
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return false;
    ::close(fd_);
    fd_ = fd;
    size_ = 0;
    bytes_by_factory_.clear();
    spdlog::warn("dead-letter store {} reached {} bytes; the previous file is now {}", path_, max_bytes_,
                 older);
    return true;
}

bool DeadLetterStore::append(const DeadLetter& letter) {
    DeadLetter stamped = letter;
    if (stamped.time_ms == 0) stamped.time_ms = wall_clock_ms();
    std::string line = to_json(stamped);
    line += '\n';
    std::lock_guard lock(mutex_);
    // A factory past its share of the current file: dropped and counted (bounded: at most 1000 labels).
    const std::string_view factory =
        letter.factory_id.empty() ? std::string_view("_none") : letter.factory_id;
    auto used = bytes_by_factory_.find(factory);
    if (used == bytes_by_factory_.end()) {
        if (bytes_by_factory_.size() >= 1000) {
            used = bytes_by_factory_.try_emplace("_other", 0).first;
        } else {
            used = bytes_by_factory_.emplace(std::string(factory), 0).first;
        }
    }
    if (used->second + line.size() > share_bytes_) {
        auto& dropped = dropped_[{used->first, letter.reason}];
        if (dropped++ == 0)
            spdlog::warn(
                "dead-letter store {}: factory {} has used its share ({} bytes) of the current file; "
                "its further {} entries are dropped and counted until the file rotates",
                path_, used->first, share_bytes_, to_string(letter.reason));
        return false;
    }
    if (size_ + line.size() > max_bytes_ && size_ > 0) {
        std::string key = used->first;  // rotate() starts every share again
        if (rotate()) used = bytes_by_factory_.emplace(std::move(key), 0).first;
    }
    size_t done = 0;
    while (done < line.size()) {
        ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            write_errors_.fetch_add(1, std::memory_order_relaxed);
            spdlog::error("dead-letter store {}: write failed: {}", path_, std::strerror(errno));
            return false;
        }
        done += static_cast<size_t>(n);
    }
    size_ += line.size();
    used->second += line.size();
    written_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

uint64_t DeadLetterStore::dropped(std::string_view factory_id, RejectReason reason) const {
    std::lock_guard lock(mutex_);
    auto it = dropped_.find({std::string(factory_id.empty() ? "_none" : factory_id), reason});
    return it == dropped_.end() ? 0 : it->second;
}

void DeadLetterStore::render_dropped(std::string& out) const {
    std::lock_guard lock(mutex_);
    out +=
        "# HELP plantd_dead_letters_dropped_total Dead letters not kept because their factory had used its "
        "share of the dead-letter file ([dead_letter] factory_share), by factory and reason.\n"
        "# TYPE plantd_dead_letters_dropped_total counter\n";
    for (const auto& [key, n] : dropped_)
        fmt::format_to(std::back_inserter(out),
                       "plantd_dead_letters_dropped_total{{factory_id=\"{}\",reason=\"{}\"}} {}\n", key.first,
                       to_string(key.second), n);
}

void DeadLetterStore::register_metrics(MetricsRegistry& registry) const {
    registry.add_counter("plantd_dead_letters_written_total", "Entries written to the dead-letter store.",
                         [this] { return static_cast<double>(written()); });
    registry.add_counter("plantd_dead_letter_write_errors_total", "Dead letters that could not be written.",
                         [this] { return static_cast<double>(write_errors()); });
    registry.add_text([this](std::string& out) { render_dropped(out); });
}

}  // namespace plantd
