#include "app/daemon.hpp"

#include <csignal>
#include <functional>
#include <memory>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "alerting/alert_acks.hpp"
#include "alerting/alert_delivery.hpp"
#include "alerting/alert_sinks.hpp"
#include "alerting/rule_feed.hpp"
#include "alerting/rule_runner.hpp"
#include "app/http_server.hpp"
#include "control/health.hpp"
#include "control/metrics.hpp"
#include "control/rate_limited_log.hpp"
#include "control/systemd_notify.hpp"
#include "decoding/topic_template.hpp"
#include "durability/dead_letter_store.hpp"
#include "durability/disk_buffer.hpp"
#include "durability/write_ahead_log.hpp"
#include "mqtt/mqtt_publisher.hpp"
#include "pipeline/ingest_queue.hpp"
#include "pipeline/worker.hpp"
#include "registry/device_registry.hpp"
#include "registry/redis_channel_listener.hpp"
#include "rules/rule_loader.hpp"
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
        "accounting: messages received {} = accepted {} + rejected {}; records accepted {} + recovered {} = "
        "points written {} + points rejected {} + buffered {}",
        metrics.messages_received.load(), metrics.messages_accepted.load(),
        metrics.rejected_total(RejectScope::message), metrics.records_accepted.load(),
        metrics.points_recovered.load(), metrics.points_written(), metrics.rejected_total(RejectScope::point),
        metrics.points_buffered.load());
}

constexpr int64_t alert_drain_ms = 3'000;

void register_rule_metrics(Metrics& metrics, const RuleFeed& feed, const RuleRunner& runner,
                           const MqttPublisher& publisher,
                           const std::vector<std::unique_ptr<AlertDelivery>>& destinations) {
    const auto& c = runner.counters();
    auto value = [](const auto& atomic) { return [&atomic] { return static_cast<double>(atomic.load()); }; };
    metrics.add_gauge("plantd_rules_loaded", "Rules in use.", value(c.rules_loaded));
    metrics.add_counter("plantd_rules_reloads_total{result=\"ok\"}",
                        "Rule reloads (SIGHUP or a file change).", value(c.reloads));
    metrics.add_counter("plantd_rules_reloads_total{result=\"failed\"}",
                        "Rule reloads (SIGHUP or a file change).", value(c.reload_failures));
    metrics.add_gauge("plantd_rules_last_reload_ok",
                      "0 while the last reload failed (the previous rules run).",
                      [&runner] { return runner.last_reload_error().empty() ? 1.0 : 0.0; });
    metrics.add_counter("plantd_rule_records_total", "Records handed to the rule engine.",
                        [&feed] { return static_cast<double>(feed.offered() - feed.dropped()); });
    metrics.add_counter("plantd_rule_records_dropped_total",
                        "Records the rule engine did not see because it was queue_max_records behind.",
                        [&feed] { return static_cast<double>(feed.dropped()); });
    metrics.add_gauge("plantd_rule_queue_records", "Records waiting for the rule engine.",
                      [&feed] { return static_cast<double>(feed.size()); });
    metrics.add_counter("plantd_rule_evaluations_total", "Conditions evaluated.", value(c.evaluations));
    metrics.add_counter("plantd_rule_unknown_conditions_total",
                        "Conditions left unknown: an input missing or older than value_ttl, or not a number.",
                        value(c.unknown_conditions));
    metrics.add_gauge("plantd_alerts_active", "Alerts pending or firing.", value(c.active_alerts));
    metrics.add_counter("plantd_alert_events_total{state=\"pending\"}", "Alert transitions.",
                        value(c.events_pending));
    metrics.add_counter("plantd_alert_events_total{state=\"firing\"}", "Alert transitions.",
                        value(c.events_firing));
    metrics.add_counter("plantd_alert_events_total{state=\"resolved\"}", "Alert transitions.",
                        value(c.events_resolved));
    metrics.add_counter("plantd_alert_acknowledgements_total", "Acknowledgements applied.",
                        value(c.acknowledgements));
    metrics.add_counter("plantd_alert_state_save_failures_total", "Failed saves of the rule state to Redis.",
                        value(c.state_save_failures));
    metrics.add_gauge("plantd_alert_mqtt_connected", "1 while the alert publisher is connected.",
                      [&publisher] { return publisher.connected() ? 1.0 : 0.0; });
    metrics.add_gauge("plantd_alert_mqtt_outbox", "Alert messages not yet acknowledged by the broker.",
                      [&publisher] { return static_cast<double>(publisher.pending()); });
    metrics.add_counter("plantd_alert_mqtt_acknowledged_total", "Alert messages the broker acknowledged.",
                        [&publisher] { return static_cast<double>(publisher.acknowledged()); });
    for (const auto& destination : destinations) {
        const AlertDelivery* d = destination.get();
        const std::string label = fmt::format("{{destination=\"{}\"}}", d->name());
        metrics.add_gauge("plantd_alert_delivery_pending" + label, "Alert events waiting for a destination.",
                          [d] { return static_cast<double>(d->pending()); });
        metrics.add_counter("plantd_alert_deliveries_total" + label, "Alert events delivered.",
                            [d] { return static_cast<double>(d->delivered()); });
        metrics.add_counter("plantd_alert_delivery_failures_total" + label, "Failed tries (retried).",
                            [d] { return static_cast<double>(d->failures()); });
        metrics.add_counter("plantd_alert_delivery_refused_total" + label,
                            "Alert events a destination refused.",
                            [d] { return static_cast<double>(d->refused()); });
        metrics.add_counter("plantd_alert_delivery_dropped_total" + label,
                            "Alert events dropped: alert_max_pending were waiting.",
                            [d] { return static_cast<double>(d->dropped()); });
    }
}

}  // namespace

std::string check_rules(const std::string& directory) {
    auto files = rules::read_rule_directory(directory);
    if (!files) return files.error();
    auto set = rules::build_rule_set(*files);
    return set ? std::string() : set.error();
}

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

    // The write-ahead log (unless durability is "memory"): opened, and locked against a second plantd,
    // before anything is received; what a previous run left is replayed once the workers run.
    std::unique_ptr<WriteAheadLog> wal;
    if (config.durability.mode != DurabilityMode::memory) {
        auto opened = WriteAheadLog::open(config.durability, config.ingest.max_payload_bytes + 128 * 1024);
        if (!opened) {
            spdlog::critical("{}: {}", config.source, opened.error());
            return 1;
        }
        wal = std::move(*opened);
        health.wal_enabled = true;
        metrics.add_gauge("plantd_wal_bytes", "Bytes in the write-ahead log.",
                          [&] { return static_cast<double>(wal->bytes()); });
        metrics.add_gauge("plantd_wal_segments", "Segment files of the write-ahead log.",
                          [&] { return static_cast<double>(wal->segment_count()); });
        metrics.add_gauge(
            "plantd_wal_unresolved_messages",
            "Messages in the write-ahead log not yet written, rejected or moved to the disk buffer.",
            [&] { return static_cast<double>(wal->unresolved()); });
        metrics.add_counter("plantd_wal_fsyncs_total", "fsyncs of the write-ahead log (mode \"power\").",
                            [&] { return static_cast<double>(wal->fsyncs()); });
        metrics.add_counter("plantd_wal_write_failures_total",
                            "Failed writes to the write-ahead log (nothing was acknowledged meanwhile).",
                            [&] { return static_cast<double>(wal->write_failures()); });
        metrics.add_gauge("plantd_wal_ok",
                          "1 while the write-ahead log can be written and is below wal_max_bytes.",
                          [&] { return health.wal_failing || health.wal_full ? 0.0 : 1.0; });
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
    MqttSubscriber subscriber(config, router.subscription_filters(), queue, metrics, health, wal.get());
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

    // Rules and alerts (optional): workers feed the runner; the runner hands events to the destinations.
    std::unique_ptr<RuleFeed> rule_feed;
    std::unique_ptr<MqttPublisher> alert_publisher;
    std::vector<std::unique_ptr<AlertDelivery>> alert_destinations;
    std::unique_ptr<RuleRunner> rule_runner;
    std::unique_ptr<RedisChannelListener> ack_listener;
    if (!config.rules.directory.empty()) {
        const auto& r = config.rules;
        rule_feed = std::make_unique<RuleFeed>(r.queue_max_records);
        alert_publisher =
            std::make_unique<MqttPublisher>(config, config.mqtt.client_id + "-alerts", r.alert_max_pending);
        if (std::string error = alert_publisher->create(); !error.empty()) {
            spdlog::critical("{}: {}", config.source, error);
            return 1;
        }
        alert_destinations.push_back(std::make_unique<AlertDelivery>(
            std::make_unique<MqttAlertSink>(*alert_publisher, r.alert_topic), r.alert_max_pending));
        if (config.registry.enabled && r.alert_mysql) {
            alert_destinations.push_back(std::make_unique<AlertDelivery>(
                std::make_unique<MysqlAlertSink>(config.registry), r.alert_max_pending));
        }
        auto destination_of = [&config, &registry](std::string_view factory_id) {
            if (registry) {
                if (auto snapshot = registry->snapshot()) {
                    const RegistryFactory* factory = snapshot->factory(factory_id);
                    if (factory && !factory->destination.empty()) return factory->destination;
                }
            }
            return destination_for(config.influxdb, factory_id);
        };
        alert_destinations.push_back(std::make_unique<AlertDelivery>(
            std::make_unique<InfluxAlertSink>(config.influxdb, r.alert_measurement, destination_of),
            r.alert_max_pending));
        std::vector<AlertDelivery*> destinations;
        for (auto& destination : alert_destinations) destinations.push_back(destination.get());
        rule_runner = std::make_unique<RuleRunner>(config, *rule_feed, destinations, health);
        if (std::string error = rule_runner->load(); !error.empty()) {
            spdlog::critical("invalid rules:\n{}", error);
            return 1;
        }
        health.rules_enabled = true;
        if (!config.registry.redis_host.empty()) {
            ack_listener = std::make_unique<RedisChannelListener>(
                config.registry, alert_ack_channel(config.registry), "plantd-acks",
                [](const std::string& message) { return parse_alert_ack(message).has_value(); },
                [&rule_runner](const std::string& message) {
                    if (auto ack = parse_alert_ack(message))
                        rule_runner->acknowledge(ack->factory_id, ack->alert_id, ack->by);
                });
        }
        register_rule_metrics(metrics, *rule_feed, *rule_runner, *alert_publisher, alert_destinations);
    }

    std::vector<std::unique_ptr<InfluxWriter>> writers;
    std::vector<std::unique_ptr<Worker>> workers;
    FactoryRateLimiter rate_limiter;
    WorkerServices services{config,     router,         queue,         metrics,         **dead_letters,
                            reject_log, registry.get(), &rate_limiter, rule_feed.get(), wal.get()};
    const bool disk_buffer = wal && config.durability.buffer_max_bytes > 0;
    health.buffer_enabled = disk_buffer;
    for (size_t i = 0; i < shards; ++i) {
        WriterDurability durability{wal.get(), std::nullopt, config.durability.buffer_full_policy};
        if (disk_buffer) {
            auto buffer = DiskBuffer::open(config.durability, i, shards);
            if (!buffer) {
                spdlog::critical("{}: {}", config.source, buffer.error());
                return 1;
            }
            durability.buffer = std::move(*buffer);
        }
        writers.push_back(std::make_unique<InfluxWriter>(i, config.influxdb, metrics, health, **dead_letters,
                                                         reject_log, std::move(durability)));
        workers.push_back(std::make_unique<Worker>(i, services, *writers.back()));
        metrics.add_gauge(fmt::format("plantd_writer_pending_batches{{writer=\"{}\"}}", i),
                          "Batches queued for a writer.",
                          [w = writers.back().get()] { return static_cast<double>(w->pending()); });
        metrics.add_gauge(fmt::format("plantd_buffer_batches{{writer=\"{}\"}}", i),
                          "Batches waiting in the disk buffer for InfluxDB.",
                          [w = writers.back().get()] { return static_cast<double>(w->buffered_batches()); });
        metrics.add_gauge(fmt::format("plantd_buffer_bytes{{writer=\"{}\"}}", i), "Bytes of the disk buffer.",
                          [w = writers.back().get()] { return static_cast<double>(w->buffered_bytes()); });
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
        // The rules see every record the workers accepted, then the alerts get a few seconds to leave.
        if (rule_runner) rule_runner->stop();
        if (ack_listener) ack_listener->stop();
        for (auto& destination : alert_destinations) destination->stop(alert_drain_ms);
        if (alert_publisher) alert_publisher->stop(alert_drain_ms);
        for (auto& writer : writers) writer->finish();
        for (auto& writer : writers) writer->join();
        if (wal) wal->close();  // deletes what is resolved; anything else is replayed at the next start
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
    if (alert_publisher) alert_publisher->start();
    for (auto& destination : alert_destinations) destination->start();
    if (rule_runner) rule_runner->start();
    if (ack_listener) ack_listener->start();
    for (auto& writer : writers) writer->start();
    for (auto& worker : workers) worker->start();
    bool stop_requested = false;
    if (wal) {
        // What the previous run had acknowledged but not finished goes through the pipeline first. A
        // stop request is honoured meanwhile (the workers may wait for the registry): what is not
        // replayed yet stays in the log.
        const timespec no_wait{0, 0};
        const auto recovery = wal->recover([&](RawMessage&& message) {
            while (!stop_requested) {
                if (queue.push(message, std::chrono::milliseconds(100)) != IngestQueue::PushStatus::full) {
                    metrics.messages_received.fetch_add(1, std::memory_order_relaxed);
                    metrics.bytes_received.fetch_add(message.size_bytes(), std::memory_order_relaxed);
                    metrics.wal_replayed.fetch_add(1, std::memory_order_relaxed);
                    return;
                }
                const int signal = sigtimedwait(&signals, nullptr, &no_wait);
                if (signal == SIGTERM || signal == SIGINT) {
                    spdlog::info("received a stop request while replaying the write-ahead log");
                    stop_requested = true;
                }
            }
        });
        if (recovery.segments > 0)
            spdlog::info(
                "write-ahead log: replayed {} messages from {} segments left by the previous run "
                "({} damaged bytes skipped, {} bytes of a cut-short last write)",
                recovery.records, recovery.segments, recovery.corrupt_bytes, recovery.torn_bytes);
    }
    if (!stop_requested) subscriber.start();
    systemd::notify_ready();
    spdlog::info("plantd {} running: {} workers, InfluxDB {} ({})", config.instance, shards,
                 config.influxdb.url, config.influxdb.api == InfluxApi::v1 ? "v1" : "v2");

    // Main loop: wait for a signal; feed the systemd watchdog only while every worker turns its loop.
    const auto watchdog = systemd::watchdog_interval();
    const int64_t watchdog_ms = std::chrono::duration_cast<std::chrono::milliseconds>(watchdog).count();
    const timespec tick{0, 250'000'000};
    while (!stop_requested) {
        int signal = sigtimedwait(&signals, nullptr, &tick);
        if (signal == SIGTERM || signal == SIGINT) {
            spdlog::info("received {}: draining", signal == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        if (signal == SIGHUP) {
            if (rule_runner) {
                spdlog::info("received SIGHUP: reloading the rules");
                rule_runner->request_reload();
            } else {
                spdlog::info("received SIGHUP: no [rules] directory configured, nothing to reload");
            }
        }
        uint64_t on_disk = 0;
        for (auto& writer : writers) on_disk += writer->buffered_batches();
        health.buffer_in_use = on_disk > 0;
        if (watchdog_ms > 0) {
            bool progressing = true;
            const int64_t now = steady_clock_ms();
            for (auto& worker : workers) progressing &= worker->alive(now, watchdog_ms / 2);
            for (auto& writer : writers) progressing &= now - writer->heartbeat_ms() < watchdog_ms / 2;
            progressing &= subscriber.alive(now, watchdog_ms / 2);
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
