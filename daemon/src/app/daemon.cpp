#include "app/daemon.hpp"

#include <csignal>
#include <functional>
#include <memory>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "control/health.hpp"
#include "control/http_server.hpp"
#include "control/metrics.hpp"
#include "control/rate_limited_log.hpp"
#include "control/systemd_notify.hpp"
#include "decoding/topic_template.hpp"
#include "durability/dead_letter_store.hpp"
#include "pipeline/ingest_queue.hpp"
#include "pipeline/worker.hpp"
#include "registry/device_registry.hpp"
#include "subscriber/mqtt_subscriber.hpp"
#include "util/clock.hpp"
#include "writer/influx_client.hpp"
#include "writer/influx_writer.hpp"

namespace plantd {

namespace {

TopicRouter make_router(const MqttConfig& mqtt) {
    // The config was validated: both templates parse.
    auto device = TopicTemplate::parse(mqtt.device_topic, TopicKind::device);
    std::optional<TopicTemplate> gateway;
    if (!mqtt.gateway_topic.empty()) gateway = *TopicTemplate::parse(mqtt.gateway_topic, TopicKind::gateway);
    return TopicRouter(*device, gateway);
}

void log_accounting(const Metrics& metrics) {
    spdlog::info(
        "accounting: messages received {} = accepted {} + rejected {}; records accepted {} = points written "
        "{} + "
        "points rejected {} + buffered {}",
        metrics.messages_received.load(), metrics.messages_accepted.load(),
        metrics.rejected_total(RejectScope::message), metrics.records_accepted.load(),
        metrics.points_written(), metrics.rejected_total(RejectScope::point), metrics.points_buffered.load());
}

}  // namespace

void configure_logging(const std::string& level) {
    auto logger = spdlog::stderr_color_mt("plantd");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_level(spdlog::level::from_str(level));
}

int run_daemon(const Config& config) {
    // Signals are taken synchronously by this thread; every thread started below inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // OpenSSL writes to a socket the broker may have closed

    Metrics metrics;
    Health health;
    RateLimitedLog reject_log(std::chrono::milliseconds(config.log.reject_log_interval_ms));

    auto dead_letters = DeadLetterStore::open(config.dead_letter.path, config.dead_letter.max_bytes, metrics);
    if (!dead_letters) {
        spdlog::critical("{}", dead_letters.error());
        return 1;
    }

    TopicRouter router = make_router(config.mqtt);
    const size_t shards = static_cast<size_t>(config.ingest.workers);
    IngestQueue queue(shards, config.ingest.queue_max_messages, config.ingest.queue_max_bytes);
    metrics.add_gauge("plantd_queue_messages",
                      "Messages received and not yet decoded (queued or in a worker's hands).",
                      [&] { return static_cast<double>(queue.size_messages()); });
    metrics.add_gauge("plantd_queue_bytes", "Bytes waiting in the ingest queue.",
                      [&] { return static_cast<double>(queue.size_bytes()); });
    metrics.add_gauge("plantd_mqtt_connected", "1 while connected to the broker.",
                      [&] { return health.mqtt_connected ? 1.0 : 0.0; });
    metrics.add_gauge("plantd_mqtt_subscribed", "1 while the broker has confirmed every subscription.",
                      [&] { return health.mqtt_subscribed ? 1.0 : 0.0; });
    metrics.add_gauge("plantd_influxdb_ok", "1 while InfluxDB accepts writes.",
                      [&] { return health.influx_failing ? 0.0 : 1.0; });

    // v1: make sure the database exists before the first write (writers also create it on a 404).
    if (config.influxdb.api == InfluxApi::v1 && config.influxdb.create_database &&
        config.influxdb.database.find("{factory_id}") == std::string::npos) {
        InfluxClient client(config.influxdb);
        std::string error = client.create_database(config.influxdb.database);
        if (!error.empty()) spdlog::warn("influxdb: {} (will retry on write)", error);
    }

    // Everything that can fail on bad settings comes before the first thread starts.
    ControlServer control(metrics, health);
    if (!config.control.listen.empty()) {
        if (std::string error = control.start(config.control.listen); !error.empty()) {
            spdlog::critical("{}: {}", config.source, error);
            return 1;
        }
        spdlog::info("control: http://{}/metrics, /health, /ready", config.control.listen);
    }
    MqttSubscriber subscriber(config, router.subscription_filters(), queue, metrics, health);
    if (std::string error = subscriber.create(); !error.empty()) {
        spdlog::critical("{}: {}", config.source, error);
        return 1;
    }

    // The registry (optional): workers check every record against its snapshot.
    std::unique_ptr<DeviceRegistry> registry;
    if (config.registry.enabled) {
        registry = std::make_unique<DeviceRegistry>(config.registry, metrics, health);
        registry->set_destination_of([&config](std::string_view factory_id, const RegistryFactory* factory) {
            return factory && !factory->destination.empty() ? factory->destination
                                                            : destination_for(config.influxdb, factory_id);
        });
        metrics.add_gauge("plantd_registry_ok", "1 while the registry loads from MySQL; 0 while it fails.",
                          [&] { return health.registry_failing ? 0.0 : 1.0; });
        metrics.add_gauge("plantd_registry_load_seconds", "How long the last registry load from MySQL took.",
                          [&] { return static_cast<double>(registry->last_load_ms()) / 1000.0; });
        metrics.add_gauge("plantd_registry_devices", "Devices in the registry snapshot in use.", [&] {
            auto snapshot = registry->snapshot();
            return snapshot ? static_cast<double>(snapshot->device_count) : 0.0;
        });
        metrics.add_gauge("plantd_registry_snapshot_age_seconds",
                          "Age of the registry snapshot in use (-1 before the first load).", [&] {
                              auto snapshot = registry->snapshot();
                              return snapshot ? static_cast<double>(steady_clock_ms() - snapshot->loaded_ms) /
                                                    1000.0
                                              : -1.0;
                          });
        metrics.add_gauge("plantd_registry_pending_lookups",
                          "Devices waiting for a lookup in Redis and MySQL.",
                          [&] { return static_cast<double>(registry->pending_lookups()); });
        metrics.add_gauge("plantd_registry_redis_ok",
                          "1 while the registry's Redis answers (or none is configured).",
                          [&] { return health.redis_failing ? 0.0 : 1.0; });
        metrics.add_gauge("plantd_registry_notifications_subscribed",
                          "1 while plantd listens for registry changes on Redis.",
                          [&] { return registry->notifications_subscribed() ? 1.0 : 0.0; });
        metrics.add_gauge(
            "plantd_registry_cache_hit_ratio",
            "Share of records whose device the in-process cache answered (snapshot or negative "
            "entry), since start.",
            [&] {
                const double memory = static_cast<double>(metrics.registry_memory_hits.load() +
                                                          metrics.registry_negative_hits.load());
                const double looked_up = static_cast<double>(
                    metrics.registry_redis_found.load() + metrics.registry_redis_unknown.load() +
                    metrics.registry_mysql_found.load() + metrics.registry_mysql_unknown.load());
                return memory + looked_up > 0 ? memory / (memory + looked_up) : 1.0;
            });
    }

    std::vector<std::unique_ptr<InfluxWriter>> writers;
    std::vector<std::unique_ptr<Worker>> workers;
    FactoryRateLimiter rate_limiter;
    WorkerServices services{config,         router,     queue,          metrics,
                            **dead_letters, reject_log, registry.get(), &rate_limiter};
    for (size_t i = 0; i < shards; ++i) {
        writers.push_back(
            std::make_unique<InfluxWriter>(i, config.influxdb, metrics, health, **dead_letters, reject_log));
        workers.push_back(std::make_unique<Worker>(i, services, *writers.back()));
        metrics.add_gauge(fmt::format("plantd_writer_pending_batches{{writer=\"{}\"}}", i),
                          "Batches queued for a writer.",
                          [w = writers.back().get()] { return static_cast<double>(w->pending()); });
        metrics.add_gauge(fmt::format("plantd_messages_held{{worker=\"{}\"}}", i),
                          "Messages held until the registry can say whether their devices exist.",
                          [w = workers.back().get()] { return static_cast<double>(w->held()); });
    }

    // The drain, in the only safe order: stop receiving (what the queue has not taken is not
    // acknowledged and stays with the broker), close the queue, let the workers hand over their
    // batches, then let the writers finish by the deadline. It also runs
    // when this scope is left early (an exception), so that no thread is left waiting.
    bool drained = false;
    auto drain = [&](std::chrono::steady_clock::time_point deadline) {
        if (drained) return;
        drained = true;
        health.draining = true;
        for (auto& writer : writers) writer->set_deadline(deadline);
        subscriber.stop();
        queue.close();
        for (auto& worker : workers) worker->join();
        for (auto& writer : writers) writer->finish();
        for (auto& writer : writers) writer->join();
        if (registry) registry->stop();
    };
    struct DrainOnExit {
        std::function<void()> run;
        ~DrainOnExit() { run(); }
    } drain_on_exit{[&] {
        drain(std::chrono::steady_clock::now());
        control.stop();  // its gauges read the registry and the writers: stop scrapes before they go
    }};

    if (registry) registry->start();
    for (auto& writer : writers) writer->start();
    for (auto& worker : workers) worker->start();
    subscriber.start();
    systemd::notify_ready();
    spdlog::info("plantd {} running: {} workers, InfluxDB {} ({})", config.instance, shards,
                 config.influxdb.url, config.influxdb.api == InfluxApi::v1 ? "v1" : "v2");

    // Main loop: wait for a signal; feed the systemd watchdog only while every worker turns its loop.
    const auto watchdog = systemd::watchdog_interval();
    const int64_t watchdog_ms = std::chrono::duration_cast<std::chrono::milliseconds>(watchdog).count();
    const timespec tick{0, 250'000'000};
    while (true) {
        int signal = sigtimedwait(&signals, nullptr, &tick);
        if (signal == SIGTERM || signal == SIGINT) {
            spdlog::info("received {}: draining", signal == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        if (signal == SIGHUP)
            spdlog::info("received SIGHUP: nothing to reload yet (rules come with the rule engine)");
        if (watchdog_ms > 0) {
            bool progressing = true;
            for (auto& worker : workers) progressing &= worker->alive(steady_clock_ms(), watchdog_ms / 2);
            if (progressing) systemd::notify_watchdog();
        }
    }

    // Drain: stop receiving first, so that nothing is acknowledged that is not then written.
    systemd::notify_stopping();
    // The deadline starts now: a writer stuck on a dead InfluxDB must free the workers waiting on it.
    drain(std::chrono::steady_clock::now() + std::chrono::milliseconds(config.shutdown.drain_timeout_ms));
    control.stop();
    log_accounting(metrics);
    spdlog::info("plantd stopped");
    return 0;
}

}  // namespace plantd
