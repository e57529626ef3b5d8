// MqttSubscriber's memory of what it subscribed to, kept beside the session state
// ({durability.directory}/mqtt-subscriptions-{client_id}), so that a filter no longer configured is
// unsubscribed at the next connection instead of lingering in the broker's persistent session.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>

#include "subscriber/mqtt_subscriber.hpp"

namespace plantd {

std::string MqttSubscriber::filters_path() const {
    std::string name = config_.mqtt.client_id;  // any character a client id may hold, as a file name
    for (char& c : name)
        if (c == '/' || c == '\0') c = '_';
    return fmt::format("{}/mqtt-subscriptions-{}", config_.durability.directory, name);
}

namespace {
// Only what plantd itself could have subscribed to: a damaged or foreign file must not make plantd
// send the broker a filter it refuses (some brokers disconnect on one, and the file would be read again).
bool plausible_filter(std::string_view filter) {
    if (filter.empty() || filter.size() > 65'535) return false;
    size_t level_start = 0;
    for (size_t i = 0; i <= filter.size(); ++i) {
        if (i < filter.size() && filter[i] != '/') {
            const auto c = static_cast<unsigned char>(filter[i]);
            if (c < 0x20 || c == 0x7f || c >= 0x80) return false;  // plantd's filters are printable ASCII
            continue;
        }
        const std::string_view level = filter.substr(level_start, i - level_start);
        if (level.find_first_of("+#") != std::string_view::npos && level.size() != 1) return false;
        if (level == "#" && i != filter.size()) return false;
        level_start = i + 1;
    }
    return true;
}
}  // namespace

std::vector<std::string> MqttSubscriber::previous_filters() const {
    std::vector<std::string> filters;
    std::error_code ec;
    const auto size = std::filesystem::file_size(filters_path(), ec);
    if (ec) return filters;  // none yet
    if (size > 4 * 1024 * 1024) {
        spdlog::warn("mqtt: {} is {} bytes, not a list of filters; ignored", filters_path(), size);
        return filters;
    }
    std::ifstream in(filters_path());
    std::string line;
    while (filters.size() < 64 && std::getline(in, line)) {
        if (plausible_filter(line)) {
            filters.push_back(line);
        } else if (!line.empty()) {
            spdlog::warn("mqtt: {} holds a line that is no MQTT filter plantd would use; ignored",
                         filters_path());
        }
    }
    return filters;
}

void MqttSubscriber::remember_filters() const {
    std::error_code ec;
    std::filesystem::create_directories(config_.durability.directory, ec);
    const std::string path = filters_path();
    const std::string temporary = path + ".tmp";
    {
        std::ofstream out(temporary, std::ios::trunc);
        // Until their UNSUBACK, the stale filters are the broker's too: a connection lost meanwhile
        // unsubscribes them on the next one.
        for (const auto& filter : filters_) out << filter << '\n';
        for (const auto& filter : unsubscribing_) out << filter << '\n';
        if (!out) {
            spdlog::debug("mqtt: cannot keep the subscribed filters in {}", path);
            return;
        }
    }
    std::filesystem::rename(temporary, path, ec);
}

}  // namespace plantd
