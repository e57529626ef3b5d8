#include "durability/dead_letter_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "common/identifiers.hpp"
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

std::optional<std::string> base64_decode(std::string_view text) {
    auto value_of = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    if (text.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        const size_t padding = last ? (text[i + 3] == '=') + (text[i + 2] == '=' && text[i + 3] == '=') : 0;
        uint32_t n = 0;
        for (size_t j = 0; j < 4; ++j) {
            const int v = j >= 4 - padding ? 0 : value_of(text[i + j]);
            if (v < 0) return std::nullopt;
            n = (n << 6) | static_cast<uint32_t>(v);
        }
        out += static_cast<char>((n >> 16) & 0xff);
        if (padding < 2) out += static_cast<char>((n >> 8) & 0xff);
        if (padding < 1) out += static_cast<char>(n & 0xff);
    }
    return out;
}

std::string DeadLetterStore::to_json(const DeadLetter& letter) {
    std::string out;
    out.reserve(letter.payload.size() + letter.detail.size() + 256);
    out += '{';
    if (!letter.id.empty()) {
        out += "\"id\":";
        append_json_string(out, letter.id);
        out += ',';
    }
    out += "\"time\":";
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

namespace {

// A label fit for a metric and a share: a factory id, or one of plantd's own (_none, _other, ...).
bool is_label(std::string_view label) {
    if (label.size() > 1 && label.front() == '_') label.remove_prefix(1);
    return is_valid_identifier(label);
}

// Bytes by factory label of a dead-letter file (a missing file holds none), read in blocks: only the
// first 512 bytes of a line are looked at, so a damaged file without newlines costs no memory. The key
// comes before the payload and every string value is JSON-escaped, so the first `"factory_id":"` of a
// line is its own.
std::map<std::string, uint64_t, std::less<>> shares_in(const std::string& path, uint64_t& total) {
    std::map<std::string, uint64_t, std::less<>> shares;
    total = 0;
    std::ifstream in(path, std::ios::binary);
    constexpr std::string_view key = "\"factory_id\":\"";
    std::string head;  // the start of the current line
    uint64_t line_bytes = 0;
    auto end_line = [&] {
        std::string label = "_earlier";
        if (const size_t at = head.find(key); at != std::string::npos) {
            const size_t end = head.find('"', at + key.size());
            if (end != std::string::npos) label = head.substr(at + key.size(), end - at - key.size());
        }
        if (label.empty()) label = "_none";
        if (!is_label(label)) label = "_earlier";
        if (shares.size() >= 1000 && !shares.count(label)) label = "_other";
        shares[label] += line_bytes;
        total += line_bytes;
        head.clear();
        line_bytes = 0;
    };
    std::vector<char> block(65536);
    while (in.read(block.data(), static_cast<std::streamsize>(block.size())) || in.gcount() > 0) {
        const std::string_view data(block.data(), static_cast<size_t>(in.gcount()));
        for (size_t at = 0; at < data.size();) {
            const size_t newline = data.find('\n', at);
            const size_t end = newline == std::string_view::npos ? data.size() : newline + 1;
            if (head.size() < 512) head.append(data.substr(at, std::min(end - at, 512 - head.size())));
            line_bytes += end - at;
            at = end;
            if (newline != std::string_view::npos) end_line();
        }
    }
    if (line_bytes > 0) end_line();
    return shares;
}

}  // namespace

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
    std::unique_ptr<DeadLetterStore> store(new DeadLetterStore(path, max_bytes, factory_share, fd, size));
    uint64_t ignored = 0;
    store->current_ = shares_in(path, ignored);
    store->previous_ = shares_in(path + ".1", store->previous_bytes_);
    return store;
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
    previous_ = std::move(current_);
    current_.clear();
    previous_bytes_ = 0;
    for (const auto& [label, bytes] : previous_) previous_bytes_ += bytes;
    spdlog::warn("dead-letter store {} reached {} bytes; the previous file is now {}", path_, max_bytes_,
                 older);
    return true;
}

bool DeadLetterStore::append(const DeadLetter& letter) {
    DeadLetter stamped = letter;
    if (stamped.time_ms == 0) stamped.time_ms = wall_clock_ms();
    const std::string id = fmt::format("{:08x}{:08x}", run_prefix_, sequence_.fetch_add(1) + 1);
    if (stamped.id.empty()) stamped.id = id;
    std::string line = to_json(stamped);
    line += '\n';
    std::lock_guard lock(mutex_);
    // A factory past its share of the current file is dropped and counted, unless the rotated file
    // holds nothing of the others (then its writes can only age out its own entries).
    std::string_view factory = letter.factory_id.empty() ? std::string_view("_none") : letter.factory_id;
    if (!is_label(factory)) factory = "_other";  // never raw text in a metric label
    auto used = current_.find(factory);
    if (used == current_.end()) {
        used = current_.size() >= 1000 ? current_.try_emplace("_other", 0).first
                                       : current_.emplace(std::string(factory), 0).first;
    }
    if (used->second + line.size() > share_bytes_) {
        const auto own_previous = previous_.find(used->first);
        const uint64_t others_previous =
            previous_bytes_ - (own_previous == previous_.end() ? 0 : own_previous->second);
        if (others_previous > 0) {
            auto& dropped = dropped_[{used->first, letter.reason}];
            if (dropped++ % 10'000 == 0)
                spdlog::warn(
                    "dead-letter store {}: factory {} has used its share ({} bytes) of the current "
                    "file; its {} entries are dropped and counted (plantd_dead_letters_dropped_total)",
                    path_, used->first, share_bytes_, to_string(letter.reason));
            return false;
        }
    }
    if (size_ + line.size() > max_bytes_ && size_ > 0) {
        std::string key = used->first;  // rotate() starts every share again
        if (rotate()) used = current_.emplace(std::move(key), 0).first;
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
