#include "rules/expression.hpp"

#include <fmt/format.h>
#include <muParser.h>

#include <cmath>
#include <deque>

#include "common/identifiers.hpp"

namespace plantd::rules {

namespace {

constexpr std::string_view name_characters =
    "0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.";

bool is_name_character(char c) {
    return name_characters.find(c) != std::string_view::npos;
}

constexpr std::string_view operator_characters = "+-*/^()<>=!&|?:,";

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// The traps of muparser's grammar that the rule language does not have: `=` (and `+=` ...) assign,
// so `temperature = 85` would be always true; a character that is no operator; and an unquoted name
// with an operator inside (`spindle-rpm` is spindle minus rpm). "" or the problem.
std::string check_operators(std::string_view text) {
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '`') {  // a quoted name: anything goes inside
            const size_t end = text.find('`', i + 1);
            if (end == std::string_view::npos) return {};  // rewrite() reports it
            i = end;
            continue;
        }
        if (is_space(c) || is_name_character(c)) continue;
        if (operator_characters.find(c) == std::string_view::npos)
            return fmt::format("`{}` at position {} is not an operator of the rule language",
                               printable(text.substr(i, 1)), i);
        if (c == '=') {
            const char before = i > 0 ? text[i - 1] : ' ';
            const char after = i + 1 < text.size() ? text[i + 1] : ' ';
            if (after == '=') {
                ++i;  // ==
                continue;
            }
            if (before == '<' || before == '>' || before == '!') continue;  // <= >= !=
            return fmt::format("`=` at position {} assigns; compare with `==`", i);
        }
        if (c == '-' && i > 0 && i + 1 < text.size() && is_name_character(text[i - 1]) &&
            is_name_character(text[i + 1])) {
            // Both sides are names (not numbers: 1e-3 and 2-1 are fine) written without spaces.
            size_t start = i;
            while (start > 0 && is_name_character(text[start - 1])) --start;
            size_t end = i + 1;
            while (end < text.size() && is_name_character(text[end])) ++end;
            const std::string_view left = text.substr(start, i - start);
            const std::string_view right = text.substr(i + 1, end - i - 1);
            auto is_word = [](std::string_view word) {  // not a number: 5, .5, 1e3
                return !word.empty() && !(word[0] >= '0' && word[0] <= '9') && word[0] != '.';
            };
            if (is_word(left) && is_word(right))
                return fmt::format(
                    "`{0}` reads as {1} {2} {3}; write the name in backticks (`` `{0}` ``) or put spaces "
                    "around "
                    "`{2}`",
                    text.substr(start, end - start), left, c, right);
        }
    }
    return {};
}

// Rewrites `quoted names` and rate(name) into placeholder variables (_qN, _rN: metric names cannot
// start with '_', so they never collide) and records what each placeholder stands for.
Result<std::string> rewrite(std::string_view text, std::vector<Expression::Input>& placeholders) {
    std::string out;
    auto read_name = [&](size_t& i, std::string& name) -> std::string {
        if (i < text.size() && text[i] == '`') {
            size_t end = text.find('`', i + 1);
            if (end == std::string_view::npos) return fmt::format("unclosed ` at position {}", i);
            name.assign(text.substr(i + 1, end - i - 1));
            if (!is_valid_metric_name(name))
                return fmt::format("`{}` at position {} is not a valid metric name", printable(name), i);
            i = end + 1;
            return {};
        }
        size_t start = i;
        while (i < text.size() && is_name_character(text[i])) ++i;
        name.assign(text.substr(start, i - start));
        if (name.empty()) return fmt::format("a metric name is expected at position {}", start);
        return {};
    };
    auto skip_spaces = [&](size_t& i) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
            ++i;
    };
    size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (c == '`') {
            std::string name;
            if (auto problem = read_name(i, name); !problem.empty()) return fail(problem);
            out += fmt::format("_q{}", placeholders.size());
            placeholders.push_back({std::move(name), false});
            continue;
        }
        if (is_name_character(c)) {
            size_t start = i;
            while (i < text.size() && is_name_character(text[i])) ++i;
            std::string_view word = text.substr(start, i - start);
            size_t after = i;
            skip_spaces(after);
            if (word == "rate" && after < text.size() && text[after] == '(') {
                size_t j = after + 1;
                skip_spaces(j);
                std::string name;
                if (auto problem = read_name(j, name); !problem.empty())
                    return fail(fmt::format("rate() at position {}: {}", start, problem));
                skip_spaces(j);
                if (j >= text.size() || text[j] != ')')
                    return fail(fmt::format("rate() at position {} takes exactly one metric name", start));
                out += fmt::format("_r{}", placeholders.size());
                placeholders.push_back({std::move(name), true});
                i = j + 1;
                continue;
            }
            out.append(word);
            continue;
        }
        out.push_back(c);
        ++i;
    }
    return out;
}

}  // namespace

struct Expression::Parser {
    mu::Parser parser;
    std::deque<double> slots;  // stable addresses, bound to the parser's variables
    std::vector<Expression::Input> placeholders;
    Expression* owner = nullptr;
    std::string problem;  // a name the variable factory refused
};

Expression::Expression() : parser_(std::make_unique<Parser>()) {}
Expression::~Expression() = default;

Result<std::unique_ptr<Expression>> Expression::compile(std::string_view text) {
    if (text.size() > max_length)
        return fail(fmt::format("expression longer than {} characters", max_length));
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
        return fail(std::string("empty expression"));
    std::unique_ptr<Expression> expression(new Expression());
    expression->text_.assign(text);
    Parser& state = *expression->parser_;
    state.owner = expression.get();
    if (std::string problem = check_operators(text); !problem.empty()) return fail(problem);
    auto rewritten = rewrite(text, state.placeholders);
    if (!rewritten) return fail(rewritten.error());
    try {
        mu::Parser& parser = state.parser;
        parser.DefineNameChars(std::string(name_characters).c_str());
        parser.DefineInfixOprt("!", [](double v) { return v == 0.0 ? 1.0 : 0.0; });
        parser.SetVarFactory(
            [](const char* name, void* user_data) -> double* {
                auto& s = *static_cast<Parser*>(user_data);
                std::string_view var(name);
                Input input;
                if (var.size() > 2 && var[0] == '_' && (var[1] == 'q' || var[1] == 'r')) {
                    size_t index = 0;
                    for (char c : var.substr(2)) index = index * 10 + static_cast<size_t>(c - '0');
                    if (index >= s.placeholders.size()) throw mu::ParserError("unknown placeholder");
                    input = s.placeholders[index];
                } else {
                    if (!is_valid_metric_name(var)) {
                        s.problem = fmt::format("`{}` is not a valid metric name", printable(var));
                        throw mu::ParserError(s.problem);
                    }
                    input.metric.assign(var);
                }
                s.owner->inputs_.push_back(std::move(input));
                s.slots.push_back(0.0);
                return &s.slots.back();
            },
            &state);
        parser.SetExpr(*rewritten);
        parser.GetUsedVar();  // parses now: a syntax error is thrown here, at load
    } catch (const mu::Parser::exception_type& e) {
        if (!state.problem.empty()) return fail(state.problem);
        // Positions refer to the rewritten text; they match the original unless it quoted names.
        return fail(fmt::format("{}", e.GetMsg()));
    }
    return expression;
}

std::optional<bool> Expression::evaluate(const double* values) {
    auto& slots = parser_->slots;
    for (size_t i = 0; i < slots.size(); ++i) slots[i] = values[i];
    double result;
    try {
        result = parser_->parser.Eval();
    } catch (const mu::Parser::exception_type&) {
        return std::nullopt;
    }
    if (std::isnan(result)) return std::nullopt;
    return result != 0.0;
}

}  // namespace plantd::rules
