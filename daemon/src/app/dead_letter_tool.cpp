#include "app/dead_letter_tool.hpp"

#include <deque>
#include <fstream>

#include <fmt/format.h>
#include <simdjson.h>

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

void read_string(simdjson::dom::element entry, const char* key, std::string_view& out) {
    if (entry[key].get(out) != simdjson::SUCCESS) out = {};
}
}  // namespace

int list_dead_letters(const std::string& path, size_t limit, const std::string& reason, std::ostream& out) {
    std::deque<std::string> newest;
    size_t total = 0;
    size_t unreadable = 0;
    simdjson::dom::parser parser;
    size_t id = 0;
    for (const std::string& file : {path + ".1", path}) {
        std::ifstream in(file);
        std::string line;
        while (std::getline(in, line)) {
            ++id;
            simdjson::dom::element entry;
            if (parser.parse(line).get(entry)) {
                ++unreadable;
                continue;
            }
            std::string_view entry_reason, time, kind, topic, factory, detail;
            read_string(entry, "reason", entry_reason);
            if (!reason.empty() && entry_reason != reason) continue;
            read_string(entry, "time", time);
            read_string(entry, "kind", kind);
            read_string(entry, "topic", topic);
            read_string(entry, "factory_id", factory);
            read_string(entry, "detail", detail);
            ++total;
            newest.push_back(terminal_safe(fmt::format("#{} {} {:<18} {:<8} factory={} topic={} {}", id, time,
                                                       entry_reason, kind, factory.empty() ? "-" : factory,
                                                       topic.empty() ? "-" : topic, detail)));
            if (newest.size() > limit) newest.pop_front();
        }
    }
    for (const auto& line : newest) out << line << "\n";
    out << fmt::format("{} dead letters{} in {}; showing {}{}\n", total,
                       reason.empty() ? "" : " with reason " + reason, path, newest.size(),
                       unreadable ? fmt::format(" ({} unreadable lines)", unreadable) : "");
    return 0;
}

int show_dead_letter(const std::string& path, size_t id, std::ostream& out, std::ostream& err) {
    size_t at = 0;
    simdjson::dom::parser parser;
    for (const std::string& file : {path + ".1", path}) {
        std::ifstream in(file);
        std::string line;
        while (std::getline(in, line)) {
            if (++at != id) continue;
            simdjson::dom::element entry;
            if (parser.parse(line).get(entry)) {
                err << fmt::format("dead letter #{} in {} is not readable JSON:\n{}\n", id, file,
                                   terminal_safe(line));
                return 1;
            }
            simdjson::dom::object fields;
            if (entry.get(fields)) {
                err << fmt::format("dead letter #{} in {} is not a JSON object\n", id, file);
                return 1;
            }
            for (auto [key, value] : fields) {
                std::string_view text;
                if (value.get(text) == simdjson::SUCCESS)
                    out << fmt::format("{}: {}\n", key, terminal_safe(text));
                else
                    out << fmt::format("{}: {}\n", key, simdjson::to_string(value));
            }
            std::string_view encoded;
            if (entry["payload_base64"].get(encoded) == simdjson::SUCCESS)
                out << "(the payload was not UTF-8; payload_base64 above holds its bytes)\n";
            return 0;
        }
    }
    err << fmt::format("no dead letter #{} in {} ({} entries; `deadletter list` shows the IDs)\n", id, path,
                       at);
    return 1;
}

}  // namespace plantd
