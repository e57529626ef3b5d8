#pragma once
#include <ostream>
#include <string>

namespace plantd {

// `plantd deadletter list`: prints the newest `limit` entries (optionally of one reason), one per line.
// The newest `limit` entries (of `reason`), each with its ID: its number counted from the oldest entry
// of the rotated file (path.1) on; an ID stays the same until the file rotates.
int list_dead_letters(const std::string& path, size_t limit, const std::string& reason, std::ostream& out);
// Entry `id` whole: every field, and the payload as it arrived (decoded from base64 when it was not UTF-8).
int show_dead_letter(const std::string& path, size_t id, std::ostream& out, std::ostream& err);

}  // namespace plantd
