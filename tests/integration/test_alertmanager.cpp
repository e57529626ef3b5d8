// Alertmanager as a destination, against a real Prometheus Alertmanager (Debian's
// prometheus-alertmanager) on loopback: one alert per (factory, device, rule) with plantd's labels,
// re-posted while it fires, resolved when plantd resolves it, silenced by an operator with amtool
// (and plantd does not fight the silence), kept across an Alertmanager restart and a plantd restart.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "rules_world.hpp"

namespace {

class PrivateAlertmanager {
  public:
    explicit PrivateAlertmanager(const std::string& dir) : dir_(dir + "/alertmanager") {
        std::filesystem::create_directories(dir_);
        // One receiver that sends nothing: the test reads Alertmanager's own view of the alerts.
        std::ofstream(dir_ + "/alertmanager.yml") << "route:\n  receiver: nobody\n"
                                                     "receivers:\n  - name: nobody\n";
    }
    ~PrivateAlertmanager() { stop(); }
    void start() {
        pid_ = ::fork();
        if (pid_ == 0) {
            std::freopen((dir_ + "/alertmanager.log").c_str(), "a", stdout);
            std::freopen((dir_ + "/alertmanager.log").c_str(), "a", stderr);
            const std::string config = "--config.file=" + dir_ + "/alertmanager.yml";
            const std::string storage = "--storage.path=" + dir_;
            const std::string listen = fmt::format("--web.listen-address=127.0.0.1:{}", port_);
            ::execlp("prometheus-alertmanager", "prometheus-alertmanager", config.c_str(), storage.c_str(),
                     listen.c_str(), "--cluster.listen-address=", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        REQUIRE(eventually([&] { return get("/-/ready").find("OK") != std::string::npos; }, 20s));
    }
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
    std::string get(const std::string& path) const {
        int code = 0;
        return run_command(fmt::format("curl -s --max-time 5 '{}{}'", url(), path), code);
    }
    std::string amtool(const std::string& arguments) const {
        int code = 0;
        std::string out =
            run_command(fmt::format("amtool --alertmanager.url={} {} 2>&1", url(), arguments), code);
        INFO("amtool " << arguments << " -> " << out);
        CHECK(code == 0);
        return out;
    }

  private:
    std::string dir_;
    int port_ = free_port();
    int pid_ = -1;
};

struct ManagedAlert {
    std::map<std::string, std::string> labels;
    std::string state;  // active, suppressed
    std::string starts_at, ends_at;
    size_t silenced_by = 0;
};

// Alertmanager's alerts (those not yet ended), keyed by device id.
std::map<std::string, ManagedAlert> managed_alerts(const PrivateAlertmanager& manager) {
    std::map<std::string, ManagedAlert> out;
    const std::string json = manager.get("/api/v2/alerts");
    simdjson::dom::parser parser;
    simdjson::dom::array alerts;
    if (parser.parse(json).get(alerts)) return out;
    for (simdjson::dom::element alert : alerts) {
        ManagedAlert m;
        simdjson::dom::object labels;
        if (!alert["labels"].get(labels))
            for (auto field : labels)
                m.labels[std::string(field.key)] = std::string(field.value.get_string().value());
        std::string_view text;
        if (!alert["status"]["state"].get(text)) m.state = text;
        if (!alert["startsAt"].get(text)) m.starts_at = text;
        if (!alert["endsAt"].get(text)) m.ends_at = text;
        simdjson::dom::array silenced;
        if (!alert["status"]["silencedBy"].get(silenced)) m.silenced_by = silenced.size();
        out[m.labels["device_id"]] = m;
    }
    return out;
}

std::set<std::string> devices_of(const std::map<std::string, ManagedAlert>& alerts) {
    std::set<std::string> out;
    for (const auto& [device, alert] : alerts) out.insert(device);
    return out;
}

}  // namespace

TEST_CASE(
    "alertmanager: one alert per (factory, device, rule), re-posted while firing, resolved when plantd "
    "resolves it, silenced by an operator without plantd fighting it, back after either side restarts") {
    RulesWorld world(overheat_rules);
    PrivateAlertmanager manager(world.dir.path());
    manager.start();
    world.config += fmt::format("alertmanager_url = \"{}\"\nalertmanager_resend = \"1s\"\n", manager.url());
    AlertListener listener(world.prefix);
    auto plantd = world.start();
    Publisher publisher(unique_name("pub"));
    for (int i = 0; i < 5; ++i) {  // a burst: still one alert each
        publisher.publish(world.topic("fa", "press-01"), reading("temperature", 90 + i));
        publisher.publish(world.topic("fa", "press-02"), reading("temperature", 95));
    }
    publisher.publish(world.topic("fb", "press-01"), reading("temperature", 99));  // fb has no rule
    publisher.flush();
    auto events = listener.wait_for(2, 20s);
    REQUIRE(events.size() == 2);
    std::map<std::string, std::string> alert_ids;
    for (const auto& e : events) alert_ids[e.device_id] = e.alert_id;

    REQUIRE(eventually([&] { return managed_alerts(manager).size() == 2; }, 10s));
    auto managed = managed_alerts(manager);
    REQUIRE(devices_of(managed) == std::set<std::string>{"press-01", "press-02"});
    for (const auto& [device, alert] : managed) {
        INFO(device);
        CHECK(alert.labels.at("alertname") == "overheat");
        CHECK(alert.labels.at("rule") == "overheat");
        CHECK(alert.labels.at("factory_id") == "fa");
        CHECK(alert.labels.at("severity") == "critical");
        CHECK(alert.labels.at("alert_id") == alert_ids.at(device));
        CHECK(alert.labels.size() == 6);
        CHECK(alert.state == "active");
    }
    // Re-posted while it fires: its end keeps moving ahead (resend 1 s, each valid for 4 s).
    const std::string first_end = managed.at("press-01").ends_at;
    REQUIRE(eventually(
        [&] {
            auto now = managed_alerts(manager);
            return now.count("press-01") == 1 && now.at("press-01").ends_at > first_end;
        },
        5s));

    // An operator silences press-02 in Alertmanager: it stays silenced through plantd's re-posts.
    const std::string silence_id = manager.amtool(
        "silence add device_id=press-02 rule=overheat --author=operator --comment=maintenance "
        "--duration=1h");
    REQUIRE(eventually(
        [&] {
            auto now = managed_alerts(manager);
            return now.count("press-02") == 1 && now.at("press-02").state == "suppressed";
        },
        5s));
    std::this_thread::sleep_for(3s);  // three re-posts
    managed = managed_alerts(manager);
    REQUIRE(devices_of(managed) == std::set<std::string>{"press-01", "press-02"});
    CHECK(managed.at("press-02").state == "suppressed");
    CHECK(managed.at("press-02").silenced_by == 1);
    CHECK(managed.at("press-01").state == "active");
    CHECK(manager.amtool("silence query -q").find(silence_id.substr(0, 8)) != std::string::npos);

    // plantd resolves press-01: Alertmanager is told, and it is gone from the active alerts.
    publisher.publish(world.topic("fa", "press-01"), reading("temperature", 70));
    publisher.flush();
    REQUIRE(listener.wait_for(3, 20s).size() == 3);
    REQUIRE(eventually(
        [&] { return devices_of(managed_alerts(manager)) == std::set<std::string>{"press-02"}; }, 10s));

    // Alertmanager restarted (it keeps no alerts): what still fires is back within a re-post, and an
    // alert raised while it was away arrives once it answers.
    manager.stop();
    publisher.publish(world.topic("fa", "press-03"), reading("temperature", 99));
    publisher.flush();
    REQUIRE(listener.wait_for(4, 20s).size() == 4);
    std::this_thread::sleep_for(1500ms);
    manager.start();
    CHECK(eventually(
        [&] {
            return devices_of(managed_alerts(manager)) == std::set<std::string>{"press-02", "press-03"};
        },
        40s));

    // plantd restarted: a firing alert is not resolved by the stop, and the new run goes on posting it.
    CHECK(plantd->terminate() == 0);
    auto before_restart = managed_alerts(manager);
    const std::string end_before_restart =
        before_restart.count("press-03") ? before_restart.at("press-03").ends_at : std::string();
    plantd = world.start("plantd2.log");
    CHECK(eventually(
        [&] {
            auto now = managed_alerts(manager);
            return now.count("press-03") == 1 && now.at("press-03").ends_at > end_before_restart;
        },
        10s));
    auto after = managed_alerts(manager);
    CHECK(devices_of(after) == std::set<std::string>{"press-02", "press-03"});
    CHECK(plantd->metric("plantd_alert_delivery_refused_total{destination=\"alertmanager\"}") == 0);
}
