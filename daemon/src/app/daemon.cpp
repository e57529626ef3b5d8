#include "app/daemon.hpp"

#include <csignal>
#include <memory>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "alerting/alert_acks.hpp"
#include "alerting/alert_delivery.hpp"
#include "alerting/alert_sinks.hpp"
#include "alerting/alertmanager_sink.hpp"
#include "alerting/rule_feed.hpp"
#include "alerting/rule_runner.hpp"
#include "app/dead_letter_replay.hpp"
#include "app/http_server.hpp"
#include "app/sparkplug_link.hpp"
#include "app/startup_checks.hpp"
#include "control/accounting.hpp"
#include "control/health.hpp"
#include "control/http_listener.hpp"
#include "control/log_format.hpp"
#include "control/metrics_registry.hpp"
#include "control/process_metrics.hpp"
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
#include "sparkplug/sparkplug_topic.hpp"
#include "subscriber/mqtt_subscriber.hpp"
#include "util/build_info.hpp"
#include "util/clock.hpp"
#include "util/service.hpp"
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
    spdlog::set_formatter(make_log_formatter(stderr_is_journal()));
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

    MetricsRegistry metrics;
    Accounting accounting;
    accounting.register_metrics(metrics);
    Health health;
    RateLimitedLog reject_log(std::chrono::milliseconds(config.log.reject_log_interval_ms));

    auto dead_letters = DeadLetterStore::open(config.dead_letter.path, config.dead_letter.max_bytes,
                                              config.dead_letter.factory_share);
    if (!dead_letters) {
        spdlog::critical("{}", dead_letters.error());
        return 1;
    }
    (*dead_letters)->register_metrics(metrics);

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
        wal->register_metrics(metrics, health);
    }

    TopicRouter router = make_router(config.mqtt);
    const size_t shards = static_cast<size_t>(config.ingest.workers);
    IngestQueue queue(shards, config.ingest.queue_max_messages, config.ingest.queue_max_bytes);
    queue.register_metrics(metrics);
    WriterStats writer_stats;
    writer_stats.register_metrics(metrics, health, config.control.detailed_latency);
    register_process_metrics(metrics);

    if (const int code = check_dependencies(config, health); code != 0) return code;

    // v1: make sure the database exists before the first write (writers also create it on a 404).
    if (config.influxdb.api == InfluxApi::v1 && config.influxdb.create_database &&
        config.influxdb.database.find("{factory_id}") == std::string::npos) {
        InfluxClient client(config.influxdb);
        std::string error = client.create_database(config.influxdb.database);
        if (!error.empty()) spdlog::warn("influxdb: {} (will retry on write)", error);
    }

    // Everything that can fail on bad settings comes before the first thread starts. The control
    // server starts serving only once every component it reads exists (it is stopped before they go).
    ControlServer control(metrics, accounting, health);
    std::vector<std::string> filters = router.subscription_filters();
    if (config.sparkplug.enabled)
        for (std::string& filter : sparkplug::subscription_filters()) filters.push_back(std::move(filter));
    MqttSubscriber subscriber(config, std::move(filters), queue, accounting, health, wal.get());
    ReplayInbox replay_inbox;  // the operator's dead-letter replays, taken by the subscriber's thread
    subscriber.set_replay_inbox(&replay_inbox);
    DeadLetterReplayer replayer(config.dead_letter.path, replay_inbox);
    replayer.register_metrics(metrics);
    // Progress as the watchdog sees it: when every worker, writer and session last turned its loop.
    const int64_t watchdog_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(systemd::watchdog_interval()).count();
    std::atomic<int64_t> last_progress_ms{steady_clock_ms()};
    metrics.add_gauge("plantd_watchdog_interval_seconds",
                      "The systemd watchdog interval (WatchdogSec=; 0: no watchdog).",
                      [watchdog_ms] { return static_cast<double>(watchdog_ms) / 1000.0; });
    metrics.add_gauge("plantd_progress_age_seconds",
                      "Seconds since every worker, writer and MQTT session was last seen turning its loop "
                      "(the watchdog is fed only while this is below half its interval).",
                      [&last_progress_ms] {
                          return static_cast<double>(steady_clock_ms() - last_progress_ms.load()) / 1000.0;
                      });
    metrics.add_gauge("plantd_wal_max_bytes", "[durability] wal_max_bytes: the write-ahead log's bound.",
                      [&config] { return static_cast<double>(config.durability.wal_max_bytes); });
    metrics.add_gauge("plantd_buffer_max_bytes",
                      "[durability] buffer_max_bytes: the disk buffer's bound (0: no disk buffer).",
                      [&config] {
                          return config.durability.mode == DurabilityMode::memory
                                     ? 0.0
                                     : static_cast<double>(config.durability.buffer_max_bytes);
                      });
    if (std::string error = subscriber.create(); !error.empty()) {
        spdlog::critical("{}: {}", config.source, error);
        return 1;
    }
    subscriber.register_metrics(metrics);

    // The registry (optional): workers check every record against its snapshot.
    std::unique_ptr<DeviceRegistry> registry;
    if (config.registry.enabled) {
        registry = std::make_unique<DeviceRegistry>(config.registry, health);
        registry->set_destination_trusted(
            [&config](std::string_view factory_id, std::string_view destination) {
                const auto& allowed = config.registry.allowed_destinations;
                return destination == destination_for(config.influxdb, factory_id) ||
                       std::find(allowed.begin(), allowed.end(), destination) != allowed.end();
            });
        registry->set_destination_of([&config](std::string_view factory_id, const RegistryFactory* factory) {
            return factory && !factory->destination.empty() ? factory->destination
                                                            : destination_for(config.influxdb, factory_id);
        });
        registry->register_metrics(metrics);
    }

    // Rules and alerts (optional): workers feed the runner; the runner hands events to the destinations.
    std::unique_ptr<RuleFeed> rule_feed;
    std::unique_ptr<MqttPublisher> alert_publisher;
    std::vector<std::unique_ptr<AlertDelivery>> alert_destinations;
    std::unique_ptr<RuleRunner> rule_runner;
    std::unique_ptr<RedisChannelListener> ack_listener;
    // Alert points go through a writer of their own (the telemetry's response policy, its own ledger:
    // they are not telemetry), so that a slow alert never waits behind telemetry batches or the reverse.
    Accounting alert_points;
    WriterStats alert_writer_stats;
    Health alert_writer_health;  // its own: a failing alert write does not make telemetry look failing
    std::unique_ptr<InfluxWriter> alert_writer;
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
        if (config.registry.enabled && r.alert_mysql)
            alert_destinations.push_back(std::make_unique<AlertDelivery>(
                std::make_unique<MysqlAlertSink>(config.registry), r.alert_max_pending));
        if (!r.alertmanager_url.empty())
            alert_destinations.push_back(std::make_unique<AlertDelivery>(
                std::make_unique<AlertmanagerSink>(r.alertmanager_url, r.alertmanager_resend_ms),
                r.alert_max_pending));
        auto destination_of = [&config, &registry](std::string_view factory_id) {
            if (registry) {
                if (auto snapshot = registry->snapshot()) {
                    const RegistryFactory* factory = snapshot->factory(factory_id);
                    if (factory && !factory->destination.empty()) return factory->destination;
                }
            }
            return destination_for(config.influxdb, factory_id);
        };
        alert_writer =
            std::make_unique<InfluxWriter>(shards, config.influxdb, alert_points, alert_writer_stats,
                                           alert_writer_health, **dead_letters, reject_log);
        metrics.add_gauge("plantd_alert_influxdb_ok", "1 while InfluxDB accepts alert points.",
                          [&alert_writer_health] { return alert_writer_health.influx_failing ? 0.0 : 1.0; });
        metrics.add_counter("plantd_alert_points_written_total", "Alert points InfluxDB acknowledged.",
                            [&alert_points] { return static_cast<double>(alert_points.points_written()); });
        metrics.add_counter(
            "plantd_alert_points_rejected_total",
            "Alert points InfluxDB refused, or not written before the stop's deadline (dead-lettered).",
            [&alert_points] { return static_cast<double>(alert_points.rejected_total(RejectScope::point)); });
        metrics.add_gauge(
            "plantd_alert_points_pending", "Alert points handed to the alert writer, not yet resolved.",
            [&alert_points] { return static_cast<double>(alert_points.points_buffered.load()); });
        alert_destinations.push_back(std::make_unique<AlertDelivery>(
            std::make_unique<InfluxAlertSink>(*alert_writer, alert_points, r.alert_measurement,
                                              destination_of),
            r.alert_max_pending));
        std::vector<AlertDelivery*> destinations;
        for (auto& destination : alert_destinations) destinations.push_back(destination.get());
        RuleLint::FactoryKnown factory_known;
        if (registry) {
            factory_known = [&registry](std::string_view factory_id) -> std::optional<bool> {
                auto snapshot = registry->snapshot();
                if (!snapshot) return std::nullopt;
                return snapshot->factory(factory_id) != nullptr;
            };
        }
        RegisteredDevices registered;
        if (registry) registered = registered_devices_of(*registry);
        rule_runner = std::make_unique<RuleRunner>(config, *rule_feed, destinations, health, factory_known,
                                                   std::move(registered));
        rule_runner->set_input_probe([&health] { return input_status_of(health); });
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
        rule_feed->register_metrics(metrics);
        rule_runner->register_metrics(metrics);
        alert_publisher->register_metrics(metrics);
        for (const auto& destination : alert_destinations) destination->register_metrics(metrics);
    }

    std::unique_ptr<SparkplugLink> sparkplug_link;  // STATE and rebirth requests
    if (config.sparkplug.enabled) {
        sparkplug_link = std::make_unique<SparkplugLink>(config);
        if (std::string error = sparkplug_link->create(); !error.empty()) {
            spdlog::critical("{}: {}", config.source, error);
            return 1;
        }
        sparkplug_link->register_metrics(metrics);
    }

    std::vector<std::unique_ptr<InfluxWriter>> writers;
    std::vector<std::unique_ptr<Worker>> workers;
    FactoryRateLimiter rate_limiter;
    // Without a registry: each field's type per database, starting from what InfluxDB already holds.
    InfluxConfig field_keys_config = config.influxdb;
    field_keys_config.request_timeout_ms = 2'000;  // a worker waits for it: briefly, and once per database
    InfluxClient field_keys_client(field_keys_config);  // used under FieldTypes' lock only
    FieldTypes::Seed seed;
    if (config.influxdb.api == InfluxApi::v1) {
        seed = [&](std::string_view database)
            -> std::optional<std::vector<std::pair<std::string, ParameterType>>> {
            auto keys = field_keys_client.field_keys(database, config.influxdb.measurement);
            if (!keys) return std::nullopt;
            std::vector<std::pair<std::string, ParameterType>> types;
            for (auto& [name, type] : *keys)
                if (auto known = type_from_influx(type)) types.emplace_back(std::move(name), *known);
            return types;
        };
    }
    FieldTypes field_types(100'000, seed);
    WorkerServices services{config,          router,     queue,          accounting,
                            **dead_letters,  reject_log, registry.get(), &rate_limiter,
                            rule_feed.get(), wal.get(),  &field_types,   sparkplug_link.get()};
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
        writers.push_back(std::make_unique<InfluxWriter>(i, config.influxdb, accounting, writer_stats, health,
                                                         **dead_letters, reject_log, std::move(durability)));
        workers.push_back(std::make_unique<Worker>(i, services, *writers.back()));
        writers.back()->register_metrics(metrics);
        workers.back()->register_metrics(metrics);
    }

    if (!config.control.listen.empty()) {
        if (std::string error = control.start(config.control.listen); !error.empty()) {
            spdlog::critical("{}: {}", config.source, error);
            return 1;
        }
        spdlog::info("control: http://{}/metrics, /health, /ready", config.control.listen);
    }
    // The operator's commands: a Unix socket that only plantd's user and group may open.
    HttpListener operator_socket;
    operator_socket.route("/version", [] {
        return HttpResponse{200, "text/plain", build_info::describe() + "\n"};
    });
    operator_socket.route_action("/deadletter/replay", [&replayer](std::string_view query) {
        auto request = parse_replay_query(query);
        if (!request) return HttpResponse{400, "text/plain; charset=utf-8", request.error() + "\n"};
        return HttpResponse{200, "application/json", to_json(replayer.replay(*request)) + "\n"};
    });
    if (std::string error = operator_socket.start_unix(control_socket_path(config)); !error.empty())
        spdlog::warn("control: no operator socket ({}): `plantd deadletter replay` cannot reach this plantd",
                     error);

    // Started in the order in which each stage's consumers are there before it, and stopped (once,
    // also when this scope is left early) in the reverse one: receiving stops first (what the queue
    // has not taken is not acknowledged and stays with the broker), the queue closes, the workers
    // hand over their batches, the rules see every accepted record and their alerts get a few seconds
    // to leave, the writers finish by the deadline, and the log closes last.
    ServiceGroup services_started;
    struct StopOnExit {
        ServiceGroup& services;
        ControlServer& control;
        ~StopOnExit() {
            services.stop_all(std::chrono::steady_clock::now());
            control.stop();  // its gauges read the registry and the writers: stop scrapes before they go
        }
    } stop_on_exit{services_started, control};

    if (wal) services_started.start(*wal);
    if (registry) services_started.start(*registry);
    for (auto& writer : writers) services_started.start(*writer);
    if (alert_writer) services_started.start(*alert_writer);
    if (alert_publisher) services_started.start(*alert_publisher);
    // In reverse: the InfluxDB destination (which may wait on its writer while InfluxDB is down) stops
    // after MQTT and MySQL have had their drain.
    for (auto it = alert_destinations.rbegin(); it != alert_destinations.rend(); ++it)
        services_started.start(**it);
    if (rule_runner) services_started.start(*rule_runner);
    if (ack_listener) services_started.start(*ack_listener);
    if (sparkplug_link) services_started.start(*sparkplug_link);
    for (auto& worker : workers) services_started.start(*worker);
    services_started.start(queue);
    bool stop_requested = false;
    if (wal) {
        // What the previous run had acknowledged but not finished goes through the pipeline first. A
        // stop request is honoured meanwhile (the workers may wait for the registry): what is not
        // replayed yet stays in the log.
        const timespec no_wait{0, 0};
        // A long replay must not run into systemd's start timeout: ask for more time as it goes.
        int64_t last_extension_ms = 0;
        uint64_t replayed = 0;
        auto extend = [&] {
            if (steady_clock_ms() - last_extension_ms < 5'000) return;
            last_extension_ms = steady_clock_ms();
            systemd::notify_extend_timeout(std::chrono::seconds(30));
            systemd::notify_status(
                fmt::format("replaying the write-ahead log: {} messages so far", replayed));
        };
        health.wal_replaying = true;
        const auto recovery = wal->recover([&](RawMessage&& message) {
            ++replayed;
            message.replayed = true;
            while (!stop_requested) {
                extend();  // also while a full queue waits on a registry or an InfluxDB that is away
                if (queue.push(message, std::chrono::milliseconds(100)) != IngestQueue::PushStatus::full) {
                    accounting.messages_received.fetch_add(1, std::memory_order_relaxed);
                    accounting.bytes_received.fetch_add(message.size_bytes(), std::memory_order_relaxed);
                    wal->count_replayed();
                    return;
                }
                const int signal = sigtimedwait(&signals, nullptr, &no_wait);
                if (signal == SIGTERM || signal == SIGINT) {
                    spdlog::info("received a stop request while replaying the write-ahead log");
                    stop_requested = true;
                }
            }
        });
        health.wal_replaying = false;
        if (recovery.segments > 0)
            spdlog::info(
                "write-ahead log: replayed {} messages from {} segments left by the previous run "
                "({} damaged bytes skipped, {} bytes of a cut-short last write)",
                recovery.records, recovery.segments, recovery.corrupt_bytes, recovery.torn_bytes);
    }
    if (!stop_requested) services_started.start(subscriber);
    systemd::notify_ready();
    spdlog::info("plantd {} running: {} workers, InfluxDB {} ({})", config.instance, shards,
                 config.influxdb.url, config.influxdb.api == InfluxApi::v1 ? "v1" : "v2");

    // Main loop: wait for a signal; feed the systemd watchdog only while every worker turns its loop.
    const timespec tick{0, 250'000'000};
    int64_t last_influx_probe_ms = steady_clock_ms();
    bool influx_unanswered = health.influx_failing;  // only the start-up check has set it so far
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
        // InfluxDB did not answer at start-up: ask again until it does, so that /ready turns 200 when
        // it is back, before the first record arrives or when the first batch was refused as data.
        // While a writer is retrying on a destination, that writer says whether InfluxDB takes writes.
        const bool writers_failing = writer_stats.destinations.failing() > 0;
        if (influx_unanswered && !health.influx_failing) {
            influx_unanswered = false;
        } else if (influx_unanswered && !writers_failing && writer_stats.batches_written.load() > 0) {
            influx_unanswered = false;
            health.influx_failing = false;
            health.set_influx_error({});
            spdlog::info("influxdb: answering at {} now", config.influxdb.url);
        } else if (influx_unanswered && !writers_failing &&
                   steady_clock_ms() - last_influx_probe_ms >= 5'000) {
            last_influx_probe_ms = steady_clock_ms();
            if (recheck_influxdb(config.influxdb, health)) {
                // A writer that began retrying during the probe has the last word.
                if (writer_stats.destinations.failing() > 0) {
                    health.influx_failing = true;
                } else {
                    influx_unanswered = false;
                    spdlog::info("influxdb: answering at {} now", config.influxdb.url);
                }
            }
        }
        reject_log.log_summary();
        uint64_t on_disk = 0;
        for (auto& writer : writers) on_disk += writer->buffered_batches();
        health.buffer_in_use = on_disk > 0;
        const int64_t now_ms = steady_clock_ms();
        if (services_started.alive(now_ms, watchdog_ms > 0 ? watchdog_ms / 2 : 15'000)) {
            last_progress_ms.store(now_ms);
            if (watchdog_ms > 0) systemd::notify_watchdog();
        }
    }

    // Drain: stop receiving first, so that nothing is acknowledged that is not then written (and no
    // replay is taken any more).
    systemd::notify_stopping();
    replay_inbox.close();  // a replay in progress ends now, so that the drain keeps its time
    operator_socket.stop();
    // The deadline starts now: a writer stuck on a dead InfluxDB must free the workers waiting on it.
    health.draining = true;
    services_started.stop_all(std::chrono::steady_clock::now() +
                              std::chrono::milliseconds(config.shutdown.drain_timeout_ms));
    control.stop();
    spdlog::info("accounting: {}", accounting.summary());
    spdlog::info("plantd stopped");
    return 0;
}

}  // namespace plantd
