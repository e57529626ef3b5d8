// TLS with server verification (and host name verification), username and password from the
// environment: the options an operator sets for a production broker.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "support.hpp"

using namespace plantd::test;

namespace {

// A CA and a server certificate for "localhost" only (no IP address in it).
void make_certificates(const std::string& dir) {
    int code = 0;
    std::string out = run_command(
        fmt::format(
            "cd {} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=plantd-test-ca "
            "-keyout ca.key -out ca.crt && "
            "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr && "
            "printf 'subjectAltName=DNS:localhost\\n' > san.ext && "
            "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
            "-extfile san.ext -out server.crt",
            dir),
        code);
    REQUIRE_MESSAGE(code == 0, out);
    out = run_command(fmt::format("mosquitto_passwd -b -c {}/passwords plantd 's3cret pass'", dir), code);
    REQUIRE_MESSAGE(code == 0, out);
}

std::string tls_config(const std::string& base, const std::string& uri, const std::string& ca,
                       bool verify_host, const std::string& password_env) {
    std::string config = base;
    config.replace(
        config.find("uri = \"" + mqtt_uri() + "\""), ("uri = \"" + mqtt_uri() + "\"").size(),
        fmt::format("uri = \"{}\"\nusername = \"plantd\"\npassword_env = \"{}\"", uri, password_env));
    return config + fmt::format("[mqtt.tls]\nca_file = \"{}\"\nverify_hostname = {}\n", ca,
                                verify_host ? "true" : "false");
}

}  // namespace

TEST_CASE("TLS with a verified server certificate and a password from the environment") {
    TempDir dir;
    make_certificates(dir.path());
    const int broker_port = free_port();
    PrivateBroker broker(dir.path(), broker_port,
                         fmt::format("cafile {0}/ca.crt\ncertfile {0}/server.crt\nkeyfile {0}/server.key\n"
                                     "allow_anonymous false\npassword_file {0}/passwords\n",
                                     dir.path()));
    broker.start();
    ::setenv("PLANTD_TEST_MQTT_PASSWORD", "s3cret pass", 1);
    ::setenv("PLANTD_TEST_WRONG_PASSWORD", "wrong", 1);
    const std::string database = unique_name("itest_tls");
    const std::string ca = dir.path() + "/ca.crt";

    SUBCASE("the right password over TLS to the name in the certificate: records flow") {
        const int port = free_port();
        std::string config =
            tls_config(base_config(unique_name("plantd-tls"), "t", database, port, dir.path() + "/dl.jsonl"),
                       broker.uri("ssl", "localhost"), ca, true, "PLANTD_TEST_MQTT_PASSWORD");
        PlantdProcess plantd(dir.path(), config, port, "ok.log");
        REQUIRE_MESSAGE(plantd.wait_ready(std::chrono::seconds(20)), plantd.log());
        int code = 0;
        for (int i = 0; i < 20; ++i) {
            std::string out = run_command(
                fmt::format(
                    "mosquitto_pub -h localhost -p {} --cafile {} -u plantd -P 's3cret pass' -q 1 "
                    "-t t/factory/f1/device/d1/telemetry -m '{{\"ts\": {}, \"metrics\": {{\"seq\": {}}}}}'",
                    broker_port, ca, 1'700'000'000'000 + i, i),
                code);
            REQUIRE_MESSAGE(code == 0, out);
        }
        CHECK(
            eventually([&] { return plantd.metric("plantd_points_written_total{factory_id=\"f1\"}") == 20; },
                       std::chrono::seconds(20)));
        CHECK(plantd.terminate() == 0);
        influx_command("DROP DATABASE \"" + database + "\"");
    }

    // plantd must keep retrying, count each failure, never connect, and still stop cleanly.
    // The log must name the cause, so that an operator can tell the three apart.
    auto expect_refused = [&](const std::string& uri, const std::string& trusted_ca, const char* password_env,
                              const char* log_name, const std::string& cause) {
        const int port = free_port();
        std::string config =
            tls_config(base_config(unique_name("plantd-tls"), "t", database, port, dir.path() + "/dl.jsonl"),
                       uri, trusted_ca, true, password_env);
        PlantdProcess plantd(dir.path(), config, port, log_name);
        CHECK(eventually([&] { return plantd.metric("plantd_mqtt_connect_failures_total") >= 2; },
                         std::chrono::seconds(20)));
        CHECK(plantd.metric("plantd_mqtt_connected") == 0);
        CHECK(plantd.terminate() == 0);
        const std::string log = plantd.log();
        INFO(log);
        CHECK(log.find(cause) != std::string::npos);
    };

    SUBCASE("a wrong password: no connection, counted, retried, no crash") {
        expect_refused(broker.uri("ssl", "localhost"), ca, "PLANTD_TEST_WRONG_PASSWORD", "wrong-password.log",
                       "the broker refused the connection: ");
    }

    SUBCASE("host name verification: the certificate names localhost, not 127.0.0.1") {
        expect_refused(broker.uri("ssl", "127.0.0.1"), ca, "PLANTD_TEST_MQTT_PASSWORD", "hostname.log",
                       "the broker's certificate is not trusted: IP address mismatch");
    }

    SUBCASE("a certificate from an unknown CA is refused") {
        // The system CAs do not include our test CA.
        expect_refused(
            broker.uri("ssl", "localhost"), "/etc/ssl/certs/ca-certificates.crt", "PLANTD_TEST_MQTT_PASSWORD",
            "unknown-ca.log",
            "the broker's certificate is not trusted: self-signed certificate in certificate chain");
    }
}
