// Fuzzes topic templates and routing: any template text, any topic.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/identifiers.hpp"
#include "decoding/topic_template.hpp"

using namespace plantd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    // "template\ntopic": the template half exercises the parser, the topic half the matcher.
    auto split = input.find('\n');
    std::string_view text = input.substr(0, split);
    std::string_view topic = split == std::string_view::npos ? input : input.substr(split + 1);
    (void)TopicTemplate::parse(text, TopicKind::device);
    (void)TopicTemplate::parse(text, TopicKind::gateway);
    static const TopicRouter router(
        *TopicTemplate::parse("factory/{factory_id}/device/{device_id}/telemetry", TopicKind::device),
        *TopicTemplate::parse("factory/{factory_id}/gateway/{gateway_id}/telemetry", TopicKind::gateway));
    TopicMatch match;
    if (router.route(topic, match) == TopicError::none) {
        if (!is_valid_identifier(match.factory_id) || !is_valid_identifier(match.source_id)) std::abort();
    }
    return 0;
}
