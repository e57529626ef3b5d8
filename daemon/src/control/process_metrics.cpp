#include "control/process_metrics.hpp"

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "util/build_info.hpp"

namespace plantd {

namespace {

// Fields of /proc/self/stat after the command name (which may hold spaces): field 3 is the first.
std::vector<std::string> stat_fields() {
    std::ifstream in("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> fields;
    const auto close = text.rfind(')');
    if (close == std::string::npos || close + 2 > text.size()) return fields;
    std::istringstream rest(text.substr(close + 2));
    for (std::string field; rest >> field;) fields.push_back(field);
    return fields;
}

double stat_field(size_t number) {  // number as in proc(5): 14 is utime
    const auto fields = stat_fields();
    // Read at scrape time: a field that is not a number reads as 0, it never throws.
    if (number < 3 || number - 3 >= fields.size()) return 0.0;
    const std::string& field = fields[number - 3];
    double value = 0.0;
    auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
    return error == std::errc() ? value : 0.0;
}

// From the clocks, not /proc/stat: the hardened unit (ProcSubset=pid) shows plantd only its own /proc.
// Read once and rounded to whole seconds (as /proc/stat's btime is): two clock reads per scrape
// would differ by microseconds, and process_start_time_seconds would seem to change.
double boot_time_seconds() {
    static const double boot = [] {
        timespec now{}, since_boot{};
        ::clock_gettime(CLOCK_REALTIME, &now);
        ::clock_gettime(CLOCK_BOOTTIME, &since_boot);
        return std::round(static_cast<double>(now.tv_sec - since_boot.tv_sec) +
                          static_cast<double>(now.tv_nsec - since_boot.tv_nsec) / 1e9);
    }();
    return boot;
}

}  // namespace

void register_process_metrics(MetricsRegistry& registry) {
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    registry.add_gauge(fmt::format("plantd_build_info{{version=\"{}\",commit=\"{}\",build_type=\"{}\"}}",
                                   build_info::version(), build_info::commit(), build_info::build_type()),
                       "plantd's version, commit and build type (the value is always 1).",
                       [] { return 1.0; });
    registry.add_counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                         [ticks] { return (stat_field(14) + stat_field(15)) / ticks; });
    registry.add_gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                       [page] { return stat_field(24) * page; });
    registry.add_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                       [] { return stat_field(23); });
    registry.add_gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                       [ticks] { return boot_time_seconds() + stat_field(22) / ticks; });
    registry.add_gauge("process_open_fds", "Number of open file descriptors.", [] {
        std::error_code ec;
        double count = 0;
        for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
             it.increment(ec))
            ++count;
        return count;
    });
    registry.add_gauge("process_max_fds", "Maximum number of open file descriptors.", [] {
        rlimit limit{};
        return ::getrlimit(RLIMIT_NOFILE, &limit) == 0 ? static_cast<double>(limit.rlim_cur) : 0.0;
    });
}

}  // namespace plantd
