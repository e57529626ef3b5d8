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

// The first bytes of a file, at most `count` ("" if it cannot be read).
std::string read_head(const std::string& path, size_t count);
// The files plantd writes begin with a family name and a format digit ("PLNTWAL2"). True when `head`
// is of `family` with a digit above `newest_known`: a newer plantd wrote it, and this one must not
// read it as damage (and discard it) but refuse to start.
bool newer_format(std::string_view head, std::string_view family, char newest_known);
std::string newer_format_message(const std::string& path, std::string_view head, char newest_known);

void put_le32(std::string& out, uint32_t value);
void put_le64(std::string& out, uint64_t value);
uint32_t get_le32(const char* p);
uint64_t get_le64(const char* p);

}  // namespace plantd::file_io
