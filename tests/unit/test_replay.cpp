// The pieces of dead-letter replay that need no server: the inbox between the operator's request and
// the subscriber's thread, the query string, base64, and the CLI's JSON writer.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <thread>

#include "app/dead_letter_replay.hpp"
#include "durability/dead_letter_reader.hpp"
#include "durability/dead_letter_store.hpp"
#include "subscriber/replay_inbox.hpp"
#include "util/json_writer.hpp"

using namespace plantd;

namespace {
std::vector<RawMessage> messages(int count) {
    std::vector<RawMessage> out;
    for (int i = 0; i < count; ++i) out.push_back(RawMessage::make("factory/f/device/d/telemetry", "{}", i));
    return out;
}
}  // namespace

TEST_CASE("replay inbox: what the subscriber takes is reported taken; the rest is withdrawn at the timeout") {
    ReplayInbox inbox;
    const auto tickets = inbox.submit(messages(5));
    REQUIRE(tickets.size() == 5);
    std::thread subscriber([&] {
        std::vector<ReplayInbox::Ticket> taken_tickets;
        auto first = inbox.take(3, taken_tickets);
        CHECK(first.size() == 3);
        CHECK(first[2].received_ms == 2);
        inbox.taken(taken_tickets[0]);
        inbox.refused(taken_tickets[1]);
        // One could not be staged: back to the front, then taken with the next one.
        inbox.put_back({std::move(first[2])}, {taken_tickets[2]});
        std::vector<ReplayInbox::Ticket> again;
        auto second = inbox.take(2, again);
        CHECK(again == std::vector<ReplayInbox::Ticket>{tickets[2], tickets[3]});
        inbox.taken(again[0]);
        inbox.taken(again[1]);
        // tickets[4] is never taken: the operator's wait gives up on it.
    });
    const auto taken = inbox.wait(tickets, 300);
    subscriber.join();
    CHECK(taken == std::set<ReplayInbox::Ticket>{tickets[0], tickets[2], tickets[3]});
    CHECK(inbox.waiting() == 0);  // the one nobody took was withdrawn
    std::vector<ReplayInbox::Ticket> none;
    CHECK(inbox.take(10, none).empty());
}

TEST_CASE("replay query: parsed, printed and parsed again; anything else is refused with the reason") {
    auto request = parse_replay_query("factory=fa&reason=unknown_device&since=5&until=9&limit=7&dry_run=1");
    REQUIRE(request.ok());
    CHECK(request->filter.factory_id == "fa");
    CHECK(request->filter.reason == "unknown_device");
    CHECK(request->filter.since_ms == 5);
    CHECK(request->filter.until_ms == 9);
    CHECK(request->limit == 7);
    CHECK(request->dry_run);
    auto again = parse_replay_query(replay_query(*request));
    REQUIRE(again.ok());
    CHECK(again->filter.factory_id == "fa");
    CHECK(again->limit == 7);
    CHECK(parse_replay_query("limit=999999999")->limit == 100'000);
    CHECK(parse_replay_query("factory=a/b").error().find("not an identifier") != std::string::npos);
    CHECK(parse_replay_query("reason=nosuch").error().find("not a rejection reason") != std::string::npos);
    CHECK(parse_replay_query("since=-1").error().find("since must be a number") != std::string::npos);
    CHECK(parse_replay_query("delete=all").error().find("unknown parameter") != std::string::npos);
}

TEST_CASE("base64 both ways, and text that is not base64") {
    for (std::string bytes : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                              std::string("\x00\xff\x10\x80", 4)}) {
        CAPTURE(bytes.size());
        CHECK(base64_decode(base64_encode(bytes)) == bytes);
    }
    CHECK(base64_decode("AAEC/w==") == std::string("\x00\x01\x02\xff", 4));
    CHECK_FALSE(base64_decode("abc").has_value());
    CHECK_FALSE(base64_decode("ab=c").has_value());
    CHECK_FALSE(base64_decode("a*==").has_value());
}

TEST_CASE("a stored dead letter read back: ids, base64 payloads, and what cannot be replayed") {
    simdjson::dom::parser parser;
    const auto letter = parse_dead_letter(
        R"({"id":"x1","time":"2026-12-01T10:00:00.123Z","kind":"message","topic":"","topic_base64":"dA==","factory_id":"f","reason":"malformed_json","detail":"d","payload_base64":"AAE="})",
        parser);
    REQUIRE(letter.has_value());
    CHECK(letter->id == "x1");
    CHECK(letter->time_ms == 1'796'119'200'123);
    CHECK(letter->topic == "t");
    CHECK(letter->payload == std::string("\x00\x01", 2));
    CHECK(letter->payload_whole);
    const auto old = parse_dead_letter(
        R"({"time":"2026-12-01T10:00:00Z","reason":"payload_too_large","payload":"x"})", parser);
    REQUIRE(old.has_value());
    CHECK(old->id.starts_with("h"));  // an entry from before ids: named by a hash of its line
    CHECK_FALSE(old->payload_whole);
    CHECK_FALSE(parse_dead_letter("{not json", parser).has_value());
    CHECK_FALSE(parse_dead_letter("[1,2]", parser).has_value());
}

TEST_CASE("json writer: commas, nesting, escaping, null and numbers") {
    JsonWriter w;
    w.begin_object().field("a", "x\"y\n").field("n", int64_t{-3}).key("list").begin_array();
    w.number(uint64_t{1}).boolean(false).null().begin_object().end_object().end_array();
    w.key("opt").null().field("d", 0.5).end_object();
    CHECK(w.text() == R"({"a":"x\"y\n","n":-3,"list":[1,false,null,{}],"opt":null,"d":0.5})");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    CHECK(parser.parse(w.text()).get(doc) == simdjson::SUCCESS);
}

TEST_CASE("dead letters that cannot be replayed: no payload, no time, an id that is not plain") {
    simdjson::dom::parser parser;
    const auto no_payload = parse_dead_letter(
        R"({"id":"a1","time":"2026-12-01T10:00:00Z","kind":"message","topic":"t","reason":"malformed_json"})",
        parser);
    REQUIRE(no_payload.has_value());
    CHECK_FALSE(no_payload->payload_whole);
    const auto bad_base64 = parse_dead_letter(
        R"({"id":"a2","time":"2026-12-01T10:00:00Z","topic":"t","payload_base64":"***"})", parser);
    REQUIRE(bad_base64.has_value());
    CHECK_FALSE(bad_base64->payload_whole);
    const auto no_time = parse_dead_letter(R"({"id":"a3","topic":"t","payload":"{}"})", parser);
    REQUIRE(no_time.has_value());
    CHECK_FALSE(no_time->payload_whole);
    const auto odd_id = parse_dead_letter(
        R"({"id":"x\ny","time":"2026-12-01T10:00:00Z","topic":"t","payload":"{}"})", parser);
    REQUIRE(odd_id.has_value());
    CHECK(odd_id->id.starts_with("h"));  // never a newline into the marks file
    CHECK(odd_id->payload_whole);
}

TEST_CASE("replay inbox: closed at a stop, a wait returns at once with nothing taken") {
    ReplayInbox inbox;
    const auto tickets = inbox.submit(messages(3));
    std::thread stopper([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        inbox.close();
    });
    const auto start = std::chrono::steady_clock::now();
    const auto taken = inbox.wait(tickets, 60'000);
    stopper.join();
    CHECK(taken.empty());
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    CHECK(inbox.waiting() == 0);
}
