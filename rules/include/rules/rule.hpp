#pragma once
// A rule as written in a rule file (CONTRACT §6), checked but not compiled.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace plantd::rules {

enum class Severity : uint8_t { info, warning, major, critical };
enum class RuleKind : uint8_t { threshold, deadman };
// What a threshold rule does when an input is missing (never sent, or older than value_ttl) or not a
// number: keep its state, resolve its alert, or take the condition as not holding.
enum class OnMissing : uint8_t { keep, resolve, absent };

std::string_view to_string(OnMissing policy);

std::string_view to_string(Severity severity);
bool parse_severity(std::string_view text, Severity& severity);

// The factory scope that means "every factory, state kept per factory".
inline constexpr std::string_view every_factory = "*";

struct RuleDefinition {
    std::string id;
    std::string factory;               // an identifier, or "*"
    std::vector<std::string> devices;  // globs on device_id; empty = every device
    RuleKind kind = RuleKind::threshold;
    std::string when;                // threshold: fires while true
    std::string clear;               // threshold: resolves once true (hysteresis); "" = when `when` is false
    int64_t for_ms = 0;              // threshold: `when` must hold this long before the alert fires
    int64_t after_ms = 0;            // deadman: silence this long fires
    int64_t keep_firing_for_ms = 0;  // threshold: a firing alert whose condition cleared resolves after this
    int64_t renotify_ms = 0;  // a firing alert not acknowledged is announced again this often (0: never)
    OnMissing on_missing = OnMissing::keep;
    Severity severity = Severity::warning;
    std::string message;
    std::string source;   // the file, for messages
    std::string when_at;  // "file.toml:4:8": where `when` and `clear` were written, for messages
    std::string clear_at;

    // The whole definition as text: equal fingerprints = an unchanged rule across a reload.
    std::string fingerprint() const;
};

}  // namespace plantd::rules
