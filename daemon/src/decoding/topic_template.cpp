#include "decoding/topic_template.hpp"

#include <fmt/format.h>

#include "common/identifiers.hpp"

namespace plantd {

namespace {

std::vector<std::string_view> split_levels(std::string_view topic) {
    std::vector<std::string_view> levels;
    size_t start = 0;
    while (true) {
        size_t slash = topic.find('/', start);
        if (slash == std::string_view::npos) {
            levels.push_back(topic.substr(start));
            return levels;
        }
        levels.push_back(topic.substr(start, slash - start));
        start = slash + 1;
    }
}

}  // namespace

Result<TopicTemplate> TopicTemplate::parse(std::string_view text, TopicKind kind) {
    if (text.empty()) return fail(std::string("topic template is empty"));
    if (text.size() > 1024) return fail(std::string("topic template is longer than 1024 bytes"));
    const std::string_view source_name = kind == TopicKind::device ? "{device_id}" : "{gateway_id}";
    TopicTemplate result;
    result.text_ = std::string(text);
    result.kind_ = kind;
    bool has_factory = false;
    bool has_source = false;
    for (std::string_view level : split_levels(text)) {
        if (level == "{factory_id}") {
            if (has_factory) return fail(std::string("{factory_id} appears twice"));
            has_factory = true;
            result.levels_.push_back({LevelKind::factory, {}});
        } else if (level == source_name) {
            if (has_source) return fail(fmt::format("{} appears twice", source_name));
            has_source = true;
            result.levels_.push_back({LevelKind::source, {}});
        } else if (level.find_first_of("{}") != std::string_view::npos) {
            return fail(fmt::format(
                "level \"{}\": a placeholder must be a whole topic level and one of {{factory_id}}, {}",
                level, source_name));
        } else if (level.find_first_of("+#") != std::string_view::npos) {
            return fail(fmt::format("level \"{}\": wildcards are not allowed in a template", level));
        } else if (level.empty()) {
            return fail(std::string("empty topic level (a leading, trailing or doubled '/')"));
        } else if (level.front() == '$') {
            return fail(
                fmt::format("level \"{}\": topics starting with '$' are reserved by the broker", level));
        } else {
            result.levels_.push_back({LevelKind::literal, std::string(level)});
        }
    }
    if (!has_factory) return fail(std::string("template has no {factory_id} level"));
    if (!has_source) return fail(fmt::format("template has no {} level", source_name));
    return result;
}

std::string TopicTemplate::subscription_filter() const {
    std::string filter;
    for (size_t i = 0; i < levels_.size(); ++i) {
        if (i > 0) filter += '/';
        filter += levels_[i].kind == LevelKind::literal ? levels_[i].literal : std::string("+");
    }
    return filter;
}

std::optional<TopicMatch> TopicTemplate::match(std::string_view topic) const {
    TopicMatch match;
    match.kind = kind_;
    size_t start = 0;
    for (size_t i = 0; i < levels_.size(); ++i) {
        if (start > topic.size()) return std::nullopt;
        size_t slash = topic.find('/', start);
        bool last = i + 1 == levels_.size();
        if (last != (slash == std::string_view::npos)) return std::nullopt;
        std::string_view level = topic.substr(start, last ? std::string_view::npos : slash - start);
        switch (levels_[i].kind) {
            case LevelKind::literal:
                if (level != levels_[i].literal) return std::nullopt;
                break;
            case LevelKind::factory:
                match.factory_id = level;
                break;
            case LevelKind::source:
                match.source_id = level;
                break;
        }
        start = last ? topic.size() : slash + 1;
    }
    return match;
}

TopicRouter::TopicRouter(TopicTemplate device, std::optional<TopicTemplate> gateway)
    : device_(std::move(device)), gateway_(std::move(gateway)) {}

TopicError TopicRouter::route(std::string_view topic, TopicMatch& out) const {
    std::optional<TopicMatch> match = device_.match(topic);
    if (!match && gateway_) match = gateway_->match(topic);
    if (!match) return TopicError::no_match;
    out = *match;
    if (!is_valid_identifier(out.factory_id)) return TopicError::invalid_factory_id;
    if (!is_valid_identifier(out.source_id)) return TopicError::invalid_source_id;
    return TopicError::none;
}

std::vector<std::string> TopicRouter::subscription_filters() const {
    std::vector<std::string> filters{device_.subscription_filter()};
    if (gateway_) filters.push_back(gateway_->subscription_filter());
    return filters;
}

}  // namespace plantd
