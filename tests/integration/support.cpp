#include "support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <httplib.h>
#include <simdjson.h>

namespace plantd::test {

namespace {
std::string env_or(const char* name, const char* fallback) {
    const char* value = std::getenv(name);
    return value && *value ? value : fallback;
}
}  // namespace

std::string mqtt_uri() {
    return env_or("PLANTD_MQTT_URI", "tcp://127.0.0.1:11883");
}
std::string influx_url() {
    return env_or("PLANTD_INFLUX_URL", "http://127.0.0.1:18086");
}

MysqlEndpoint mysql_endpoint() {
    // mysql://plantd:plantd@127.0.0.1:13306/plantd
    std::string url = env_or("PLANTD_MYSQL_URL", "mysql://plantd:plantd@127.0.0.1:13306/plantd");
    MysqlEndpoint e;
    std::string rest = url.substr(url.find("://") + 3);
    auto at = rest.find('@');
    std::string credentials = rest.substr(0, at);
    e.user = credentials.substr(0, credentials.find(':'));
    e.password = credentials.substr(credentials.find(':') + 1);
    std::string host_port = rest.substr(at + 1, rest.find('/', at) - at - 1);
    e.host = host_port.substr(0, host_port.find(':'));
    e.port = std::stoi(host_port.substr(host_port.find(':') + 1));
    return e;
}

std::string registry_config(const std::string& database) {
    const MysqlEndpoint e = mysql_endpoint();
    return fmt::format(
        "[registry]\nmysql_host = \"{}\"\nmysql_port = {}\nmysql_user = \"{}\"\nmysql_password = \"{}\"\n"
        "mysql_database = \"{}\"\n",
        e.host, e.port, e.user, e.password, database);
}

std::string mysql_command(const std::string& database, const std::string& sql) {
    const MysqlEndpoint e = mysql_endpoint();
    int code = 0;
    // The SQL goes through a file, so that no shell quoting can change it.
    char path[] = "/tmp/plantd-sql-XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    ::close(fd);
    {
        std::ofstream out(path);
        out << sql;
    }
    std::string output = run_command(fmt::format("mysql -h {} -P {} -u {} -p{} -N -B {} < {} 2>&1", e.host,
                                                 e.port, e.user, e.password, database, path),
                                     code);
    ::unlink(path);
    if (code != 0) throw std::runtime_error("mysql failed: " + output);
    return output;
}

ScratchMysqlDatabase::ScratchMysqlDatabase(std::string_view prefix) : name_(unique_name(prefix)) {
    mysql_command("", "CREATE DATABASE `" + name_ + "`");
}

ScratchMysqlDatabase::~ScratchMysqlDatabase() {
    try {
        mysql_command("", "DROP DATABASE IF EXISTS `" + name_ + "`");
    } catch (...) {
    }
}

std::string unique_name(std::string_view prefix) {
    static int counter = 0;
    return fmt::format("{}_{}_{}_{}", prefix, ::getpid(),
                       std::chrono::steady_clock::now().time_since_epoch().count() % 100000, ++counter);
}

int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ::close(fd);
    return ntohs(address.sin_port);
}

TempDir::TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "plantd-itest-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
}

TempDir::~TempDir() {
    if (!std::getenv("PLANTD_KEEP_TEST_DIRS")) {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
}

PlantdProcess::PlantdProcess(const std::string& dir, const std::string& config_toml, int control_port,
                             const std::string& log_name)
    : log_path_(dir + "/" + log_name), control_port_(control_port) {
    std::string config_path = dir + "/plantd.toml";
    std::ofstream(config_path) << config_toml;
    pid_ = ::fork();
    if (pid_ == 0) {
        int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::execl(PLANTD_BINARY, "plantd", "--config", config_path.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
}

PlantdProcess::~PlantdProcess() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
}

bool PlantdProcess::wait_ready(std::chrono::seconds timeout) {
    httplib::Client client("127.0.0.1", control_port_);
    client.set_connection_timeout(1);
    return eventually(
        [&] {
            auto response = client.Get("/ready");
            return response && response->status == 200;
        },
        timeout);
}

MetricMap PlantdProcess::metrics() const {
    MetricMap out;
    httplib::Client client("127.0.0.1", control_port_);
    auto response = client.Get("/metrics");
    if (!response || response->status != 200) return out;
    std::istringstream lines(response->body);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto space = line.rfind(' ');
        out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
}

double PlantdProcess::metric(const std::string& key) const {
    auto all = metrics();
    auto it = all.find(key);
    return it == all.end() ? 0.0 : it->second;
}

void PlantdProcess::send_signal(int signal) const {
    if (pid_ > 0) ::kill(pid_, signal);
}

int PlantdProcess::terminate(std::chrono::seconds timeout) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        pid_t done = ::waitpid(pid_, &status, WNOHANG);
        if (done == pid_) {
            pid_ = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return -1;
}

std::string PlantdProcess::log() const {
    std::ifstream in(log_path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

Publisher::Publisher(const std::string& client_id) : client_(mqtt_uri(), client_id) {
    auto options = mqtt::connect_options_builder().clean_session(true).finalize();
    client_.connect(options)->wait();
}

Publisher::~Publisher() {
    // Disconnected whatever the flush says: a Paho client destroyed while connected can leave its
    // socket to Paho's shared threads, which touch it when the broker next closes it.
    try {
        flush();
    } catch (...) {
    }
    try {
        client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (...) {
    }
}

void Publisher::publish(const std::string& topic, const std::string& payload) {
    while (in_flight_.size() >= 64) {
        in_flight_.front()->wait();
        in_flight_.pop_front();
    }
    in_flight_.push_back(client_.publish(topic, payload.data(), payload.size(), 1, false));
    ++published_;
}

void Publisher::flush() {
    while (!in_flight_.empty()) {
        in_flight_.front()->wait();
        in_flight_.pop_front();
    }
}

namespace {
std::pair<std::string, int> influx_host_port() {
    std::string url = influx_url();
    auto host_start = url.find("://") + 3;
    auto colon = url.rfind(':');
    return {url.substr(host_start, colon - host_start), std::stoi(url.substr(colon + 1))};
}
}  // namespace

std::vector<Row> influx_select(const std::string& database, const std::string& query) {
    auto [host, port] = influx_host_port();
    httplib::Client client(host, port);
    client.set_read_timeout(60);
    httplib::Params params{{"db", database}, {"q", query}, {"epoch", "ms"}};
    auto response = client.Post("/query", params);
    if (!response) throw std::runtime_error("InfluxDB query failed: no response");
    if (response->status != 200)
        throw std::runtime_error("InfluxDB query: HTTP " + std::to_string(response->status) + " " +
                                 response->body);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(response->body);
    std::vector<Row> rows;
    for (simdjson::dom::element result : doc["results"].get_array()) {
        std::string_view error;
        if (result["error"].get(error) == simdjson::SUCCESS)
            throw std::runtime_error("InfluxQL: " + std::string(error));
        simdjson::dom::array series;
        if (result["series"].get(series) != simdjson::SUCCESS) continue;
        for (simdjson::dom::element one : series) {
            std::vector<std::string> columns;
            for (simdjson::dom::element column : one["columns"].get_array())
                columns.emplace_back(std::string_view(column));
            std::map<std::string, std::string> series_tags;
            simdjson::dom::object tags;
            if (one["tags"].get(tags) == simdjson::SUCCESS) {
                for (auto [key, value] : tags)
                    series_tags[std::string(key)] = std::string(std::string_view(value));
            }
            for (simdjson::dom::element values : one["values"].get_array()) {
                Row row;
                for (const auto& [key, value] : series_tags) row.columns[key] = value;
                size_t i = 0;
                for (simdjson::dom::element value : values.get_array()) {
                    const std::string& name = columns[i++];
                    if (name == "time") {
                        row.time_ms = int64_t(value);
                        continue;
                    }
                    switch (value.type()) {
                        case simdjson::dom::element_type::NULL_VALUE:
                            break;
                        case simdjson::dom::element_type::BOOL:
                            row.columns[name] = bool(value);
                            break;
                        case simdjson::dom::element_type::STRING:
                            row.columns[name] = std::string(std::string_view(value));
                            break;
                        case simdjson::dom::element_type::INT64:
                            row.columns[name] = double(int64_t(value));
                            break;
                        case simdjson::dom::element_type::UINT64:
                            row.columns[name] = double(uint64_t(value));
                            break;
                        case simdjson::dom::element_type::DOUBLE:
                            row.columns[name] = double(value);
                            break;
                        default:
                            break;
                    }
                }
                rows.push_back(std::move(row));
            }
        }
    }
    return rows;
}

double influx_count_seq(const std::string& database) {
    try {
        auto rows = influx_select(database, "SELECT count(seq) FROM telemetry");
        return rows.empty() ? 0.0 : std::get<double>(rows[0].columns.at("count"));
    } catch (const std::exception&) {
        return -1.0;  // the database is not there yet
    }
}

std::optional<Accounting> accounting_of(const std::string& log) {
    auto at = log.find("accounting: messages received ");
    if (at == std::string::npos) return std::nullopt;
    Accounting a;
    if (std::sscanf(log.c_str() + at,
                    "accounting: messages received %ld = accepted %ld + rejected %ld; records accepted %ld + "
                    "recovered %ld = points written %ld + points rejected %ld + buffered %ld",
                    &a.received, &a.accepted, &a.rejected, &a.records, &a.recovered, &a.written,
                    &a.points_rejected, &a.buffered) != 8) {
        return std::nullopt;
    }
    return a;
}

void influx_command(const std::string& query) {
    auto [host, port] = influx_host_port();
    httplib::Client client(host, port);
    auto response = client.Post("/query", httplib::Params{{"q", query}});
    if (!response || response->status != 200) throw std::runtime_error("InfluxDB command failed: " + query);
}

std::string base_config(const std::string& instance, const std::string& topic_prefix,
                        const std::string& database, int control_port, const std::string& dead_letter_path,
                        const std::string& extra) {
    // The write-ahead log and disk buffer beside the dead letters, unless the test sets them itself.
    std::string durability;
    if (extra.find("[durability]") == std::string::npos) {
        const auto slash = dead_letter_path.rfind('/');
        durability = fmt::format("[durability]\ndirectory = \"{}/state\"\n",
                                 slash == std::string::npos ? "." : dead_letter_path.substr(0, slash));
    }
    return fmt::format(R"(instance = "{0}"
[mqtt]
uri = "{1}"
client_id = "{0}"
device_topic = "{2}/factory/{{factory_id}}/device/{{device_id}}/telemetry"
gateway_topic = "{2}/factory/{{factory_id}}/gateway/{{gateway_id}}/telemetry"
reconnect_min = "1s"
reconnect_max = "2s"
[influxdb]
url = "{3}"
database = "{4}"
flush_interval = "200ms"
batch_max_lines = 1000
retry_initial = "50ms"
retry_max = "1s"
[dead_letter]
path = "{5}"
[control]
listen = "127.0.0.1:{6}"
[log]
level = "info"
reject_log_interval = "1s"
{8}{7}
)",
                       instance, mqtt_uri(), topic_prefix, influx_url(), database, dead_letter_path,
                       control_port, extra, durability);
}

std::vector<std::string> read_lines(const std::string& path) {
    std::vector<std::string> lines;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

std::string run_command(const std::string& command, int& exit_code) {
    std::string output;
    FILE* pipe = ::popen(("(" + command + ") 2>&1").c_str(), "r");
    if (!pipe) throw std::runtime_error(fmt::format("cannot run {}: {}", command, std::strerror(errno)));
    char buffer[4096];
    while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
    int status = ::pclose(pipe);
    exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return output;
}

PrivateBroker::PrivateBroker(const std::string& dir, int port, const std::string& extra_config)
    : dir_(dir), port_(port) {
    std::ofstream(dir_ + "/mosquitto.conf") << fmt::format(
        "per_listener_settings true\nuser root\npersistence false\nmax_queued_messages 0\n"
        "log_dest file {}/mosquitto.log\nlistener {} 127.0.0.1\n{}",
        dir_, port_, extra_config);
}

PrivateBroker::~PrivateBroker() {
    stop();
}

void PrivateBroker::start() {
    pid_ = ::fork();
    if (pid_ == 0) {
        std::freopen("/dev/null", "w", stderr);
        ::execlp("mosquitto", "mosquitto", "-c", (dir_ + "/mosquitto.conf").c_str(),
                 static_cast<char*>(nullptr));
        ::_exit(127);
    }
    // Wait until it listens.
    eventually(
        [&] {
            int code = 0;
            run_command(fmt::format("bash -c 'echo > /dev/tcp/127.0.0.1/{}'", port_), code);
            return code == 0;
        },
        std::chrono::seconds(10));
}

void PrivateBroker::stop() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
}

std::string PrivateBroker::uri(std::string_view scheme, std::string_view host) const {
    return fmt::format("{}://{}:{}", scheme, host, port_);
}

PrivateRedis::PrivateRedis(const std::string& dir, int port, bool persistent)
    : dir_(dir), port_(port), persistent_(persistent) {}

PrivateRedis::~PrivateRedis() {
    stop();
}

void PrivateRedis::start() {
    pid_ = ::fork();
    if (pid_ == 0) {
        std::freopen("/dev/null", "w", stdout);
        std::freopen("/dev/null", "w", stderr);
        const std::string port = std::to_string(port_);
        ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", persistent_ ? "yes" : "no", "--appendfsync", "always", "--dir", dir_.c_str(),
                 static_cast<char*>(nullptr));
        ::_exit(127);
    }
    eventually([&] { return cli("PING").find("PONG") != std::string::npos; }, std::chrono::seconds(10));
}

void PrivateRedis::stop() {
    if (pid_ > 0) {
        ::kill(pid_, persistent_ ? SIGTERM : SIGKILL);  // persistent: a clean shutdown; else all is gone
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
}

std::string PrivateRedis::cli(const std::string& arguments) const {
    int code = 0;
    return run_command(fmt::format("redis-cli -h 127.0.0.1 -p {} {} 2>&1", port_, arguments), code);
}

std::string cli(const std::string& config_path, const std::string& args) {
    int code = -1;
    std::string out =
        run_command(fmt::format("{} --config {} {} 2>&1", PLANTD_BINARY, config_path, args), code);
    INFO(args << " -> " << out);
    REQUIRE(code == 0);
    return out;
}

std::string text_of(const Row& row, const std::string& column) {
    auto it = row.columns.find(column);
    if (it == row.columns.end() || !std::holds_alternative<std::string>(it->second)) return "";
    return std::get<std::string>(it->second);
}

void stack_service(const std::string& action, const std::string& service) {
    int code = 0;
    std::string out =
        run_command(fmt::format("{}/scripts/stack {} {} 2>&1", PLANTD_SOURCE_DIR, action, service), code);
    if (code != 0) throw std::runtime_error("scripts/stack " + action + " " + service + ": " + out);
}

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
        throw std::runtime_error("TcpProxy: cannot listen");
    }
    socklen_t length = sizeof(address);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
}

TcpProxy::~TcpProxy() {
    stopping_ = true;
    set_enabled(false);
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    for (auto& t : threads_) t.join();
    for (int fd : connections_) ::close(fd);
}

void TcpProxy::set_enabled(bool enabled) {
    enabled_ = enabled;
    if (enabled) return;
    std::lock_guard lock(mutex_);
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);  // the pumps see EOF and stop
}

void TcpProxy::accept_loop() {
    while (!stopping_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        if (!enabled_) {
            ::close(client);
            continue;
        }
        int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in target{};
        target.sin_family = AF_INET;
        target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        target.sin_port = htons(static_cast<uint16_t>(target_port_));
        if (::connect(upstream, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
            ::close(client);
            ::close(upstream);
            continue;
        }
        std::lock_guard lock(mutex_);
        connections_.push_back(client);
        connections_.push_back(upstream);
        threads_.emplace_back([this, client, upstream] { pump(client, upstream); });
        threads_.emplace_back([this, client, upstream] { pump(upstream, client); });
    }
}

void TcpProxy::pump(int from, int to) {
    char buffer[16384];
    while (true) {
        ssize_t n = ::recv(from, buffer, sizeof(buffer), 0);
        if (n <= 0 || !enabled_) break;
        if (::send(to, buffer, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    ::shutdown(from, SHUT_RDWR);
    ::shutdown(to, SHUT_RDWR);
}

}  // namespace plantd::test
