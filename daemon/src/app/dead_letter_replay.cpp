#include "app/dead_letter_replay.hpp"

#include <sys/stat.h>

#include <charconv>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/identifiers.hpp"
#include "core/reject_reason.hpp"
#include "util/json_writer.hpp"

namespace plantd {

namespace {

std::optional<int64_t> number_of(std::string_view text) {
    int64_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

bool is_reason(std::string_view text) {
    for (size_t i = 0; i < reject_reason_count; ++i)
        if (to_string(static_cast<RejectReason>(i)) == text) return true;
    return false;
}

}  // namespace

Result<ReplayRequest> parse_replay_query(std::string_view query) {
    ReplayRequest request;
    while (!query.empty()) {
        const size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (pair.empty()) continue;
        const size_t eq = pair.find('=');
        const std::string_view key = pair.substr(0, eq);
        const std::string_view value =
            eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
        if (key == "factory") {
            if (!is_valid_identifier(value))
                return fail(fmt::format("factory \"{}\" is not an identifier", printable(value)));
            request.filter.factory_id = std::string(value);
        } else if (key == "reason") {
            if (!is_reason(value))
                return fail(fmt::format("\"{}\" is not a rejection reason", printable(value)));
            request.filter.reason = std::string(value);
        } else if (key == "since" || key == "until" || key == "limit") {
            auto number = number_of(value);
            if (!number || *number < 0) return fail(fmt::format("{} must be a number", key));
            if (key == "since") request.filter.since_ms = *number;
            if (key == "until") request.filter.until_ms = *number;
            if (key == "limit") request.limit = std::min<size_t>(static_cast<size_t>(*number), 100'000);
        } else if (key == "dry_run") {
            request.dry_run = value == "1";
        } else {
            return fail(fmt::format("unknown parameter \"{}\"", printable(key)));
        }
    }
    return request;
}

std::string replay_query(const ReplayRequest& request) {
    std::string query = fmt::format("limit={}", request.limit);
    if (!request.filter.factory_id.empty()) query += "&factory=" + request.filter.factory_id;
    if (!request.filter.reason.empty()) query += "&reason=" + request.filter.reason;
    if (request.filter.since_ms) query += fmt::format("&since={}", *request.filter.since_ms);
    if (request.filter.until_ms) query += fmt::format("&until={}", *request.filter.until_ms);
    if (request.dry_run) query += "&dry_run=1";
    return query;
}

std::string to_json(const ReplayReport& report) {
    JsonWriter w;
    w.begin_object()
        .field("matched", uint64_t{report.matched})
        .field("replayed", uint64_t{report.replayed})
        .field("would_replay", uint64_t{report.would_replay})
        .field("already_replayed", uint64_t{report.already_replayed})
        .field("not_replayable", uint64_t{report.not_replayable})
        .field("beyond_limit", uint64_t{report.beyond_limit})
        .field("not_taken", uint64_t{report.not_taken})
        .field("unreadable", uint64_t{report.unreadable})
        .field("problem", report.problem)
        .end_object();
    return w.text();
}

ReplayReport DeadLetterReplayer::replay(const ReplayRequest& request) {
    std::lock_guard one_at_a_time(running_);
    requests_.fetch_add(1);
    ReplayReport report;
    ReplayMarks marks(path_);
    if (!marks.error().empty()) {
        report.problem = marks.error() + "; nothing was replayed (the marks say what was replayed before)";
        return report;
    }
    std::vector<StoredDeadLetter> chosen;
    std::unordered_set<std::string> existing;
    // What one request holds in memory at most (letters may be up to max_payload_bytes each).
    constexpr size_t max_request_bytes = 64 * 1024 * 1024;
    size_t chosen_bytes = 0;
    // The files' identities before and after the read: a rotation in between means the read missed
    // entries, and the marks must not be compacted from it.
    auto identity = [this] {
        struct stat current {
        }, rotated{};
        const bool a = ::stat(path_.c_str(), &current) == 0,
                   b = ::stat((path_ + ".1").c_str(), &rotated) == 0;
        return std::pair{a ? current.st_ino : ino_t{0}, b ? rotated.st_ino : ino_t{0}};
    };
    const auto before = identity();
    report.unreadable = read_dead_letters(path_, [&](StoredDeadLetter&& letter) {
        if (marks.contains(letter.id)) existing.insert(letter.id);  // only marked ids: bounded by the marks
        if (!request.filter.matches(letter)) return true;
        ++report.matched;
        if (marks.contains(letter.id)) {
            ++report.already_replayed;
        } else if (letter.kind == "line" || !letter.payload_whole || letter.topic.empty() ||
                   letter.topic.starts_with("spBv1.0/")) {
            // A Sparkplug message belongs to a session (seq, aliases) that has moved on: replayed, it
            // would be rejected again at best, and at worst make the live session resynchronise.
            ++report.not_replayable;
        } else if (chosen.size() >= request.limit ||
                   chosen_bytes + letter.payload.size() > max_request_bytes) {
            ++report.beyond_limit;
        } else {
            chosen_bytes += letter.topic.size() + letter.payload.size();
            chosen.push_back(std::move(letter));
        }
        return true;
    });
    if (request.dry_run) {
        report.would_replay = chosen.size();
        return report;
    }
    // Never from a read that found none of the marked, or that a rotation cut short.
    if (!existing.empty() && identity() == before) marks.compact(existing);
    // In chunks the subscriber takes between packets; each chunk's letters are marked once the log
    // (or, in durability mode "memory", the queue) has them.
    constexpr size_t chunk = 1000;
    for (size_t first = 0; first < chosen.size(); first += chunk) {
        const size_t last = std::min(chosen.size(), first + chunk);
        std::vector<RawMessage> messages;
        for (size_t i = first; i < last; ++i)
            messages.push_back(RawMessage::make(chosen[i].topic, chosen[i].payload, chosen[i].time_ms));
        const auto tickets = inbox_.submit(std::move(messages));
        const auto taken = inbox_.wait(tickets, idle_timeout_ms_);
        std::vector<std::string> ids;
        for (size_t i = first; i < last; ++i)
            if (taken.count(tickets[i - first])) ids.push_back(chosen[i].id);
        if (auto problem = marks.add(ids); !problem.empty()) {
            // Replayed but not marked: a later replay writes the same points again (idempotent).
            report.problem = problem;
            spdlog::error("dead-letter replay: {}", problem);
        }
        report.replayed += ids.size();
        replayed_.fetch_add(ids.size());
        if (ids.size() < last - first) {
            report.not_taken += chosen.size() - first - ids.size();
            if (report.problem.empty())
                report.problem = fmt::format(
                    "plantd did not take the replayed messages within {} ms: is it connected to the "
                    "broker and is its log below wal_max_bytes? Nothing not taken was marked; replay again",
                    idle_timeout_ms_);
            break;
        }
    }
    spdlog::info(
        "dead-letter replay: {} matched, {} replayed, {} already replayed, {} not replayable, {} "
        "beyond the limit{}",
        report.matched, report.replayed, report.already_replayed, report.not_replayable, report.beyond_limit,
        report.not_taken ? fmt::format(", {} not taken", report.not_taken) : "");
    return report;
}

void DeadLetterReplayer::register_metrics(MetricsRegistry& registry) const {
    registry.add_counter("plantd_dead_letters_replayed_total",
                         "Dead letters replayed into the pipeline (in the log, and marked replayed).",
                         [this] { return static_cast<double>(replayed_.load()); });
    registry.add_counter("plantd_dead_letter_replay_requests_total", "Replay requests the daemon served.",
                         [this] { return static_cast<double>(requests_.load()); });
}

}  // namespace plantd
