#pragma once
// A rule expression compiled once, at load (muparser bytecode), so that a typo is a load error.
//
// Syntax: muparser's arithmetic, comparisons, && || ! ?: and functions (abs, sqrt, min, max, ...).
// Metric names are used as they are when they consist of letters, digits, '_' and '.'; any other
// metric name is quoted in backticks (`spindle-rpm`). rate(metric) is the metric's change per second
// between the device's last two samples. Every name that is not a function or constant is a metric.
//
// Not thread-safe: evaluation writes the parser's stack. Each evaluating thread compiles its own.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace plantd::rules {

class Expression {
  public:
    struct Input {
        std::string metric;
        bool rate = false;  // rate(metric) rather than the value
    };

    static constexpr size_t max_length = 4096;

    // The error names the problem and its position in the text.
    static Result<std::unique_ptr<Expression>> compile(std::string_view text);
    ~Expression();
    Expression(const Expression&) = delete;
    Expression& operator=(const Expression&) = delete;

    const std::string& text() const { return text_; }
    // What evaluate() needs, in order; the same metric appears once as value and once as rate at most.
    const std::vector<Input>& inputs() const { return inputs_; }
    // values[i] belongs to inputs()[i]. True when the result is non-zero; nullopt when it is not a
    // number (0/0, sqrt(-1)): the condition is then unknown.
    std::optional<bool> evaluate(const double* values);

  private:
    Expression();
    struct Parser;
    std::string text_;
    std::vector<Input> inputs_;
    std::unique_ptr<Parser> parser_;
};

}  // namespace plantd::rules
