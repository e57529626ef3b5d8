// Fuzzes Sparkplug B decoding: any bytes as a payload (every metric's value converted under every
// datatype), and any text as a topic.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sparkplug/sparkplug_payload.hpp"
#include "sparkplug/sparkplug_topic.hpp"

using namespace plantd::sparkplug;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string problem;
    Topic topic;
    if (parse_topic(input, topic, problem) && is_device_message(topic.type) && topic.device_id.empty())
        std::abort();
    Payload payload;
    if (decode_payload(input, payload, problem)) {
        if (payload.metrics.size() > max_metrics_per_payload) std::abort();
        for (const auto& metric : payload.metrics) {
            // A value and a problem never both.
            if (!metric.problem.empty() && !std::holds_alternative<std::monostate>(metric.value))
                std::abort();
            for (uint32_t datatype = 0; datatype < 36; ++datatype) {
                std::string why;
                const Value value = convert(metric.raw, datatype, why);
                if (std::holds_alternative<std::monostate>(value) == why.empty()) std::abort();
            }
        }
    }
    return 0;
}
