// Fuzzes what the dead-letter tools read: a line of the store (any bytes), a replay request's query
// string, base64 both ways, and the JSON the CLI writes from whatever a letter held.
#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "app/dead_letter_replay.hpp"
#include "durability/dead_letter_reader.hpp"
#include "durability/dead_letter_store.hpp"
#include "util/json_writer.hpp"

using namespace plantd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    static simdjson::dom::parser parser;
    // "query\nline": the first line as a replay query, the rest as a store line.
    const auto split = input.find('\n');
    const std::string_view query = input.substr(0, split);
    const std::string_view line = split == std::string_view::npos ? input : input.substr(split + 1);
    if (auto request = parse_replay_query(query)) {
        // What it parsed, printed and parsed again, is the same request.
        auto again = parse_replay_query(replay_query(*request));
        if (!again || again->filter.factory_id != request->filter.factory_id ||
            again->filter.reason != request->filter.reason || again->limit != request->limit ||
            again->dry_run != request->dry_run || again->filter.since_ms != request->filter.since_ms ||
            again->filter.until_ms != request->filter.until_ms)
            std::abort();
    }
    if (auto letter = parse_dead_letter(line, parser)) {
        // The CLI's JSON of what the letter held is valid JSON whenever the text is UTF-8.
        JsonWriter w;
        w.begin_object().field("id", letter->id).field("factory_id", letter->factory_id);
        w.field("reason", letter->reason).field("detail", letter->detail).end_object();
        simdjson::dom::element doc;
        if (parser.parse(w.text()).get(doc) != simdjson::SUCCESS) std::abort();
    }
    const std::string encoded = base64_encode(input);
    auto decoded = base64_decode(encoded);
    if (!decoded || *decoded != input) std::abort();
    (void)base64_decode(input);
    return 0;
}
