#pragma once
// Helpers for integration tests against the real stack (scripts/stack up): the plantd binary as a
// child process, a QoS 1 MQTT publisher, and InfluxDB queries.
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <mqtt/async_client.h>

namespace plantd::test {

std::string mqtt_uri();                            // PLANTD_MQTT_URI, default tcp://127.0.0.1:11883
std::string influx_url();                          // PLANTD_INFLUX_URL, default http://127.0.0.1:18086
std::string unique_name(std::string_view prefix);  // e.g. "itest_e2e_4711_3"
int free_port();

class TempDir {
  public:
    TempDir();
    ~TempDir();
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// Prometheus text parsed into "name{labels}" -> value.
using MetricMap = std::map<std::string, double>;

class PlantdProcess {
  public:
    // Writes `config_toml` to dir/plantd.toml and starts plantd; output goes to dir/<log_name>.
    PlantdProcess(const std::string& dir, const std::string& config_toml, int control_port,
                  const std::string& log_name = "plantd.log");
    ~PlantdProcess();

    bool wait_ready(std::chrono::seconds timeout);
    MetricMap metrics() const;
    double metric(const std::string& key) const;
    // SIGTERM, then the exit code (or -1 if it did not exit within `timeout`, after which it is killed).
    int terminate(std::chrono::seconds timeout = std::chrono::seconds(60));
    std::string log() const;
    bool running() const { return pid_ > 0; }
    int pid() const { return pid_; }
    void send_signal(int signal) const;

  private:
    std::string log_path_;
    int control_port_;
    int pid_ = -1;
};

class Publisher {
  public:
    explicit Publisher(const std::string& client_id);
    ~Publisher();
    // QoS 1 with a bounded window of publishes in flight (Paho fails with -12 past 100 queued).
    void publish(const std::string& topic, const std::string& payload);
    void flush();
    size_t published() const { return published_; }

  private:
    mqtt::async_client client_;
    std::deque<mqtt::delivery_token_ptr> in_flight_;
    size_t published_ = 0;
};

using Value = std::variant<std::monostate, double, bool, std::string>;
struct Row {
    int64_t time_ms = 0;
    std::map<std::string, Value> columns;  // tags and fields by name (nulls left out)
};

// SELECT over InfluxDB 1.x HTTP (/query, epoch=ms). Throws on HTTP or InfluxQL errors.
std::vector<Row> influx_select(const std::string& database, const std::string& query);
void influx_command(const std::string& query);  // CREATE/DROP DATABASE
// The stack's MariaDB (PLANTD_MYSQL_URL, mysql://user:password@host:port/database).
struct MysqlEndpoint {
    std::string user, password, host;
    int port = 3306;
};
MysqlEndpoint mysql_endpoint();
// A [registry] section for plantd pointing at `database` on the stack's MariaDB.
std::string registry_config(const std::string& database);
// Runs SQL through the mysql command-line client (an independent view of the database); returns its
// tab-separated output without headers. Throws on failure.
std::string mysql_command(const std::string& database, const std::string& sql);
// A database of its own on the stack's MariaDB for one test, dropped afterwards.
class ScratchMysqlDatabase {
  public:
    explicit ScratchMysqlDatabase(std::string_view prefix);
    ~ScratchMysqlDatabase();
    const std::string& name() const { return name_; }

  private:
    std::string name_;
};
// count(seq) FROM telemetry, or -1 while the database does not exist yet.
double influx_count_seq(const std::string& database);

// The "accounting: ..." line plantd logs when it stops; nullopt if the log has none.
struct Accounting {
    long received = -1, accepted = -1, rejected = -1, records = -1, written = -1, points_rejected = -1,
         buffered = -1, recovered = -1;  // recovered: points found in the disk buffer at start-up
};
std::optional<Accounting> accounting_of(const std::string& log);
// A config for plantd against the test stack; `extra` is appended verbatim (more sections).
std::string base_config(const std::string& instance, const std::string& topic_prefix,
                        const std::string& database, int control_port, const std::string& dead_letter_path,
                        const std::string& extra = "");

std::vector<std::string> read_lines(const std::string& path);

// Runs a shell command; returns its output (stdout and stderr) and sets `exit_code`.
std::string run_command(const std::string& command, int& exit_code);

// A private mosquitto on its own port, without persistence (a restart forgets every session).
// `extra_config` is appended to the listener block (TLS, password file...).
class PrivateBroker {
  public:
    PrivateBroker(const std::string& dir, int port,
                  const std::string& extra_config = "allow_anonymous true\n");
    ~PrivateBroker();
    void start();
    void stop();
    std::string uri(std::string_view scheme = "tcp", std::string_view host = "127.0.0.1") const;

  private:
    std::string dir_;
    int port_;
    int pid_ = -1;
};

// A private redis-server on its own port, without persistence: a restart loses everything, as a
// replaced cache node would. `persistent`: an append-only file in `dir`, and stop() shuts it down
// cleanly, so that a restart keeps what it held (as an operator's Redis restarted for an upgrade).
class PrivateRedis {
  public:
    PrivateRedis(const std::string& dir, int port, bool persistent = false);
    ~PrivateRedis();
    void start();
    void stop();
    int port() const { return port_; }
    // Runs redis-cli against it (an independent view); returns its raw output.
    std::string cli(const std::string& arguments) const;

  private:
    std::string dir_;
    int port_;
    bool persistent_;
    int pid_ = -1;
};

// Runs `plantd --config config_path <args>` (an operator command) and requires exit code 0.
std::string cli(const std::string& config_path, const std::string& args);
// A tag or string field of a row ("" if absent or not a string).
std::string text_of(const Row& row, const std::string& column);

// scripts/stack stop-one|start-one SERVICE on the shared stack (a real server stopped and started).
void stack_service(const std::string& action, const std::string& service);

// A TCP forwarder on a free loopback port to `target_port`, which a test can cut and restore: a
// dependency (MySQL, Redis...) going away and coming back without stopping the shared server.
// Cutting closes every forwarded connection and refuses new ones.
class TcpProxy {
  public:
    explicit TcpProxy(int target_port);
    ~TcpProxy();
    int port() const { return port_; }
    void set_enabled(bool enabled);

  private:
    void accept_loop();
    void pump(int from, int to);

    int target_port_;
    int port_ = 0;
    int listen_fd_ = -1;
    std::atomic<bool> enabled_{true};
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::vector<int> connections_;
    std::vector<std::thread> threads_;
    std::thread acceptor_;
};

// Polls `condition` every 100 ms until it holds or `timeout` passes.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return condition();
}

}  // namespace plantd::test
