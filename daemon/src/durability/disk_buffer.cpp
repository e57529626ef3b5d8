#include "durability/disk_buffer.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "durability/batch_file.hpp"
#include "durability/file_io.hpp"

namespace plantd {

namespace {

// "{writer}-{sequence}.batch" → (writer, sequence); false for any other name.
bool parse_name(const std::string& name, size_t& writer, uint64_t& sequence) {
    constexpr std::string_view suffix = ".batch";
    if (!name.ends_with(suffix)) return false;
    const auto dash = name.find('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 >= name.size() - suffix.size()) return false;
    const std::string w = name.substr(0, dash);
    const std::string s = name.substr(dash + 1, name.size() - suffix.size() - dash - 1);
    auto digits = [](const std::string& t) {
        return !t.empty() && t.size() <= 18 &&
               std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (!digits(w) || !digits(s)) return false;
    writer = std::stoull(w);
    sequence = std::stoull(s);
    return true;
}

}  // namespace

Result<DiskBuffer> DiskBuffer::open(const DurabilityConfig& config, size_t writer, size_t writers) {
    const std::string directory = config.directory + "/buffer";
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    if (ec) return fail(fmt::format("[durability] directory: cannot create {}: {}", directory, ec.message()));
    DiskBuffer buffer(config, directory, writer, config.buffer_max_bytes / std::max<size_t>(writers, 1));
    std::vector<std::pair<std::pair<uint64_t, size_t>, std::string>> mine;  // ((sequence, writer), name)
    for (const auto& file : std::filesystem::directory_iterator(directory, ec)) {
        const std::string name = file.path().filename().string();
        size_t owner = 0;
        uint64_t sequence = 0;
        if (name.starts_with(".") && name.ends_with(".tmp")) {
            // A file a crash interrupted before its rename: its batch is still in the write-ahead log.
            size_t tmp_owner = 0;
            uint64_t tmp_sequence = 0;
            if (parse_name(name.substr(1, name.size() - 5), tmp_owner, tmp_sequence) &&
                tmp_owner % writers == writer)
                std::filesystem::remove(file.path(), ec);
            continue;
        }
        if (!parse_name(name, owner, sequence) || owner % writers != writer) continue;
        mine.push_back({{sequence, owner}, name});
    }
    std::sort(mine.begin(), mine.end());
    for (const auto& [key, name] : mine) {
        Entry entry;
        entry.path = directory + "/" + name;
        const std::string bytes = file_io::read_file(entry.path);
        auto batch = decode_batch(bytes);
        if (!batch && file_io::newer_format(bytes, "PLNTBUF", newest_batch_format))
            return fail(file_io::newer_format_message(entry.path, bytes, newest_batch_format));
        if (!batch) {
            spdlog::error("disk buffer: {}: {}; moved aside as {}.damaged", entry.path, batch.error(),
                          entry.path);
            std::filesystem::rename(entry.path, entry.path + ".damaged", ec);
            continue;
        }
        entry.destination = batch->destination;
        entry.bytes = bytes.size();
        entry.lines = batch->lines();
        entry.sequence = buffer.next_sequence_++;
        buffer.bytes_ += entry.bytes;
        buffer.found_.push_back(std::move(entry));
    }
    // Names continue after the highest sequence of this writer's own files.
    for (const auto& [key, name] : mine)
        if (key.second == writer) buffer.next_sequence_ = std::max(buffer.next_sequence_, key.first + 1);
    return buffer;
}

DiskBuffer::StoreStatus DiskBuffer::store(const Batch& batch, Entry& entry, std::string& error) {
    const std::string bytes = encode_batch(batch);
    if (bytes_ + bytes.size() > capacity_) return StoreStatus::no_room;
    entry.sequence = next_sequence_++;
    const std::string name = fmt::format("{}-{:012}.batch", writer_, entry.sequence);
    entry.path = directory_ + "/" + name;
    const std::string temporary = directory_ + "/." + name + ".tmp";
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        error = fmt::format("disk buffer: cannot create {}: {}", temporary, std::strerror(errno));
        return StoreStatus::failed;
    }
    size_t written = 0;
    while (written < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            error = fmt::format("disk buffer: cannot write {}: {}", temporary,
                                n < 0 ? std::strerror(errno) : "no space left");
            ::close(fd);
            ::unlink(temporary.c_str());
            return StoreStatus::failed;
        }
        written += static_cast<size_t>(n);
    }
    if (power_safe_ && ::fdatasync(fd) != 0) {
        error = fmt::format("disk buffer: fsync of {} failed: {}", temporary, std::strerror(errno));
        ::close(fd);
        ::unlink(temporary.c_str());
        return StoreStatus::failed;
    }
    ::close(fd);
    if (::rename(temporary.c_str(), entry.path.c_str()) != 0) {
        error = fmt::format("disk buffer: cannot rename {}: {}", temporary, std::strerror(errno));
        ::unlink(temporary.c_str());
        return StoreStatus::failed;
    }
    if (power_safe_) file_io::sync_directory(directory_);
    entry.destination = batch.destination;
    entry.bytes = bytes.size();
    entry.lines = batch.lines();
    bytes_ += entry.bytes;
    return StoreStatus::stored;
}

Result<Batch> DiskBuffer::load(const Entry& entry) const {
    auto batch = decode_batch(file_io::read_file(entry.path));
    if (!batch) return fail(fmt::format("{}: {}", entry.path, batch.error()));
    return batch;
}

void DiskBuffer::remove(const Entry& entry) {
    ::unlink(entry.path.c_str());
    bytes_ -= std::min(bytes_, entry.bytes);
}

void DiskBuffer::set_aside(const Entry& entry) {
    std::error_code ec;
    std::filesystem::rename(entry.path, entry.path + ".damaged", ec);
    bytes_ -= std::min(bytes_, entry.bytes);
}

}  // namespace plantd
