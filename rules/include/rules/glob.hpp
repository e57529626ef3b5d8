#pragma once
// Device globs of rule files: `*` any run of characters, `?` one character, everything else literal.
#include <string_view>

namespace plantd::rules {

bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace plantd::rules
