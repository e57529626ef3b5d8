#pragma once
// How plantd's log lines look. On a terminal or in a file: an RFC 3339 UTC timestamp with its zone
// ("2026-12-01T10:00:00.123Z"), the level, the text. When stderr is the systemd journal
// (JOURNAL_STREAM names it): "<N>" and the text, N the syslog priority of the level, so that
// `journalctl -p warning` and colouring work and the journal keeps its own timestamp.
#include <memory>

#include <spdlog/formatter.h>

namespace plantd {

// Whether stderr is the journal's stream (JOURNAL_STREAM="device:inode" equals stderr's).
bool stderr_is_journal();

// The formatter for either place.
std::unique_ptr<spdlog::formatter> make_log_formatter(bool journal);

}  // namespace plantd
