#pragma once
// The operator's dead-letter commands: list, show and stats read the store's files directly (as the
// user that may read them); replay asks the running daemon over its operator socket, because only the
// daemon can put messages through its write-ahead log and pipeline.
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "app/dead_letter_replay.hpp"
#include "durability/dead_letter_reader.hpp"

namespace plantd {

// The newest `limit` entries the filter selects, one per line (or a JSON array), each with its number
// (#N: counted from the oldest entry of the rotated file path.1 on; it stays until the file rotates),
// its id, and whether it has been replayed.
int list_dead_letters(const std::string& path, size_t limit, const DeadLetterFilter& filter, bool json,
                      std::ostream& out);
// Entry `number` whole: every field, and the payload as it arrived (decoded from base64 when it was
// not UTF-8). Exit code 3 when there is no such entry.
int show_dead_letter(const std::string& path, size_t number, std::ostream& out, std::ostream& err);
// Counts by factory and reason (with how many of each are replayed).
int dead_letter_stats(const std::string& path, const DeadLetterFilter& filter, bool json, std::ostream& out);
// An RFC 3339 time, or a duration ("2h") before now: milliseconds since the epoch.
std::optional<int64_t> parse_time_or_ago(const std::string& text);
// Asks the daemon on `socket_path` to replay; prints its report.
int replay_dead_letters(const std::string& socket_path, const ReplayRequest& request, bool json,
                        std::ostream& out, std::ostream& err);

}  // namespace plantd
