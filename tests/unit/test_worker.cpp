// The worker on fakes: a registry that answers as the test says (Admission) and a sink that keeps the
// batches (BatchSink). Admission, held messages, per-device order, hand-off and accounting, with no
// server and no writer thread.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "config/config.hpp"
#include "control/accounting.hpp"
#include "control/rate_limited_log.hpp"
#include "durability/dead_letter_store.hpp"
#include "pipeline/ingest_queue.hpp"
#include "pipeline/worker.hpp"
#include "util/clock.hpp"

using namespace plantd;
using namespace std::chrono_literals;

namespace {

class FakeSink final : public BatchSink {
  public:
    void submit(Batch batch) override {
        std::lock_guard lock(mutex_);
        ++batches_;
        for (size_t i = 0; i < batch.lines(); ++i) {
            lines_.emplace_back(batch.line(i));
            topics_.emplace_back(batch.topic_of(i));
        }
    }
    std::vector<std::string> topics() const {
        std::lock_guard lock(mutex_);
        return topics_;
    }
    int64_t heartbeat_ms() const override { return steady_clock_ms(); }
    bool ready_for(std::string_view) const override { return ready.load(); }
    std::atomic<bool> ready{true};  // as a writer with nothing to send
    size_t batches() const {
        std::lock_guard lock(mutex_);
        return batches_;
    }
    std::vector<std::string> lines() const {
        std::lock_guard lock(mutex_);
        return lines_;
    }

  private:
    mutable std::mutex mutex_;
    size_t batches_ = 0;
    std::vector<std::string> lines_;
    std::vector<std::string> topics_;
};

// A registry whose snapshot and answers the test sets.
class FakeAdmission final : public Admission {
  public:
    explicit FakeAdmission(std::shared_ptr<RegistrySnapshot> snapshot) { replace(std::move(snapshot)); }
    void replace(std::shared_ptr<RegistrySnapshot> snapshot) {
        recount_devices(*snapshot);
        std::lock_guard lock(mutex_);
        snapshot_ = std::move(snapshot);
        ++generation_;
    }
    void set_lookup(LookupAnswer answer) {
        std::lock_guard lock(mutex_);
        lookup_ = answer;
    }
    void set_parameter(ParameterAnswer answer) {
        std::lock_guard lock(mutex_);
        parameter_ = answer;
    }
    std::shared_ptr<const RegistrySnapshot> snapshot() const override {
        std::lock_guard lock(mutex_);
        return snapshot_;
    }
    bool ready() const override { return true; }
    uint64_t generation() const override {
        std::lock_guard lock(mutex_);
        return generation_;
    }
    LookupAnswer unknown_device(std::string_view, std::string_view) override {
        std::lock_guard lock(mutex_);
        return lookup_;
    }
    bool request_auto_register(std::string_view, std::string_view) override { return true; }
    ParameterAnswer discover_parameter(std::string_view, std::string_view, FieldKind,
                                       std::string_view) override {
        std::lock_guard lock(mutex_);
        return parameter_;
    }
    size_t pending_lookups() const override { return 0; }
    void count_memory_hits(uint64_t n) override { memory_hits += n; }
    uint64_t memory_hits = 0;

  private:
    mutable std::mutex mutex_;
    std::shared_ptr<const RegistrySnapshot> snapshot_;
    uint64_t generation_ = 0;
    LookupAnswer lookup_ = LookupAnswer::pending;
    ParameterAnswer parameter_{ParameterAnswer::State::typed, ParameterType::float_number};
};

// Factory f1 with the given devices, each with parameter "t" (float).
std::shared_ptr<RegistrySnapshot> registry_with(std::initializer_list<const char*> devices,
                                                std::initializer_list<const char*> parameters = {"t"}) {
    auto factory = std::make_shared<RegistryFactory>();
    for (const char* device : devices) factory->devices[device] = RegistryDevice{};
    for (const char* parameter : parameters)
        factory->parameters.emplace(parameter, RegistryParameter(ParameterType::float_number, "", 0));
    auto snapshot = std::make_shared<RegistrySnapshot>();
    snapshot->factories.emplace("f1", std::move(factory));
    return snapshot;
}

// One worker with its queue, dead-letter store and fakes, as the daemon wires them.
struct Bench {
    std::string dir;
    Config config;
    TopicRouter router;
    IngestQueue queue{1, 1000, 1 << 20};
    Accounting metrics;
    RateLimitedLog log{1s};
    std::unique_ptr<DeadLetterStore> dead_letters;
    FakeSink sink;
    FieldTypes field_types;
    std::unique_ptr<Worker> worker;

    static TopicRouter router_of(const Config& config) {
        return TopicRouter(*TopicTemplate::parse(config.mqtt.device_topic, TopicKind::device),
                           *TopicTemplate::parse(config.mqtt.gateway_topic, TopicKind::gateway));
    }
    explicit Bench(Admission* admission, const std::string& config_text = "", RecordFeed* rules = nullptr)
        : dir(make_dir()), config(*load_config_text(config_text, "test.toml")), router(router_of(config)) {
        dead_letters = std::move(*DeadLetterStore::open(dir + "/dl.jsonl", 1 << 20));
        WorkerServices services{.config = config,
                                .router = router,
                                .queue = queue,
                                .accounting = metrics,
                                .dead_letters = *dead_letters,
                                .log = log,
                                .registry = admission,
                                .rules = rules,
                                .field_types = &field_types};
        worker = std::make_unique<Worker>(0, services, sink);
        worker->start();
    }
    ~Bench() {
        finish();
        std::filesystem::remove_all(dir);
    }
    static std::string make_dir() {
        char path[] = "/tmp/plantd-worker-XXXXXX";
        REQUIRE(::mkdtemp(path) != nullptr);
        return path;
    }
    void publish(const std::string& device, const std::string& payload, bool replayed = false) {
        RawMessage message =
            RawMessage::make("factory/f1/device/" + device + "/telemetry", payload, wall_clock_ms());
        message.replayed = replayed;
        REQUIRE(queue.push(message, 1s) == IngestQueue::PushStatus::pushed);
    }
    void finish() {
        if (!worker) return;
        queue.close();
        worker->join();
        worker.reset();
    }
    template <class Condition>
    bool eventually(Condition condition) {
        for (int i = 0; i < 200; ++i) {
            if (condition()) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    size_t dead_letter_count() const {
        std::ifstream in(dir + "/dl.jsonl");
        size_t n = 0;
        for (std::string line; std::getline(in, line);) ++n;
        return n;
    }
};

// The records the worker hands to the rules, by device.
class FakeRuleFeed final : public RecordFeed {
  public:
    std::unique_ptr<RecordFeedPort> open_port() override { return std::make_unique<Port>(*this); }
    std::vector<std::string> devices() const {
        std::lock_guard lock(mutex_);
        return devices_;
    }

  private:
    class Port final : public RecordFeedPort {
      public:
        explicit Port(FakeRuleFeed& feed) : feed_(feed) {}
        void offer(std::string_view, const DecodedMessage& message, int64_t) override {
            std::lock_guard lock(feed_.mutex_);
            for (const auto& record : message.records) feed_.devices_.emplace_back(record.device_id);
        }

      private:
        FakeRuleFeed& feed_;
    };
    mutable std::mutex mutex_;
    std::vector<std::string> devices_;
};

}  // namespace

TEST_CASE("worker: a message replayed from the write-ahead log is written but not evaluated again") {
    FakeRuleFeed rules;
    Bench bench(nullptr, "", &rules);
    bench.publish("d1", R"({"ts": 1700000000000, "metrics": {"t": 1}})", true);
    bench.publish("d2", R"({"ts": 1700000000001, "metrics": {"t": 2}})");
    bench.finish();
    CHECK(bench.sink.lines().size() == 2);
    CHECK((rules.devices() == std::vector<std::string>{"d2"}));
}

TEST_CASE(
    "worker without a registry: a field of another type than first seen is rejected alone, the rest "
    "written") {
    Bench bench(nullptr);
    bench.publish("d1", R"({"ts": 1700000000000, "metrics": {"t": 21.5, "mode": "auto"}})");
    bench.publish("d2", R"({"ts": 1700000000001, "metrics": {"t": "hot", "mode": "manual", "ok": true}})");
    bench.publish("d3", R"({"ts": 1700000000002, "metrics": {"mode": 3}})");  // nothing left: the record goes
    bench.finish();
    const auto lines = bench.sink.lines();
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "telemetry,device_id=d1,factory_id=f1 t=21.5,mode=\"auto\" 1700000000000\n");
    CHECK(lines[1] == "telemetry,device_id=d2,factory_id=f1 mode=\"manual\",ok=true 1700000000001\n");
    CHECK(bench.metrics.rejected(RejectScope::field, RejectReason::invalid_field) ==
          1);  // d2 t (d3: the message)
    CHECK(bench.metrics.rejected(RejectScope::message, RejectReason::invalid_field) == 1);
    CHECK(bench.metrics.messages_accepted.load() == 2);
    CHECK(bench.dead_letter_count() == 2);  // d2's partial, d3's message, each with its topic
    std::ifstream in(bench.dir + "/dl.jsonl");
    std::string letters((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(letters.find("field t was first written to plantd as a number; this value is a string") !=
          std::string::npos);
    CHECK(letters.find(R"("topic":"factory/f1/device/d2/telemetry")") != std::string::npos);
}

TEST_CASE("worker: a valid message becomes one line; malformed JSON is rejected and kept") {
    Bench bench(nullptr);
    bench.publish("d1", R"({"ts": 1700000000000, "metrics": {"t": 21.5}})");
    bench.publish("d1", R"({"ts": 1700000000001, "metrics": )");
    bench.finish();
    const auto lines = bench.sink.lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "telemetry,device_id=d1,factory_id=f1 t=21.5 1700000000000\n");
    CHECK(bench.metrics.messages_accepted.load() == 1);
    CHECK(bench.metrics.rejected(RejectScope::message, RejectReason::malformed_json) == 1);
    CHECK(bench.dead_letter_count() == 1);
}

TEST_CASE(
    "worker: an unknown device is held with the device's next message, then both are written in order") {
    FakeAdmission registry(registry_with({"d1"}));
    Bench bench(&registry);
    bench.publish("d2", R"({"ts": 1700000000000, "metrics": {"t": 1}})");
    bench.publish("d2", R"({"ts": 1700000000001, "metrics": {"t": 2}})");
    bench.publish("d1", R"({"ts": 1700000000002, "metrics": {"t": 3}})");  // another device flows
    // Both d2 messages held and d1 written, before the registry answers (order of the output below).
    REQUIRE(bench.eventually(
        [&] { return bench.worker->held() == 2 && bench.metrics.messages_accepted.load() == 1; }));
    registry.replace(registry_with({"d1", "d2"}));  // the lookup found d2
    REQUIRE(bench.eventually([&] { return bench.worker->held() == 0; }));
    bench.finish();
    const auto lines = bench.sink.lines();
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "telemetry,device_id=d1,factory_id=f1 t=3 1700000000002\n");
    CHECK(lines[1] == "telemetry,device_id=d2,factory_id=f1 t=1 1700000000000\n");
    CHECK(lines[2] == "telemetry,device_id=d2,factory_id=f1 t=2 1700000000001\n");
    CHECK(bench.metrics.messages_accepted.load() == 3);
    CHECK(bench.dead_letter_count() == 0);
}

TEST_CASE("worker: what the registry refuses is rejected with its reason, and counted") {
    FakeAdmission registry(registry_with({"d1"}));
    SUBCASE("unknown device") {
        registry.set_lookup(LookupAnswer::unknown);
        Bench bench(&registry);
        bench.publish("d9", R"({"metrics": {"t": 1}})");
        bench.finish();
        CHECK(bench.sink.lines().empty());
        CHECK(bench.metrics.rejected(RejectScope::message, RejectReason::unknown_device) == 1);
        CHECK(bench.dead_letter_count() == 1);
    }
    SUBCASE("too many lookups waiting") {
        registry.set_lookup(LookupAnswer::overflow);
        Bench bench(&registry);
        bench.publish("d9", R"({"metrics": {"t": 1}})");
        bench.finish();
        CHECK(bench.metrics.rejected(RejectScope::message, RejectReason::registry_unavailable) == 1);
    }
    SUBCASE("an unregistered factory") {
        Bench bench(&registry);
        RawMessage message =
            RawMessage::make("factory/f2/device/d1/telemetry", R"({"metrics": {"t": 1}})", 0);
        REQUIRE(bench.queue.push(message, 1s) == IngestQueue::PushStatus::pushed);
        bench.finish();
        CHECK(bench.metrics.rejected(RejectScope::message, RejectReason::unknown_factory) == 1);
    }
}

TEST_CASE("worker: a new parameter waits for its type; a value of another type is rejected on its own") {
    FakeAdmission registry(registry_with({"d1"}));
    registry.set_parameter(ParameterAnswer{ParameterAnswer::State::pending, ParameterType::float_number});
    Bench bench(&registry);
    bench.publish("d1", R"({"ts": 1700000000000, "metrics": {"t": 1, "mode": "auto"}})");
    REQUIRE(bench.eventually([&] { return bench.worker->held() == 1; }));
    // MySQL recorded "mode" as a boolean (another instance saw true first): "auto" does not fit.
    auto recorded = registry_with({"d1"});
    auto factory = std::make_shared<RegistryFactory>(*recorded->factories.at("f1"));
    factory->parameters.emplace("mode", RegistryParameter(ParameterType::boolean, "", 0));
    recorded->factories["f1"] = factory;
    registry.replace(recorded);
    REQUIRE(bench.eventually([&] { return bench.worker->held() == 0; }));
    bench.finish();
    const auto lines = bench.sink.lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "telemetry,device_id=d1,factory_id=f1 t=1 1700000000000\n");
    CHECK(bench.metrics.rejected(RejectScope::field, RejectReason::invalid_field) == 1);
    CHECK(bench.dead_letter_count() == 1);  // the partly rejected message, with its payload
}

TEST_CASE("worker: messages counted per factory; an invalid id in the topic is quoted in the rejection") {
    Bench bench(nullptr);
    auto push = [&](const std::string& topic, const std::string& payload) {
        RawMessage message = RawMessage::make(topic, payload, wall_clock_ms());
        REQUIRE(bench.queue.push(message, 1s) == IngestQueue::PushStatus::pushed);
    };
    push("factory/f1/device/d1/telemetry", R"({"metrics": {"t": 1}})");
    push("factory/f1/device/d1/telemetry", R"({"metrics": )");  // rejected, still f1's
    push("factory/f2/device/d1/telemetry", R"({"metrics": {"t": 2}})");
    push("factory/f 3/device/d1/telemetry", R"({"metrics": {"t": 3}})");
    push("factory/f2/device/d$1/telemetry", R"({"metrics": {"t": 4}})");
    bench.finish();
    CHECK(bench.metrics.factory_messages("f1") == 2);
    CHECK(bench.metrics.factory_messages("f2") == 2);
    CHECK(bench.metrics.factory_messages("") == 1);  // no factory could be read: "_none"
    CHECK(bench.metrics.factory_messages("f 3") == 0);
    std::ifstream in(bench.dir + "/dl.jsonl");
    std::string letters((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(letters.find(R"(factory_id \"f 3\" in the topic is not a valid identifier)") != std::string::npos);
    CHECK(letters.find(R"(device_id \"d$1\" in the topic is not a valid identifier)") != std::string::npos);
}

TEST_CASE("worker: each line handed to the writer keeps the topic of its message") {
    Bench bench(nullptr);
    bench.publish(
        "d1", R"([{"ts": 1700000000000, "metrics": {"t": 1}}, {"ts": 1700000000001, "metrics": {"t": 2}}])");
    bench.publish("d2", R"({"ts": 1700000000002, "metrics": {"t": 3}})");
    bench.finish();
    const auto topics = bench.sink.topics();
    CHECK(topics == std::vector<std::string>{"factory/f1/device/d1/telemetry",
                                             "factory/f1/device/d1/telemetry",
                                             "factory/f1/device/d2/telemetry"});
}

TEST_CASE("worker without a registry: only the factories in allowed_factories are accepted") {
    Bench bench(nullptr, "[ingest]\nallowed_factories = [\"f1\"]\n");
    bench.publish("d1", R"({"metrics": {"t": 1}})");
    RawMessage other =
        RawMessage::make("factory/f9/device/d1/telemetry", R"({"metrics": {"t": 2}})", wall_clock_ms());
    REQUIRE(bench.queue.push(other, 1s) == IngestQueue::PushStatus::pushed);
    bench.finish();
    CHECK(bench.sink.lines().size() == 1);
    CHECK(bench.metrics.rejected(RejectScope::message, RejectReason::unknown_factory) == 1);
    CHECK(bench.metrics.factory_messages("_unregistered") == 1);
    std::ifstream in(bench.dir + "/dl.jsonl");
    std::string letters((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(letters.find("factory f9 is not in [ingest] allowed_factories") != std::string::npos);
    CHECK(letters.find(R"("topic":"factory/f9/device/d1/telemetry")") != std::string::npos);
}

TEST_CASE(
    "worker: an open batch goes after its linger while the writer is free, and fills while it is busy") {
    Bench bench(nullptr,
                "[influxdb]\nbatch_linger = \"5ms\"\nflush_interval = \"10s\"\nbatch_max_lines = 1000\n");
    const auto sent = std::chrono::steady_clock::now();
    bench.publish("d1", R"({"ts": 1700000000000, "metrics": {"t": 1}})");
    REQUIRE(bench.eventually([&] { return bench.sink.lines().size() == 1; }));
    // Well before the flush interval: the writer had nothing to send.
    CHECK(std::chrono::steady_clock::now() - sent < 1s);

    bench.sink.ready = false;  // the writer is busy: lines gather in one batch
    for (int i = 0; i < 50; ++i)
        bench.publish("d1", fmt::format(R"({{"ts": {}, "metrics": {{"t": 1}}}})", 1700000000001 + i));
    std::this_thread::sleep_for(300ms);
    CHECK(bench.sink.lines().size() == 1);
    CHECK(bench.sink.batches() == 1);
    bench.sink.ready = true;  // free again: the 50 go at once, as one batch
    REQUIRE(bench.eventually([&] { return bench.sink.lines().size() == 51; }));
    CHECK(bench.sink.batches() == 2);
}
