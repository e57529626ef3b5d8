#include "durability/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <zlib.h>

namespace plantd::file_io {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    return std::move(content).str();
}

std::string read_head(const std::string& path, size_t count) {
    std::ifstream in(path, std::ios::binary);
    std::string head(count, '\0');
    in.read(head.data(), static_cast<std::streamsize>(count));
    head.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
    return head;
}

bool newer_format(std::string_view head, std::string_view family, char newest_known) {
    if (head.size() <= family.size() || head.substr(0, family.size()) != family) return false;
    const char digit = head[family.size()];
    return digit >= '0' && digit <= '9' && digit > newest_known;
}

std::string newer_format_message(const std::string& path, std::string_view head, char newest_known) {
    return fmt::format(
        "{} is in format {}, written by a newer plantd; this version reads up to format {}. Start the "
        "newer version again until it has drained it (or move the file aside and accept losing it)",
        path, head.substr(0, 8), newest_known);
}

void sync_directory(const std::string& directory) {
    int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

uint32_t crc32_of(std::string_view bytes, uint32_t continued_from) {
    // zlib takes uInt lengths: feed it in slices.
    uLong crc = continued_from;
    while (!bytes.empty()) {
        const auto part = static_cast<uInt>(std::min<size_t>(bytes.size(), 1u << 30));
        crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), part);
        bytes.remove_prefix(part);
    }
    return static_cast<uint32_t>(crc);
}

void put_le32(std::string& out, uint32_t value) {
    char b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((value >> (8 * i)) & 0xff);
    out.append(b, 4);
}

void put_le64(std::string& out, uint64_t value) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((value >> (8 * i)) & 0xff);
    out.append(b, 8);
}

uint32_t get_le32(const char* p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
    return v;
}

uint64_t get_le64(const char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
    return v;
}

}  // namespace plantd::file_io
