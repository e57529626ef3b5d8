// Several plantd as one service, against the real mosquitto and Redis: three instances on one shared
// subscription, 30 factories under load with rules, an owner killed in the middle of a `for`, a
// member stopped, the killed one back, Redis restarted. Every point lands once in InfluxDB, and each
// expected (factory, device, rule) fires once and resolves once, as a subscriber on the alert topics
// sees it; no dead-man alert fires because of a hand-over.
#include <doctest/doctest.h>

#include <fmt/ranges.h>

#include <csignal>
#include <map>
#include <set>

#include "alerting/alert_state_store.hpp"
#include "cluster/cluster_node.hpp"
#include "cluster/lease_store.hpp"
#include "config/config.hpp"
#include "rules_world.hpp"

namespace {

constexpr int factories = 30;

std::string factory_name(int i) {
    return fmt::format("f{:02}", i);
}

struct ClusterWorld {
    TempDir dir;
    PrivateRedis redis{dir.path(), free_port(), true};
    std::string influx_db = unique_name("itest_cluster");
    std::string prefix = unique_name("cl");
    std::string redis_prefix = unique_name("cp");
    std::string group = unique_name("g");
    std::string rules_dir = dir.path() + "/rules";
    std::string cli_config = dir.path() + "/cli.toml";

    struct Member {
        std::string name;
        TempDir dir;
        int port = free_port();
        std::string config;
        std::unique_ptr<PlantdProcess> process;
        int runs = 0;
    };
    std::vector<std::unique_ptr<Member>> members;

    ClusterWorld() {
        redis.start();
        std::filesystem::create_directories(rules_dir);
        std::ofstream(rules_dir + "/plant.toml") << R"([[rule]]
id = "hot"
when = "temperature > 50"
clear = "temperature < 40"
for = "4s"

[[rule]]
id = "silent"
kind = "deadman"
after = "4s"
)";
        for (int i = 0; i < 3; ++i) add_member();
        std::ofstream(cli_config) << members[0]->config;
    }
    ~ClusterWorld() {
        try {
            influx_command("DROP DATABASE \"" + influx_db + "\"");
        } catch (...) {
        }
    }
    Member& add_member() {
        auto member = std::make_unique<Member>();
        member->name = unique_name("member");
        member->config = base_config(
            member->name, prefix, influx_db, member->port, member->dir.path() + "/dl.jsonl",
            fmt::format("[registry]\nredis_host = \"127.0.0.1\"\nredis_port = {}\nredis_prefix = \"{}\"\n"
                        "[rules]\ndirectory = \"{}\"\nwatch_interval = \"0s\"\nstartup_grace = \"2s\"\n"
                        "seen_flush_interval = \"500ms\"\n"
                        "alert_topic = \"{}/factory/{{factory_id}}/alerts/{{device_id}}\"\n"
                        "[cluster]\nenabled = true\nlease = \"3s\"\n",
                        redis.port(), redis_prefix, rules_dir, prefix));
        const std::string mqtt = "[mqtt]\n";
        member->config.replace(member->config.find(mqtt), mqtt.size(),
                               fmt::format("[mqtt]\nversion = 5\nshared_group = \"{}\"\n", group));
        members.push_back(std::move(member));
        return *members.back();
    }
    void start(Member& member) {
        member.process = std::make_unique<PlantdProcess>(member.dir.path(), member.config, member.port,
                                                         fmt::format("run{}.log", ++member.runs));
        REQUIRE_MESSAGE(member.process->wait_ready(30s), member.process->log());
    }
    std::string topic(int factory, int device) const {
        return fmt::format("{}/factory/{}/device/d{}/telemetry", prefix, factory_name(factory), device);
    }
    // Factories owned per running member, from their metrics.
    std::vector<double> owned() const {
        std::vector<double> out;
        for (const auto& member : members)
            if (member->process && member->process->running())
                out.push_back(member->process->metric("plantd_cluster_factories_owned"));
        return out;
    }
    bool all_owned(size_t running_members) const {
        auto counts = owned();
        double total = 0;
        for (double n : counts) total += n;
        return counts.size() == running_members && total == factories;
    }
    std::string logs() const {
        std::string out;
        for (const auto& member : members)
            for (int run = 1; run <= member->runs; ++run) {
                std::ifstream in(fmt::format("{}/run{}.log", member->dir.path(), run));
                out += fmt::format("{} run {}:\n{}\n", member->name, run,
                                   std::string(std::istreambuf_iterator<char>(in), {}));
            }
        return out;
    }
};

}  // namespace

TEST_CASE("cluster: a lease is taken once, renewed and given back only by its holder, and fences the state") {
    TempDir dir;
    PrivateRedis redis(dir.path(), free_port());
    redis.start();
    auto loaded = plantd::load_config_text(
        fmt::format("instance = \"a\"\n[mqtt]\nuri = \"{}\"\nversion = 5\nshared_group = "
                    "\"g\"\n[registry]\nredis_host = \"127.0.0.1\"\n"
                    "redis_port = {}\nredis_prefix = \"p\"\n[rules]\ndirectory = \"{}\"\n[cluster]\n"
                    "enabled = true\nlease = \"2s\"\n",
                    mqtt_uri(), redis.port(), dir.path()),
        "test.toml");
    REQUIRE_MESSAGE(loaded, loaded.error());
    const plantd::Config config = *loaded;
    plantd::LeaseStore store(config.registry);
    auto first = store.acquire("fa", "a", 60'000);
    REQUIRE(first);
    REQUIRE(*first);
    CHECK(**first == 1);
    auto second = store.acquire("fa", "b", 60'000);
    REQUIRE(second);
    CHECK(!*second);  // held
    CHECK(redis.cli("GET p:cluster:{fa}:owner") == "a 1\n");
    // Only the holder renews, and only with its own token.
    auto renewed = store.renew({{"fa", 1}, {"fa", 2}}, "a", 60'000);
    REQUIRE(renewed);
    CHECK(*renewed == std::vector<bool>{true, false});
    renewed = store.renew({{"fa", 1}}, "b", 60'000);
    REQUIRE(renewed);
    CHECK(*renewed == std::vector<bool>{false});
    // A stale owner (an older token) cannot write the factory's state; the holder can.
    plantd::AlertStateStore state(config.registry);
    const plantd::rules::DeviceSeen seen{"fa", "d1", 1234, ""};
    std::string problem;
    CHECK(state.save_fenced("fa", "a 0", {}, {seen}, "1-1", problem) ==
          plantd::AlertStateStore::Fenced::not_owner);
    CHECK(redis.cli("HGET p:rules:{fa}:seen d1") == "\n");
    CHECK(state.save_fenced("fa", "a 1", {}, {seen}, "1-1", problem) ==
          plantd::AlertStateStore::Fenced::saved);
    CHECK(redis.cli("HGET p:rules:{fa}:seen d1") == "1234\n");
    std::string position;
    auto back = state.load_factory("fa", position);
    REQUIRE(back);
    CHECK(back->seen.size() == 1);
    CHECK(position == "1-1");
    // Given back only by its holder; then the next taker gets a new token.
    CHECK(store.release("fa", "b", 1).empty());
    CHECK(redis.cli("EXISTS p:cluster:{fa}:owner") == "1\n");
    CHECK(store.release("fa", "a", 1).empty());
    auto third = store.acquire("fa", "b", 60'000);
    REQUIRE(third);
    REQUIRE(*third);
    CHECK(**third == 2);

    // A member cut off from Redis stops acting as owner before its lease (2 s) can expire, by its own
    // clock: its last renewal was at most a heartbeat (400 ms) before Redis went, and it gives up a
    // quarter of the lease early, so "lost" comes within 1.5 s.
    CHECK(store.add_factories({"fb"}).empty());
    plantd::ClusterNode node(config, {});
    node.start();
    uint64_t fb_token = 0;
    REQUIRE(eventually(
        [&] {
            for (const auto& change : node.take_changes())
                if (change.kind == plantd::OwnershipChange::Kind::acquired && change.factory == "fb")
                    fb_token = change.token;
            return fb_token != 0;
        },
        10s));
    // A refused write under another token (here a newer one than held) gives up only that lease.
    node.given_up("fb", fb_token + 1);
    CHECK((node.owned() == std::vector<std::string>{"fb"}));
    // `plantd cluster status` names the holders and the member.
    const std::string config_path = dir.path() + "/cli.toml";
    std::ofstream(config_path) << fmt::format(
        "[mqtt]\nuri = \"{}\"\n[registry]\nredis_host = \"127.0.0.1\"\nredis_port = {}\nredis_prefix = "
        "\"p\"\n",
        mqtt_uri(), redis.port());
    int code = -1;
    const std::string status = run_command(
        fmt::format("{} --config {} cluster status --json 2>&1", PLANTD_BINARY, config_path), code);
    CHECK(code == 0);
    CHECK_MESSAGE(status.find(R"({"factory_id":"fa","owner":"b","token":2)") != std::string::npos, status);
    CHECK_MESSAGE(status.find(R"({"factory_id":"fb","owner":"a","token":1)") != std::string::npos, status);
    CHECK_MESSAGE(status.find(R"("instance":"a")") != std::string::npos, status);
    redis.stop();
    const auto cut = std::chrono::steady_clock::now();
    bool lost = false;
    while (!lost && std::chrono::steady_clock::now() - cut < 5s) {
        for (const auto& change : node.take_changes())
            lost |= change.kind == plantd::OwnershipChange::Kind::lost && change.factory == "fb";
        std::this_thread::sleep_for(20ms);
    }
    const auto after = std::chrono::steady_clock::now() - cut;
    CHECK(lost);
    CHECK(after < 1600ms);  // and the lease itself lasts at least 2 s past that renewal
    CHECK(node.owned().empty());
    node.stop();
}

TEST_CASE(
    "cluster: three instances, 30 factories; owner killed mid-`for`, a member stopped, Redis "
    "restarted: every point once, every alert once") {
    ClusterWorld world;
    AlertListener listener(world.prefix);
    for (auto& member : world.members) world.start(*member);

    // Two devices per factory, every 200 ms, each message with its own seq for the exact count.
    std::atomic<int> hot_device{-1};  // the device index that reads 60 degrees, -1: none
    std::atomic<long> published{0};
    // Each message has its own time: a backlog delivered at once must not share a timestamp.
    Repeating publishing(200ms, [&](Publisher& publisher) {
        const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        for (int f = 0; f < factories; ++f)
            for (int d = 0; d < 2; ++d)
                publisher.publish(world.topic(f, d),
                                  fmt::format(R"({{"ts": {}, "metrics": {{"temperature": {}, "seq": {}}}}})",
                                              now, hot_device == d ? 60 : 20, published++));
    });
    // The factories are known from their first records; then each member owns its fair share.
    REQUIRE_MESSAGE(eventually([&] { return world.all_owned(3); }, 20s), world.logs());
    for (double n : world.owned()) CHECK(n == 10);
    std::this_thread::sleep_for(3s);  // past the dead-man grace, every device reporting

    // d0 of every factory goes hot: 30 pending `for`s of 4 s. 1.5 s in, a member is killed: its 10
    // factories' `for`s run out while nobody owns them.
    const auto hot_at = std::chrono::steady_clock::now();
    hot_device = 0;
    std::this_thread::sleep_for(1500ms);
    auto& killed = *world.members[0];
    killed.process->send_signal(SIGKILL);
    CHECK(killed.process->terminate() == 128 + SIGKILL);
    auto events = listener.wait_for(60, 20s);  // 30 pending, 30 firing
    const auto all_fired = std::chrono::steady_clock::now();
    std::map<std::string, std::vector<std::string>> by_key;  // "factory/device/rule" -> states in order
    for (const auto& a : events) by_key[a.factory_id + "/" + a.device_id + "/" + a.rule].push_back(a.state);
    CHECK_MESSAGE(by_key.size() == 30, world.logs());
    for (int f = 0; f < factories; ++f) {
        const auto& states = by_key[factory_name(f) + "/d0/hot"];
        CHECK_MESSAGE((states == std::vector<std::string>{"pending", "firing"}),
                      fmt::format("{}: {}", factory_name(f), fmt::join(states, " ")));
    }
    // The killed member's `for`s (due 4 s after the step, while nobody owned them) fired at the
    // takeover: within a second of the lease (3 s) after the kill, plus the events' way to us.
    CHECK(all_fired - hot_at < 1500ms + 3s + 1s + 300ms);
    REQUIRE_MESSAGE(eventually([&] { return world.all_owned(2); }, 10s), world.logs());

    // `plantd cluster status` shows the hand-over: two alive members own all 30 factories.
    int code = -1;
    const std::string status = run_command(
        fmt::format("{} --config {} cluster status --json 2>&1", PLANTD_BINARY, world.cli_config), code);
    CHECK(code == 0);
    size_t owners = 0;
    for (size_t at = status.find("\"owner\":\""); at != std::string::npos;
         at = status.find("\"owner\":\"", at + 1))
        ++owners;
    CHECK(owners == factories);
    CHECK(status.find("\"owner\":\"" + killed.name + "\"") == std::string::npos);

    // The killed member comes back (it takes factories again from the others), then another member
    // is stopped with SIGTERM (it hands its factories over), all while the alerts still fire.
    world.start(killed);
    REQUIRE_MESSAGE(eventually([&] { return world.all_owned(3); }, 15s), world.logs());
    auto& stopped = *world.members[1];
    CHECK(stopped.process->terminate() == 0);
    REQUIRE_MESSAGE(eventually([&] { return world.all_owned(2); }, 10s), world.logs());

    // Redis restarts (it keeps its data); the members take their factories again.
    world.redis.stop();
    std::this_thread::sleep_for(1s);
    world.redis.start();
    REQUIRE_MESSAGE(eventually([&] { return world.all_owned(2); }, 20s), world.logs());

    // A new member joins: the others give it its share (after saving it), and it takes it on.
    auto& added = world.add_member();
    world.start(added);
    REQUIRE_MESSAGE(eventually(
                        [&] {
                            return world.all_owned(3) &&
                                   added.process->metric("plantd_cluster_factories_owned") == 10;
                        },
                        15s),
                    world.logs());
    for (double n : world.owned()) CHECK(n == 10);

    // Cooled down: each alert resolves once.
    hot_device = -1;
    events = listener.wait_for(90, 20s);
    std::this_thread::sleep_for(2s);
    publishing.stop();
    events = listener.settle(3s);
    by_key.clear();
    for (const auto& a : events) by_key[a.factory_id + "/" + a.device_id + "/" + a.rule].push_back(a.state);
    std::string keys;
    for (const auto& [key, states] : by_key)
        keys += key + "=" + fmt::format("{}", fmt::join(states, ",")) + " ";
    CHECK_MESSAGE(by_key.size() == 30, keys);  // no dead-man alert, no d1 alert
    for (int f = 0; f < factories; ++f) {
        const auto& states = by_key[factory_name(f) + "/d0/hot"];
        std::string detail;
        for (const auto& a : events)
            if (a.factory_id == factory_name(f) && a.rule == "hot")
                detail += fmt::format("\n  {} at {} started {} id {} ({})", a.state, a.at, a.started_at,
                                      a.alert_id, a.reason);
        CHECK_MESSAGE((states == std::vector<std::string>{"pending", "firing", "resolved"}),
                      fmt::format("{}: {}{}", factory_name(f), fmt::join(states, " "), detail));
    }

    // Every point once: the killed member's log replayed what it had acknowledged, and the stopped
    // member, started once more, drains what the broker kept for its session meanwhile.
    world.start(stopped);
    std::this_thread::sleep_for(2s);
    for (auto& member : world.members)
        if (member->process && member->process->running()) CHECK(member->process->terminate() == 0);
    const double written = influx_count_seq(world.influx_db);
    if (written != static_cast<double>(published.load())) {
        // Which were lost, for the failure message: runs of missing seq and the devices they were for.
        std::set<long> seen;
        for (const auto& row : influx_select(world.influx_db, "SELECT seq FROM telemetry"))
            if (auto* seq = std::get_if<double>(&row.columns.at("seq"))) seen.insert(static_cast<long>(*seq));
        std::string missing;
        for (long seq = 0, run = -1; seq <= published.load(); ++seq) {
            const bool lost = seq < published.load() && !seen.count(seq);
            if (lost && run < 0) run = seq;
            if (!lost && run >= 0) {
                missing += fmt::format("{}-{} ", run, seq - 1);
                run = -1;
            }
        }
        MESSAGE("missing seq: " << missing);
    }
    CHECK_MESSAGE(written == static_cast<double>(published.load()), world.logs());
}
