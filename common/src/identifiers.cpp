#include "common/identifiers.hpp"

namespace plantd {

namespace {
bool is_alnum(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
}  // namespace

bool is_valid_identifier(std::string_view id) {
    if (id.empty() || id.size() > 64 || !is_alnum(id[0])) return false;
    for (char c : id.substr(1)) {
        if (!is_alnum(c) && c != '_' && c != '.' && c != '-') return false;
    }
    return true;
}

bool contains_control_character(std::string_view text) {
    for (size_t i = 0; i < text.size(); ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c == 0x7f) return true;
        // C1 controls U+0080..U+009F are encoded as C2 80..C2 9F.
        if (c == 0xc2 && i + 1 < text.size()) {
            auto next = static_cast<unsigned char>(text[i + 1]);
            if (next >= 0x80 && next <= 0x9f) return true;
        }
    }
    return false;
}

bool is_valid_metric_name(std::string_view name) {
    if (name.empty() || name.size() > 128 || name[0] == '_') return false;
    return !contains_control_character(name);
}

bool is_line_protocol_safe_key(std::string_view key) {
    size_t i = 0;
    while (i < key.size()) {
        if (key[i] != '\\') {
            ++i;
            continue;
        }
        size_t run = 0;
        while (i < key.size() && key[i] == '\\') {
            ++run;
            ++i;
        }
        // InfluxDB also unescapes \" in keys, so an odd run before a quote would lose a backslash.
        bool before_separator =
            i == key.size() || key[i] == ',' || key[i] == '=' || key[i] == ' ' || key[i] == '"';
        if (run % 2 == 1 && before_separator) return false;
    }
    return true;
}

std::string printable(std::string_view text, size_t max) {
    std::string out;
    for (char c : text.substr(0, max)) {
        auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? '?' : c;
    }
    if (text.size() > max) out += "...";
    return out;
}

}  // namespace plantd
