#include "util/build_info.hpp"

// Only this file carries the definitions, so a new version or commit recompiles one file.
#ifndef PLANTD_VERSION
#define PLANTD_VERSION "unknown"
#endif
#ifndef PLANTD_COMMIT
#define PLANTD_COMMIT "unknown"
#endif
#ifndef PLANTD_BUILD_TYPE
#define PLANTD_BUILD_TYPE "unknown"
#endif

namespace plantd::build_info {

const char* version() {
    return PLANTD_VERSION;
}
const char* commit() {
    return PLANTD_COMMIT;
}
const char* build_type() {
    return PLANTD_BUILD_TYPE;
}

std::string describe() {
    return std::string("plantd ") + version() + " (commit " + commit() + ", " + build_type() + ")";
}

}  // namespace plantd::build_info
