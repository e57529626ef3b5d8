#pragma once
// Topic templates such as "factory/{factory_id}/device/{device_id}/telemetry": each placeholder is a
// whole topic level. The factory a record belongs to always comes from the topic (CONTRACT §1).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace plantd {

enum class TopicKind { device, gateway };

struct TopicMatch {
    TopicKind kind = TopicKind::device;
    std::string_view factory_id;
    std::string_view source_id;  // device_id on a device topic, gateway_id on a gateway topic
};

class TopicTemplate {
  public:
    // Errors name the problem, e.g. "placeholder {device_id} must be a whole topic level".
    static Result<TopicTemplate> parse(std::string_view text, TopicKind kind);

    const std::string& text() const { return text_; }
    TopicKind kind() const { return kind_; }
    // The MQTT filter: placeholders become '+'.
    std::string subscription_filter() const;
    // Views point into `topic`. Identifiers are not validated here.
    std::optional<TopicMatch> match(std::string_view topic) const;

  private:
    enum class LevelKind { literal, factory, source };
    struct Level {
        LevelKind kind;
        std::string literal;
    };
    std::string text_;
    TopicKind kind_ = TopicKind::device;
    std::vector<Level> levels_;
};

enum class TopicError { none, no_match, invalid_factory_id, invalid_source_id };

// Matches a topic against the device template first, then the gateway template.
class TopicRouter {
  public:
    TopicRouter(TopicTemplate device, std::optional<TopicTemplate> gateway);
    TopicError route(std::string_view topic, TopicMatch& out) const;
    std::vector<std::string> subscription_filters() const;

  private:
    TopicTemplate device_;
    std::optional<TopicTemplate> gateway_;
};

}  // namespace plantd
