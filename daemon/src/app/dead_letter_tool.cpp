#include "app/dead_letter_tool.hpp"

#include <deque>
#include <fstream>

#include <fmt/format.h>
#include <simdjson.h>

namespace plantd {

namespace {
void read_string(simdjson::dom::element entry, const char* key, std::string_view& out) {
    if (entry[key].get(out) != simdjson::SUCCESS) out = {};
}
}  // namespace

int list_dead_letters(const std::string& path, size_t limit, const std::string& reason, std::ostream& out) {
    std::deque<std::string> newest;
    size_t total = 0;
    size_t unreadable = 0;
    simdjson::dom::parser parser;
    for (const std::string& file : {path + ".1", path}) {
        std::ifstream in(file);
        std::string line;
        while (std::getline(in, line)) {
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
            newest.push_back(fmt::format("{} {:<18} {:<8} factory={} topic={} {}", time, entry_reason, kind,
                                         factory.empty() ? "-" : factory, topic.empty() ? "-" : topic,
                                         detail));
            if (newest.size() > limit) newest.pop_front();
        }
    }
    for (const auto& line : newest) out << line << "\n";
    out << fmt::format("{} dead letters{} in {}; showing {}{}\n", total,
                       reason.empty() ? "" : " with reason " + reason, path, newest.size(),
                       unreadable ? fmt::format(" ({} unreadable lines)", unreadable) : "");
    return 0;
}

}  // namespace plantd
