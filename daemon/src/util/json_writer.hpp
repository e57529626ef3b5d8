#pragma once
// A small streaming JSON writer for the CLI's --json output: commas and escaping are its job, so that
// every command prints one well-formed document.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace plantd {

class JsonWriter {
  public:
    JsonWriter& begin_object();
    JsonWriter& end_object();
    JsonWriter& begin_array();
    JsonWriter& end_array();
    JsonWriter& key(std::string_view name);
    JsonWriter& string(std::string_view text);  // valid UTF-8
    JsonWriter& number(int64_t value);
    JsonWriter& number(uint64_t value);
    JsonWriter& number(double value);
    JsonWriter& boolean(bool value);
    JsonWriter& null();
    // Text that already is JSON (a value read from a JSON document).
    JsonWriter& raw(std::string_view json);

    JsonWriter& field(std::string_view name, std::string_view text) { return key(name).string(text); }
    JsonWriter& field(std::string_view name, const char* text) { return key(name).string(text); }
    JsonWriter& field(std::string_view name, const std::string& text) { return key(name).string(text); }
    JsonWriter& field(std::string_view name, bool value) { return key(name).boolean(value); }
    JsonWriter& field(std::string_view name, int64_t value) { return key(name).number(value); }
    JsonWriter& field(std::string_view name, uint64_t value) { return key(name).number(value); }
    JsonWriter& field(std::string_view name, int value) { return key(name).number(int64_t{value}); }
    JsonWriter& field(std::string_view name, double value) { return key(name).number(value); }
    template <typename T>
    JsonWriter& field(std::string_view name, const std::optional<T>& value) {
        return value ? field(name, *value) : key(name).null();
    }

    const std::string& text() const { return out_; }

  private:
    void before_value();
    std::string out_;
    std::vector<bool> has_items_;  // one per open object or array
    bool after_key_ = false;
};

}  // namespace plantd
