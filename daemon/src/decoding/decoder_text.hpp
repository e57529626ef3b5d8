#pragma once
// Text for the decoder's rejection details, shared by its files.
#include <string>
#include <string_view>

#include <simdjson.h>

namespace plantd {

// "an array", "a number", ...: what a JSON value is, as a detail says it.
std::string_view json_type_name(simdjson::dom::element_type type);
// Untrusted text cut and escaped for inclusion in a detail, in double quotes.
std::string printable_quoted(std::string_view text);

}  // namespace plantd
