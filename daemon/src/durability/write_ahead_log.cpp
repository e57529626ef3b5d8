#include "durability/write_ahead_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "durability/file_io.hpp"
#include "durability/wal_format.hpp"
#include "util/clock.hpp"

namespace plantd {

namespace {

constexpr int64_t segment_max_age_ms = 10'000;  // an idle segment is closed so that it can be deleted
constexpr std::string_view segment_suffix = ".wal";

std::string errno_text(int error) {
    return std::strerror(error);
}

}  // namespace

WriteAheadLog::WriteAheadLog(const DurabilityConfig& config, size_t max_record_bytes, std::string directory,
                             int lock_fd)
    : config_(config),
      max_record_bytes_(max_record_bytes),
      directory_(std::move(directory)),
      lock_fd_(lock_fd) {}

Result<std::unique_ptr<WriteAheadLog>> WriteAheadLog::open(const DurabilityConfig& config,
                                                           size_t max_record_bytes) {
    const std::string directory = config.directory + "/wal";
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    if (ec) return fail(fmt::format("[durability] directory: cannot create {}: {}", directory, ec.message()));
    const std::string lock_path = directory + "/lock";
    int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0)
        return fail(fmt::format("[durability] directory: cannot open {}: {}", lock_path, errno_text(errno)));
    if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        ::close(lock_fd);
        return fail(fmt::format("[durability] directory: {} is in use by another plantd ({})", directory,
                                error == EWOULDBLOCK ? "locked" : errno_text(error)));
    }
    std::unique_ptr<WriteAheadLog> log(new WriteAheadLog(config, max_record_bytes, directory, lock_fd));
    uint32_t last = 0;
    for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.size() != 10 + segment_suffix.size() || !name.ends_with(segment_suffix)) continue;
        if (!std::all_of(name.begin(), name.begin() + 10, [](char c) { return c >= '0' && c <= '9'; }))
            continue;
        const auto id = static_cast<uint32_t>(std::stoull(name.substr(0, 10)));
        if (id == 0) continue;
        log->recovered_.push_back(id);
        last = std::max(last, id);
    }
    if (ec) return fail(fmt::format("[durability] directory: cannot list {}: {}", directory, ec.message()));
    std::sort(log->recovered_.begin(), log->recovered_.end());
    for (uint32_t id : log->recovered_) {
        Segment segment;
        segment.path = log->path_of(id);
        const std::string head = file_io::read_head(segment.path, wal::segment_magic.size());
        if (file_io::newer_format(head, "PLNTWAL", wal::segment_magic.back()))
            return fail(file_io::newer_format_message(segment.path, head, wal::segment_magic.back()));
        segment.bytes = std::filesystem::file_size(segment.path, ec);
        if (ec) segment.bytes = 0;
        log->total_bytes_ += segment.bytes;
        log->segments_[id] = segment;
    }
    log->current_ = last;
    std::string error;
    if (!log->open_segment(error)) return fail(error);
    return log;
}

WriteAheadLog::~WriteAheadLog() {
    if (fd_ >= 0) ::close(fd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string WriteAheadLog::path_of(uint32_t id) const {
    return fmt::format("{}/{:010}{}", directory_, id, segment_suffix);
}

bool WriteAheadLog::open_segment(std::string& error) {
    const uint32_t id = current_ + 1;
    const std::string path = path_of(id);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        error = fmt::format("write-ahead log: cannot create {}: {}", path, errno_text(errno));
        return false;
    }
    const std::string header = wal::segment_header(salt_);
    const ssize_t n = ::pwrite(fd, header.data(), header.size(), 0);
    if (n != static_cast<ssize_t>(header.size())) {
        error = fmt::format("write-ahead log: cannot write {}: {}", path,
                            n < 0 ? errno_text(errno) : "short write");
        ::close(fd);
        ::unlink(path.c_str());
        return false;
    }
    if (config_.mode == DurabilityMode::power) {
        if (fdatasync_(fd) != 0) {
            error = fmt::format("write-ahead log: fsync of {} failed: {}", path, errno_text(errno));
            sync_failures_.fetch_add(1);
            sync_failing_ = true;
            ::close(fd);
            ::unlink(path.c_str());
            return false;
        }
        file_io::sync_directory(directory_);
    }
    fd_ = fd;
    current_ = id;
    current_bytes_ = header.size();
    current_opened_ms_ = steady_clock_ms();
    std::lock_guard lock(mutex_);
    segments_[id] = Segment{path, current_bytes_, 0, true};
    total_bytes_ += current_bytes_;
    return true;
}

void WriteAheadLog::close_segment() {
    if (fd_ < 0) return;
    if (config_.mode == DurabilityMode::power && dirty_) {
        std::string ignored;
        sync(ignored);
    }
    give_up_segment();
}

std::string WriteAheadLog::retire_locked(uint32_t id) {
    auto it = segments_.find(id);
    if (it == segments_.end()) return {};
    std::string path = std::move(it->second.path);
    total_bytes_ -= std::min(total_bytes_, it->second.bytes);
    segments_.erase(it);
    return path;
}

WriteAheadLog::Recovery WriteAheadLog::recover(const std::function<void(RawMessage&&)>& replay) {
    Recovery recovery;
    for (uint32_t id : recovered_) {
        const std::string path = path_of(id);
        const std::string bytes = file_io::read_file(path);
        wal::SegmentReader reader(bytes, max_record_bytes_);
        std::vector<RawMessage> records;
        RawMessage message;
        while (reader.next(message) == wal::SegmentReader::Status::record) {
            message.wal_segment = id;
            records.push_back(std::move(message));
            message = RawMessage{};
        }
        ++recovery.segments;
        recovery.records += records.size();
        recovery.corrupt_bytes += reader.corrupt_bytes();
        recovery.torn_bytes += reader.torn_bytes();
        if (reader.corrupt_bytes() > 0)
            spdlog::error("write-ahead log: {}: {} damaged bytes skipped (records around them were kept)",
                          path, reader.corrupt_bytes());
        std::string retired;
        {
            std::lock_guard lock(mutex_);
            auto it = segments_.find(id);
            if (it != segments_.end()) {
                it->second.unresolved += records.size();
                if (records.empty()) retired = retire_locked(id);
            }
        }
        if (!retired.empty()) ::unlink(retired.c_str());
        for (auto& record : records) replay(std::move(record));
    }
    recovered_.clear();
    return recovery;
}

void WriteAheadLog::stage(const RawMessage& message) {
    wal::append_record(staged_, message, salt_);
    ++staged_count_;
}

void WriteAheadLog::drop_staged() {
    staged_.clear();
    staged_count_ = 0;
}

bool WriteAheadLog::commit(std::string& error) {
    if (staged_.empty()) return true;
    if (fd_ < 0 && !open_segment(error)) {
        write_failures_.fetch_add(1);
        return false;
    }
    size_t written = 0;
    while (written < staged_.size()) {
        const ssize_t n = ::pwrite(fd_, staged_.data() + written, staged_.size() - written,
                                   static_cast<off_t>(current_bytes_ + written));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int code = n < 0 ? errno : ENOSPC;
            // Cut back to the last complete record: a later commit() writes the same records again.
            if (::ftruncate(fd_, static_cast<off_t>(current_bytes_)) != 0)
                spdlog::error("write-ahead log: cannot cut {} back: {}", path_of(current_),
                              errno_text(errno));
            error = fmt::format("write-ahead log: cannot write {}: {}", path_of(current_), errno_text(code));
            write_failures_.fetch_add(1);
            return false;
        }
        written += static_cast<size_t>(n);
    }
    current_bytes_ += written;
    dirty_ = true;
    {
        std::lock_guard lock(mutex_);
        Segment& segment = segments_[current_];
        segment.bytes += written;
        total_bytes_ += written;
    }
    // Mode "power": the sync that is due (at once while syncs fail) comes before anything counts as
    // committed. If it fails, the records just written are not acknowledged and are written again.
    if (config_.mode == DurabilityMode::power &&
        (sync_failing_ || steady_clock_ms() - last_sync_ms_ >= config_.fsync_interval_ms) && !sync(error)) {
        // The given-up segment keeps what was acknowledged before; these records leave it, so that a
        // replay does not see them twice.
        current_bytes_ -= written;
        if (::ftruncate(fd_, static_cast<off_t>(current_bytes_)) == 0) {
            std::lock_guard lock(mutex_);
            segments_[current_].bytes -= written;
            total_bytes_ -= written;
        }
        give_up_segment();
        return false;
    }
    {
        std::lock_guard lock(mutex_);
        segments_[current_].unresolved += staged_count_;
    }
    committed_segment_ = current_;
    staged_.clear();
    staged_count_ = 0;
    if (current_bytes_ >= config_.segment_bytes) {
        close_segment();
        std::string ignored;  // a failed open is retried by the next commit()
        open_segment(ignored);
    }
    return true;
}

bool WriteAheadLog::sync(std::string& error) {
    last_sync_ms_ = steady_clock_ms();
    if (fd_ < 0 || !dirty_) return true;
    if (fdatasync_(fd_) != 0) {
        error = fmt::format("write-ahead log: fsync of {} failed: {}", path_of(current_), errno_text(errno));
        sync_failures_.fetch_add(1);
        sync_failing_ = true;
        return false;
    }
    dirty_ = false;
    fsyncs_.fetch_add(1);
    if (sync_failing_.exchange(false)) spdlog::info("write-ahead log: fsync works again");
    return true;
}

void WriteAheadLog::give_up_segment() {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    dirty_ = false;
    std::string retired;
    {
        std::lock_guard lock(mutex_);
        auto it = segments_.find(current_);
        if (it != segments_.end()) {
            it->second.open = false;
            if (it->second.unresolved == 0) retired = retire_locked(current_);
        }
    }
    if (!retired.empty()) ::unlink(retired.c_str());
}

void WriteAheadLog::tick() {
    const int64_t now = steady_clock_ms();
    if (config_.mode == DurabilityMode::power && dirty_ && now - last_sync_ms_ >= config_.fsync_interval_ms) {
        std::string error;
        if (!sync(error)) {
            // What this segment holds was acknowledged already (within fsync_interval): it stays for
            // a replay; new records go to a new file, and nothing is acknowledged until a sync works.
            spdlog::error("{}; not acknowledging anything until an fsync succeeds", error);
            give_up_segment();
        }
    }
    // An idle segment with records is closed, so that it can go once they are resolved.
    if (fd_ >= 0 && staged_.empty() && current_bytes_ > wal::segment_header_bytes &&
        now - current_opened_ms_ >= segment_max_age_ms) {
        close_segment();
        std::string error;
        if (!open_segment(error)) spdlog::error("{}", error);
    }
}

bool WriteAheadLog::full() const {
    std::lock_guard lock(mutex_);
    return total_bytes_ >= config_.wal_max_bytes;
}

void WriteAheadLog::release(uint32_t segment, uint32_t count) {
    if (segment == 0 || count == 0) return;
    std::string retired;
    {
        std::lock_guard lock(mutex_);
        auto it = segments_.find(segment);
        if (it == segments_.end()) return;
        it->second.unresolved -= std::min<uint64_t>(it->second.unresolved, count);
        if (it->second.unresolved == 0 && !it->second.open) retired = retire_locked(segment);
    }
    if (!retired.empty()) ::unlink(retired.c_str());
}

void WriteAheadLog::close() {
    drop_staged();
    close_segment();
    std::vector<std::string> retired;
    uint64_t kept = 0;
    {
        std::lock_guard lock(mutex_);
        for (auto it = segments_.begin(); it != segments_.end();) {
            if (it->second.unresolved == 0) {
                retired.push_back(it->second.path);
                total_bytes_ -= std::min(total_bytes_, it->second.bytes);
                it = segments_.erase(it);
            } else {
                kept += it->second.unresolved;
                ++it;
            }
        }
    }
    for (const auto& path : retired) ::unlink(path.c_str());
    if (config_.mode == DurabilityMode::power) file_io::sync_directory(directory_);
    if (kept > 0)
        spdlog::warn("write-ahead log: {} messages not yet written stay in {} for the next start", kept,
                     directory_);
}

uint64_t WriteAheadLog::bytes() const {
    std::lock_guard lock(mutex_);
    return total_bytes_;
}

uint64_t WriteAheadLog::segment_count() const {
    std::lock_guard lock(mutex_);
    return segments_.size();
}

uint64_t WriteAheadLog::unresolved() const {
    std::lock_guard lock(mutex_);
    uint64_t n = 0;
    for (const auto& [id, segment] : segments_) n += segment.unresolved;
    return n;
}

void WriteAheadLog::register_metrics(MetricsRegistry& registry, const Health& health) const {
    registry.add_gauge("plantd_wal_bytes", "Bytes in the write-ahead log.",
                       [this] { return static_cast<double>(bytes()); });
    registry.add_gauge("plantd_wal_segments", "Segment files of the write-ahead log.",
                       [this] { return static_cast<double>(segment_count()); });
    registry.add_gauge(
        "plantd_wal_unresolved_messages",
        "Messages in the write-ahead log not yet written, rejected or moved to the disk buffer.",
        [this] { return static_cast<double>(unresolved()); });
    registry.add_counter("plantd_wal_fsyncs_total", "fsyncs of the write-ahead log (mode \"power\").",
                         [this] { return static_cast<double>(fsyncs()); });
    registry.add_counter("plantd_wal_fsync_failures_total",
                         "fsyncs of the write-ahead log that failed (mode \"power\"; nothing is acknowledged "
                         "until one succeeds).",
                         [this] { return static_cast<double>(sync_failures_.load()); });
    registry.add_counter("plantd_wal_write_failures_total",
                         "Failed writes to the write-ahead log (nothing was acknowledged meanwhile).",
                         [this] { return static_cast<double>(write_failures()); });
    registry.add_gauge("plantd_wal_ok",
                       "1 while the write-ahead log can be written and is below wal_max_bytes.",
                       [&health] { return health.wal_failing || health.wal_full ? 0.0 : 1.0; });
    registry.add_counter("plantd_wal_replayed_messages_total",
                         "Messages replayed from the write-ahead log at start-up (also counted as received).",
                         [this] { return static_cast<double>(replayed_.load()); });
}

}  // namespace plantd
