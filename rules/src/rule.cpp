#include "rules/rule.hpp"

#include <fmt/format.h>

namespace plantd::rules {

std::string_view to_string(Severity severity) {
    switch (severity) {
        case Severity::info:
            return "info";
        case Severity::warning:
            return "warning";
        case Severity::major:
            return "major";
        case Severity::critical:
            return "critical";
    }
    return "warning";
}

bool parse_severity(std::string_view text, Severity& severity) {
    for (Severity s : {Severity::info, Severity::warning, Severity::major, Severity::critical}) {
        if (text == to_string(s)) {
            severity = s;
            return true;
        }
    }
    return false;
}

std::string_view to_string(OnMissing policy) {
    switch (policy) {
        case OnMissing::keep:
            return "keep";
        case OnMissing::resolve:
            return "resolve";
        case OnMissing::absent:
            return "absent";
    }
    return "keep";
}

std::string RuleDefinition::fingerprint() const {
    // Lengths first, so that no two different definitions print alike.
    std::string text = fmt::format("{}:{}|{}:{}|{}|{}:{}|{}:{}|{}|{}|{}|{}:{}|{}|{}|{}|", id.size(), id,
                                   factory.size(), factory, static_cast<int>(kind), when.size(), when,
                                   clear.size(), clear, for_ms, after_ms, to_string(severity), message.size(),
                                   message, keep_firing_for_ms, renotify_ms, to_string(on_missing));
    for (const auto& glob : devices) text += fmt::format("{}:{}|", glob.size(), glob);
    return text;
}

}  // namespace plantd::rules

#include "rules/alert.hpp"

namespace plantd::rules {

std::string_view to_string(AlertState state) {
    switch (state) {
        case AlertState::pending:
            return "pending";
        case AlertState::firing:
            return "firing";
        case AlertState::resolved:
            return "resolved";
    }
    return "resolved";
}

bool parse_alert_state(std::string_view text, AlertState& state) {
    for (AlertState s : {AlertState::pending, AlertState::firing, AlertState::resolved}) {
        if (text == to_string(s)) {
            state = s;
            return true;
        }
    }
    return false;
}

}  // namespace plantd::rules
