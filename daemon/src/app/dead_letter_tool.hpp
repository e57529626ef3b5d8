#pragma once
#include <ostream>
#include <string>

namespace plantd {

// `plantd deadletter list`: prints the newest `limit` entries (optionally of one reason), one per line.
int list_dead_letters(const std::string& path, size_t limit, const std::string& reason, std::ostream& out);

}  // namespace plantd
