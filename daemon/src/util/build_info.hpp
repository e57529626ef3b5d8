#pragma once
// What this binary is: its version, the commit it was built from and the build type, fixed when
// CMake configured the build (scripts/package sets them for a package).
#include <string>

namespace plantd::build_info {

const char* version();
const char* commit();
const char* build_type();
// "plantd 0.2.0 (commit 1a2b3c4d5e6f, Release)"
std::string describe();

}  // namespace plantd::build_info
