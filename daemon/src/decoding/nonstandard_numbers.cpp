#include "decoding/nonstandard_numbers.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>

namespace plantd {

namespace {

bool is_token_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' ||
           c == '-' || c == '.';
}

bool is_nonfinite_word(std::string_view token) {
    if (!token.empty() && (token[0] == '-' || token[0] == '+')) token.remove_prefix(1);
    return token == "NaN" || token == "Infinity" || token == "nan" || token == "inf" || token == "Inf" ||
           token == "infinity";
}

// A syntactically valid JSON number that no 64-bit integer or finite double can hold.
bool is_out_of_range_number(std::string_view token) {
    size_t i = 0;
    if (i < token.size() && token[i] == '-') ++i;
    if (i >= token.size() || token[i] < '0' || token[i] > '9') return false;
    bool integral = token.find_first_of(".eE") == std::string_view::npos;
    for (char c : token.substr(i)) {
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
            return false;
    }
    if (integral) {
        const char* begin = token.data();
        const char* end = token.data() + token.size();
        int64_t signed_value;
        if (std::from_chars(begin, end, signed_value).ec == std::errc()) return false;
        uint64_t unsigned_value;
        if (token[0] != '-' && std::from_chars(begin, end, unsigned_value).ec == std::errc()) return false;
        return true;
    }
    std::string copy(token);
    errno = 0;
    char* parse_end = nullptr;
    double value = std::strtod(copy.c_str(), &parse_end);
    return parse_end == copy.c_str() + copy.size() && std::isinf(value);
}

void append_sentinel(std::string& out, std::string_view prefix, std::string_view token) {
    out += "\"\\u0000";
    out += prefix.substr(1);  // the NUL is written as the escape above
    out.append(token.substr(0, 64));
    out += '"';
}

}  // namespace

std::optional<std::string> rewrite_nonstandard_numbers(std::string_view json) {
    std::string out;
    out.reserve(json.size() + 64);
    bool in_string = false;
    bool changed = false;
    size_t i = 0;
    while (i < json.size()) {
        char c = json[i];
        if (in_string) {
            out += c;
            if (c == '\\' && i + 1 < json.size()) {
                out += json[i + 1];
                i += 2;
                continue;
            }
            if (c == '"') in_string = false;
            ++i;
            continue;
        }
        if (c == '"') {
            in_string = true;
            out += c;
            ++i;
            continue;
        }
        if (!is_token_char(c)) {
            out += c;
            ++i;
            continue;
        }
        size_t start = i;
        while (i < json.size() && is_token_char(json[i])) ++i;
        std::string_view token = json.substr(start, i - start);
        if (is_nonfinite_word(token)) {
            append_sentinel(out, nonfinite_sentinel_prefix, token);
            changed = true;
        } else if (is_out_of_range_number(token)) {
            append_sentinel(out, out_of_range_sentinel_prefix, token);
            changed = true;
        } else {
            out.append(token);
        }
    }
    if (!changed) return std::nullopt;
    return out;
}

}  // namespace plantd
