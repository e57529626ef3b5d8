#pragma once
// Small pieces the write-ahead log and the disk buffer share: whole-file reads, directory fsync,
// CRC-32 (zlib) over any length, and little-endian integers.
#include <cstdint>
#include <string>
#include <string_view>

namespace plantd::file_io {

// The whole file, or "" if it cannot be read.
std::string read_file(const std::string& path);
// Fsyncs a directory, so that a file created, renamed or deleted in it survives a power loss.
void sync_directory(const std::string& directory);
// CRC-32 of `bytes`; `continued_from`: the CRC of bytes that come before them.
uint32_t crc32_of(std::string_view bytes, uint32_t continued_from = 0);

void put_le32(std::string& out, uint32_t value);
void put_le64(std::string& out, uint64_t value);
uint32_t get_le32(const char* p);
uint64_t get_le64(const char* p);

}  // namespace plantd::file_io
