#include "app/dead_letter_tool.hpp"

#include <curl/curl.h>

#include <cstdint>
#include <deque>
#include <fstream>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <simdjson.h>

#include "app/registry_tool.hpp"
#include "common/units.hpp"
#include "decoding/timestamp.hpp"
#include "durability/dead_letter_store.hpp"
#include "util/clock.hpp"
#include "util/json_writer.hpp"

namespace plantd {

namespace {
// A device's bytes must not drive the operator's terminal: control characters (ESC...) as \xNN.
std::string terminal_safe(std::string_view text) {
    std::string out;
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f)
            out += fmt::format("\\x{:02x}", u);
        else
            out += c;
    }
    return out;
}

// JSON strings must be UTF-8: text that is not is given as base64 beside an empty string.
void utf8_field(JsonWriter& w, std::string_view name, std::string_view text) {
    if (simdjson::validate_utf8(text.data(), text.size())) {
        w.field(name, text);
    } else {
        w.field(name, "");
        w.field(std::string(name) + "_base64", base64_encode(text));
    }
}

std::string filter_text(const DeadLetterFilter& filter) {
    std::string text;
    if (!filter.factory_id.empty()) text += " of factory " + filter.factory_id;
    if (!filter.reason.empty()) text += " with reason " + filter.reason;
    if (filter.since_ms) text += " since " + format_rfc3339_ms(*filter.since_ms);
    if (filter.until_ms) text += " until " + format_rfc3339_ms(*filter.until_ms);
    return text;
}
}  // namespace

std::optional<int64_t> parse_time_or_ago(const std::string& text) {
    if (auto time = parse_rfc3339_ms(text)) return time;
    if (auto ago = parse_duration_ms(text)) return wall_clock_ms() - *ago;
    return std::nullopt;
}

int list_dead_letters(const std::string& path, size_t limit, const DeadLetterFilter& filter, bool json,
                      std::ostream& out) {
    const ReplayMarks marks(path);
    std::deque<StoredDeadLetter> newest;
    size_t total = 0;
    const size_t unreadable = read_dead_letters(path, [&](StoredDeadLetter&& letter) {
        if (!filter.matches(letter)) return true;
        ++total;
        newest.push_back(std::move(letter));
        if (newest.size() > limit) newest.pop_front();
        return true;
    });
    if (json) {
        JsonWriter w;
        w.begin_array();
        for (const auto& letter : newest) {
            w.begin_object()
                .field("number", uint64_t{letter.number})
                .field("id", letter.id)
                .field("time", format_rfc3339_ms(letter.time_ms))
                .field("kind", letter.kind);
            utf8_field(w, "topic", letter.topic);
            w.field("factory_id", letter.factory_id)
                .field("reason", letter.reason)
                .field("detail", letter.detail)
                .field("replayed", marks.contains(letter.id))
                .end_object();
        }
        out << w.end_array().text() << "\n";
        return exit_ok;
    }
    for (const auto& letter : newest) {
        out << terminal_safe(fmt::format("#{} {} {:<18} {:<8} factory={} topic={} {}{}", letter.number,
                                         format_rfc3339_ms(letter.time_ms), letter.reason, letter.kind,
                                         letter.factory_id.empty() ? "-" : letter.factory_id,
                                         letter.topic.empty() ? "-" : letter.topic, letter.detail,
                                         marks.contains(letter.id) ? " [replayed]" : ""))
            << "\n";
    }
    out << fmt::format("{} dead letters{} in {}; showing {}{}\n", total, filter_text(filter), path,
                       newest.size(), unreadable ? fmt::format(" ({} unreadable lines)", unreadable) : "");
    return exit_ok;
}

int show_dead_letter(const std::string& path, size_t number, std::ostream& out, std::ostream& err) {
    size_t at = 0;
    simdjson::dom::parser parser;
    for (const std::string& file : {path + ".1", path}) {
        std::ifstream in(file);
        std::string line;
        while (std::getline(in, line)) {
            if (++at != number) continue;
            simdjson::dom::element entry;
            if (parser.parse(line).get(entry)) {
                err << fmt::format("dead letter #{} in {} is not readable JSON:\n{}\n", number, file,
                                   terminal_safe(line));
                return exit_failed;
            }
            simdjson::dom::object fields;
            if (entry.get(fields)) {
                err << fmt::format("dead letter #{} in {} is not a JSON object\n", number, file);
                return exit_failed;
            }
            for (auto [key, value] : fields) {
                std::string_view text;
                if (value.get(text) == simdjson::SUCCESS)
                    out << fmt::format("{}: {}\n", terminal_safe(key), terminal_safe(text));
                else
                    out << fmt::format("{}: {}\n", terminal_safe(key),
                                       terminal_safe(simdjson::to_string(value)));
            }
            std::string_view encoded;
            if (entry["payload_base64"].get(encoded) == simdjson::SUCCESS)
                out << "(the payload was not UTF-8; payload_base64 above holds its bytes)\n";
            return exit_ok;
        }
    }
    err << fmt::format("no dead letter #{} in {} ({} entries; `deadletter list` shows the numbers)\n", number,
                       path, at);
    return exit_not_found;
}

int dead_letter_stats(const std::string& path, const DeadLetterFilter& filter, bool json, std::ostream& out) {
    const ReplayMarks marks(path);
    struct Count {
        uint64_t entries = 0;
        uint64_t replayed = 0;
    };
    std::map<std::pair<std::string, std::string>, Count> counts;  // (factory, reason)
    Count total;
    const size_t unreadable = read_dead_letters(path, [&](StoredDeadLetter&& letter) {
        if (!filter.matches(letter)) return true;
        const bool replayed = marks.contains(letter.id);
        auto& count = counts[{letter.factory_id, letter.reason}];
        ++count.entries;
        ++total.entries;
        count.replayed += replayed;
        total.replayed += replayed;
        return true;
    });
    if (json) {
        JsonWriter w;
        w.begin_object().field("entries", total.entries).field("replayed", total.replayed);
        w.field("unreadable_lines", uint64_t{unreadable}).key("by_factory_and_reason").begin_array();
        for (const auto& [key, count] : counts) {
            w.begin_object()
                .field("factory_id", key.first)
                .field("reason", key.second)
                .field("entries", count.entries)
                .field("replayed", count.replayed)
                .end_object();
        }
        out << w.end_array().end_object().text() << "\n";
        return exit_ok;
    }
    out << fmt::format("{:<24} {:<24} {:>10} {:>10}\n", "FACTORY", "REASON", "ENTRIES", "REPLAYED");
    for (const auto& [key, count] : counts)
        out << terminal_safe(fmt::format("{:<24} {:<24} {:>10} {:>10}\n", key.first.empty() ? "-" : key.first,
                                         key.second, count.entries, count.replayed));
    out << fmt::format("{} dead letters{} in {}, {} replayed{}\n", total.entries, filter_text(filter), path,
                       total.replayed, unreadable ? fmt::format(" ({} unreadable lines)", unreadable) : "");
    return exit_ok;
}

int replay_dead_letters(const std::string& socket_path, const ReplayRequest& request, bool json,
                        std::ostream& out, std::ostream& err) {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return exit_failed;
    std::string body;
    const std::string url = "http://plantd/deadletter/replay?" + replay_query(request);
    curl_easy_setopt(curl.get(), CURLOPT_UNIX_SOCKET_PATH, socket_path.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POST, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT_MS, 5'000L);
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, 3'600'000L);  // one request replays at most 100,000
    curl_easy_setopt(
        curl.get(), CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t count, void* sink) {
            static_cast<std::string*>(sink)->append(data, size * count);
            return size * count;
        });
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
    const CURLcode rc = curl_easy_perform(curl.get());
    if (rc != CURLE_OK) {
        err << fmt::format(
            "plantd: cannot reach the running plantd at {}: {}. A replay goes through the daemon's "
            "write-ahead log and pipeline: start plantd (systemctl start plantd), and run this as root or "
            "as a member of plantd's group\n",
            socket_path, curl_easy_strerror(rc));
        return exit_failed;
    }
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        err << "plantd: the daemon refused the replay: " << body;
        return status == 400 ? exit_usage : exit_failed;
    }
    simdjson::dom::parser parser;
    simdjson::dom::element report;
    if (parser.parse(body).get(report) != simdjson::SUCCESS) {
        err << "plantd: the daemon's answer is not JSON: " << terminal_safe(body) << "\n";
        return exit_failed;
    }
    auto count = [&](const char* key) {
        uint64_t value = 0;
        return report[key].get(value) == simdjson::SUCCESS ? value : uint64_t{0};
    };
    std::string_view problem;
    if (report["problem"].get(problem) != simdjson::SUCCESS) problem = {};
    if (json) {
        out << body;
    } else if (request.dry_run) {
        out << fmt::format(
            "dry run: {} dead letters match; {} would be replayed, {} were replayed before, {} cannot be "
            "replayed (InfluxDB lines, payloads too large to keep), {} beyond --limit\n",
            count("matched"), count("would_replay"), count("already_replayed"), count("not_replayable"),
            count("beyond_limit"));
    } else {
        out << fmt::format(
            "replayed {} of {} matching dead letters; skipped {} replayed before, {} that cannot be replayed "
            "(InfluxDB lines, payloads too large to keep), {} beyond --limit{}\n",
            count("replayed"), count("matched"), count("already_replayed"), count("not_replayable"),
            count("beyond_limit"),
            count("not_taken") ? fmt::format("; {} not taken", count("not_taken")) : std::string());
        if (count("replayed") > 0)
            out << "what fails again is a new dead letter with its new reason: plantd deadletter list "
                   "--since "
                   "<the time of this replay>\n";
    }
    if (!problem.empty()) err << "plantd: " << terminal_safe(problem) << "\n";
    return count("not_taken") > 0 || !problem.empty() ? exit_failed : exit_ok;
}

}  // namespace plantd
