#include "util/json_text.hpp"

#include <fmt/format.h>

namespace plantd {

void append_json_string(std::string& out, std::string_view text) {
    out += '"';
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (u < 0x20 || u == 0x7f) {
                    fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

}  // namespace plantd
