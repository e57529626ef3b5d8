#!/usr/bin/env python3
"""Live test of plantd's monitoring: plantd on the local stack, scraped by a real Prometheus.

  eval "$(scripts/stack env | sed 's/^/export /')"
  python3 tests/monitoring/test_prometheus.py [PLANTD_BINARY]

Needs the running stack (scripts/stack up: mosquitto, InfluxDB, Redis, MariaDB; it is neither started
nor stopped here), /usr/bin/prometheus, /usr/bin/promtool, mosquitto_pub, mysql and redis-cli. The
binary is argv[1], else $PLANTD_BINARY, else build/daemon/plantd. $PROMETHEUS_BINARY and
$PROMTOOL_BINARY override the Prometheus tools.

What it does: a scratch registry database (MariaDB), a unique factory, device, topic prefix, Redis
prefix and InfluxDB database; plantd with the registry, Redis, a rule that fires and a free control
port; Prometheus on a free loopback port scraping plantd every second with
monitoring/prometheus/plantd-alerts.yml loaded. It publishes GOOD good and BAD malformed messages
with mosquitto_pub (QoS 1), asks the daemon for a dry run of `plantd deadletter replay`, then asserts
through Prometheus' HTTP API:
- the exact counts (received, accepted, rejected as malformed_json, points written, dead letters,
  alert deliveries, dead-letter replays) and health gauges, the configured bounds plantd exports
  (plantd_wal_max_bytes, plantd_buffer_max_bytes), no watchdog outside systemd, and a small progress
  age;
- that the rule file loaded, every rule evaluates without error, every alert has a severity, a
  summary, a description and a runbook link whose anchor is a heading of the runbook, and that no
  alert fires on this healthy plantd;
- that every query of monitoring/grafana/plantd-dashboard.json returns finite data (variables at
  "All" and at this plantd), and its template variables' queries find this plantd;
and that `promtool check metrics` finds nothing in a real scrape of /metrics, and that every metric
name the rules, the dashboard and the runbook mention is one plantd exposes. It also runs
`promtool check rules` and `promtool test rules` first. Everything it started or created is removed
at the end, also on failure. Exit code 0: passed; 1: failed (the reason is printed); 2: cannot run
(setup missing).
"""
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(REPO, "monitoring", "prometheus", "plantd-alerts.yml")
RULE_TESTS = os.path.join(REPO, "monitoring", "prometheus", "plantd-alerts.test.yml")
DASHBOARD = os.path.join(REPO, "monitoring", "grafana", "plantd-dashboard.json")
RUNBOOKS = [os.path.join(REPO, "docs", "OPERATIONS.md")]

GOOD = 20  # good messages, one record (one point) each
BAD = 5  # malformed JSON
# [durability] bounds given to plantd: not the defaults (1 GiB each), so that the gauges must show the
# configuration.
WAL_MAX_BYTES = 512 * 1024 * 1024
BUFFER_MAX_BYTES = 768 * 1024 * 1024
PROGRESS_AGE_MAX = 5.0  # seconds; plantd's main loop records progress every 250 ms
JOB = "plantd"  # the scrape job the rule file expects
START = time.monotonic()


class Failure(Exception):
    pass


class Below:
    """An expected value for a gauge that moves: at least 0 and below `limit`."""

    def __init__(self, limit):
        self.limit = limit


class CannotRun(Exception):
    pass


def log(message):
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


def check(condition, message):
    if not condition:
        raise Failure(message)


# --- environment ------------------------------------------------------------------------------------


def env(name):
    value = os.environ.get(name)
    if not value:
        raise CannotRun(
            f"${name} is not set; run: eval \"$(scripts/stack env | sed 's/^/export /')\" (the stack must be up)"
        )
    return value


def parse_url(value, schemes, name):
    url = urllib.parse.urlsplit(value)
    if url.scheme not in schemes or not url.hostname or not url.port:
        raise CannotRun(f"${name} = {value!r}: expected {schemes[0]}://host:port")
    return url


def tool(name, override=None):
    path = os.environ.get(override) if override else None
    path = path or shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if not path or not os.access(path, os.X_OK):
        raise CannotRun(f"{name} not found" + (f" (set ${override})" if override else ""))
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def http_status(url):
    try:
        return http_get(url, timeout=2.0)[0]
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def run(command, what, input_text=None, env_extra=None, timeout=60):
    environment = dict(os.environ, **(env_extra or {}))
    result = subprocess.run(command, input=input_text, capture_output=True, text=True, timeout=timeout,
                            env=environment)
    if result.returncode != 0:
        raise Failure(f"{what} failed (exit {result.returncode}): {(result.stdout + result.stderr).strip()}")
    return result.stdout


# --- the test ---------------------------------------------------------------------------------------


class LiveTest:
    def __init__(self, plantd):
        self.plantd = plantd
        self.prometheus = tool("prometheus", "PROMETHEUS_BINARY")
        self.promtool = tool("promtool", "PROMTOOL_BINARY")
        self.mosquitto_pub = tool("mosquitto_pub")
        self.mysql = tool("mysql")
        self.redis_cli = tool("redis-cli")

        self.mqtt = parse_url(env("PLANTD_MQTT_URI"), ("tcp", "mqtt"), "PLANTD_MQTT_URI")
        self.influx_url = env("PLANTD_INFLUX_URL").rstrip("/")
        parse_url(self.influx_url, ("http", "https"), "PLANTD_INFLUX_URL")
        self.redis = parse_url(env("PLANTD_REDIS_URL"), ("redis",), "PLANTD_REDIS_URL")
        self.mysql_url = parse_url(env("PLANTD_MYSQL_URL"), ("mysql",), "PLANTD_MYSQL_URL")

        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.instance = f"plantd-mon-{tag}"
        self.topic_prefix = f"plantd-mon-{tag}"
        self.redis_prefix = f"plantd-mon-{tag}"
        self.factory = f"mon-{tag}"
        self.device = "press-01"
        self.influx_db = "itest_monitoring_" + tag.replace("-", "_")
        # The stack's plantd user may create databases named after its own database plus "_".
        base_db = self.mysql_url.path.lstrip("/") or "plantd"
        self.mysql_db = f"{base_db}_monitoring_" + tag.replace("-", "_")
        self.control_port = free_port()
        self.prometheus_port = free_port()
        while self.prometheus_port == self.control_port:
            self.prometheus_port = free_port()
        self.target = f"127.0.0.1:{self.control_port}"
        self.api = f"http://127.0.0.1:{self.prometheus_port}/api/v1"

        self.dir = tempfile.mkdtemp(prefix="plantd-monitoring-")
        self.config = os.path.join(self.dir, "plantd.toml")
        self.processes = {}  # name -> (Popen, log file)
        self.mysql_created = False

    # --- set-up -------------------------------------------------------------------------------------

    def mysql_command(self, sql):
        u = self.mysql_url
        run([self.mysql, "--protocol=TCP", "-h", u.hostname, "-P", str(u.port), "-u",
             urllib.parse.unquote(u.username or ""), "-N", "-B", "-e", sql],
            f"mysql: {sql}", env_extra={"MYSQL_PWD": urllib.parse.unquote(u.password or "")})

    def write_config(self):
        u = self.mysql_url
        os.makedirs(os.path.join(self.dir, "rules"))
        with open(os.path.join(self.dir, "rules", "monitoring.toml"), "w") as f:
            # Fires on the first good message: one alert event for each of the three destinations.
            f.write(f'[[rule]]\nid = "hot"\nfactory = "{self.factory}"\nwhen = "temperature > 50"\n'
                    f'severity = "warning"\nmessage = "monitoring test"\n')
        redis_password = urllib.parse.unquote(self.redis.password) if self.redis.password else None
        redis_db = self.redis.path.lstrip("/") or "0"
        with open(self.config, "w") as f:
            f.write(f'''instance = "{self.instance}"
[mqtt]
uri = "tcp://{self.mqtt.hostname}:{self.mqtt.port}"
client_id = "{self.instance}"
clean_session = true
device_topic = "{self.topic_prefix}/factory/{{factory_id}}/device/{{device_id}}/telemetry"
gateway_topic = ""
reconnect_min = "1s"
reconnect_max = "2s"
[influxdb]
url = "{self.influx_url}"
database = "{self.influx_db}"
flush_interval = "200ms"
retry_initial = "50ms"
retry_max = "1s"
[dead_letter]
path = "{self.dir}/deadletter.jsonl"
[durability]
directory = "{self.dir}/state"
wal_max_bytes = {WAL_MAX_BYTES}
buffer_max_bytes = {BUFFER_MAX_BYTES}
[control]
listen = "{self.target}"
[log]
level = "info"
[shutdown]
drain_timeout = "5s"
[registry]
enabled = true
mysql_host = "{u.hostname}"
mysql_port = {u.port}
mysql_user = "{urllib.parse.unquote(u.username or "")}"
mysql_password = "{urllib.parse.unquote(u.password or "")}"
mysql_database = "{self.mysql_db}"
redis_host = "{self.redis.hostname}"
redis_port = {self.redis.port}
redis_db = {redis_db}
redis_prefix = "{self.redis_prefix}"
{f'redis_password = "{redis_password}"' if redis_password else ""}
[rules]
directory = "{self.dir}/rules"
alert_topic = "{self.topic_prefix}/factory/{{factory_id}}/alerts/{{device_id}}"
''')

    def cli(self, *args):
        return run([self.plantd, "--config", self.config, *args], "plantd " + " ".join(args))

    def start(self, name, command, environment=None):
        log_path = os.path.join(self.dir, f"{name}.log")
        log_file = open(log_path, "w")
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=self.dir, env=environment)
        self.processes[name] = (process, log_file, log_path)
        return process

    def log_tail(self, name, lines=30):
        try:
            with open(self.processes[name][2]) as f:
                return "".join(f.readlines()[-lines:])
        except (OSError, KeyError):
            return "(no log)"

    def wait_for(self, what, predicate, timeout, process_names=()):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for name in process_names:
                process = self.processes[name][0]
                if process.poll() is not None:
                    raise Failure(f"{name} exited with code {process.returncode} while waiting for {what}:\n"
                                  + self.log_tail(name))
            try:
                last = predicate()
                if last is True:
                    return
            except (Failure, urllib.error.URLError, OSError, ValueError, KeyError) as e:
                last = e
            time.sleep(0.2)
        raise Failure(f"timed out after {timeout:.0f} s waiting for {what}" + (f": {last}" if last else ""))

    def start_plantd(self):
        self.write_config()
        self.cli("--check-config")
        self.mysql_command(f"CREATE DATABASE `{self.mysql_db}`")
        self.mysql_created = True
        self.cli("registry", "migrate")
        self.cli("factory", "add", self.factory)
        self.cli("device", "add", self.factory, self.device, "--tag", "line=L1")
        # Outside systemd, whatever the test itself runs under: no watchdog, no notify socket.
        environment = {k: v for k, v in os.environ.items()
                       if k not in ("WATCHDOG_USEC", "WATCHDOG_PID", "NOTIFY_SOCKET")}
        self.start("plantd", [self.plantd, "--config", self.config], environment)
        try:
            self.wait_for("plantd's /ready", lambda: http_status(f"http://{self.target}/ready") == 200 or
                          f"/ready answers {http_status(f'http://{self.target}/ready')}", 20, ["plantd"])
        except Failure as e:
            try:
                health = http_get(f"http://{self.target}/health")[1]
            except (urllib.error.URLError, OSError) as error:
                health = str(error)
            raise Failure(f"{e}\n/health: {health}\nplantd log:\n{self.log_tail('plantd')}") from None
        log(f"plantd {self.instance} ready on {self.target}")

    def start_prometheus(self):
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {json.dumps(RULES)}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: [{json.dumps(self.target)}]
""")
        run([self.promtool, "check", "config", config], "promtool check config")
        self.start("prometheus", [self.prometheus, f"--config.file={config}",
                                  f"--storage.tsdb.path={self.dir}/prometheus-data",
                                  f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                                  "--storage.tsdb.retention.time=1h", "--log.level=info"])
        self.wait_for("Prometheus to be ready",
                      lambda: http_status(f"http://127.0.0.1:{self.prometheus_port}/-/ready") == 200 or "not ready",
                      30, ["prometheus"])
        self.wait_for("Prometheus' first scrape of plantd",
                      lambda: self.value(f'up{{job="{JOB}",instance="{self.target}"}}') == 1.0 or "up is not 1",
                      20, ["prometheus", "plantd"])
        log(f"Prometheus on 127.0.0.1:{self.prometheus_port} scrapes plantd")

    def publish(self, good, bad, first):
        """Publishes `good` good messages (one record each, timestamps from `first` on) and `bad`
        malformed ones, in one connection, QoS 1."""
        topic = f"{self.topic_prefix}/factory/{self.factory}/device/{self.device}/telemetry"
        now_ms = int(time.time() * 1000)
        lines = [json.dumps({"ts": now_ms - GOOD + first + i,
                             "metrics": {"temperature": 71.5, "spindle_rpm": 1480 + first + i, "running": True}})
                 for i in range(good)]
        lines += ['{"ts": %d, "metrics": {"temperature": 71.5' % now_ms for _ in range(bad)]
        run([self.mosquitto_pub, "-h", self.mqtt.hostname, "-p", str(self.mqtt.port), "-q", "1",
             "-i", f"{self.instance}-pub", "-t", topic, "-l"],
            "mosquitto_pub", input_text="\n".join(lines) + "\n")
        log(f"published {good} good and {bad} malformed messages on {topic}")

    def publish_all(self):
        # plantd creates a factory's labelled series (points written, rejections) at their first
        # increment, and rate() cannot see the step from "no series" to the first value. So one good
        # and one bad message first, and the rest once Prometheus has those series: the dashboard's
        # rates then show the second round.
        self.publish(1, 1, 0)
        f = f'job="{JOB}",instance="{self.target}",factory_id="{self.factory}"'
        self.wait_for("Prometheus to see the first messages",
                      lambda: (self.value(f"plantd_points_written_total{{{f}}}") == 1 and
                               self.value(f'plantd_rejected_total{{{f},reason="malformed_json"}}') == 1) or
                      "not yet", 20, ["plantd", "prometheus"])
        self.publish(GOOD - 1, BAD - 1, 1)

    # --- Prometheus' API ----------------------------------------------------------------------------

    def api_get(self, path, params):
        url = f"{self.api}/{path}?" + urllib.parse.urlencode(params, doseq=True)
        try:
            _, body = http_get(url)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise Failure(f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr):
        data = self.api_get("query", {"query": expr})
        if data["resultType"] == "vector":
            return data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise Failure(f"{expr}: unexpected result type {data['resultType']}")

    def value(self, expr):
        """The one sample's value of an instant query; Failure unless exactly one sample."""
        result = self.query(expr)
        if len(result) != 1:
            raise Failure(f"{expr}: expected 1 sample, got {len(result)}: {result}")
        return float(result[0]["value"][1])

    # --- assertions ---------------------------------------------------------------------------------

    def expected_values(self):
        i = f'job="{JOB}",instance="{self.target}"'
        f = f'{i},factory_id="{self.factory}"'
        checks = [
            (f"up{{{i}}}", 1),
            (f"plantd_messages_received_total{{{i}}}", GOOD + BAD),
            (f"plantd_messages_accepted_total{{{i}}}", GOOD),
            (f"plantd_records_accepted_total{{{i}}}", GOOD),
            (f"plantd_factory_messages_received_total{{{f}}}", GOOD + BAD),
            (f'plantd_rejected_total{{{f},scope="message",reason="malformed_json"}}', BAD),
            (f"sum(plantd_rejected_total{{{i}}})", BAD),
            (f"plantd_points_written_total{{{f}}}", GOOD),
            (f"sum(plantd_points_written_total{{{i}}})", GOOD),
            (f"plantd_points_buffered{{{i}}}", 0),
            (f"plantd_record_age_at_write_seconds_count{{{i}}}", GOOD),
            (f"plantd_dead_letters_written_total{{{i}}}", BAD),
            # The accounting identity of the README, through PromQL.
            (f'plantd_messages_received_total{{{i}}} - plantd_messages_accepted_total{{{i}}}'
             f' - on (job, instance) sum by (job, instance) (plantd_rejected_total{{{i},scope="message"}})', 0),
            (f"plantd_influxdb_ok{{{i}}}", 1),
            (f'plantd_influxdb_destination_ok{{{i},destination="{self.influx_db}"}}', 1),
            (f"plantd_write_failures_total{{{i}}}", 0),
            (f"plantd_mqtt_connected{{{i}}}", 1),
            (f"plantd_mqtt_subscribed{{{i}}}", 1),
            (f"plantd_wal_ok{{{i}}}", 1),
            (f"plantd_registry_ok{{{i}}}", 1),
            (f"plantd_registry_redis_ok{{{i}}}", 1),
            (f"plantd_registry_devices{{{i}}}", 1),
            (f"sum(plantd_buffer_bytes{{{i}}})", 0),
            (f'plantd_alert_events_total{{{i},state="firing"}}', 1),
            (f"plantd_alerts_active{{{i}}}", 1),
            (f"plantd_alert_mqtt_connected{{{i}}}", 1),
            (f"plantd_alert_influxdb_ok{{{i}}}", 1),
            # The configured bounds, and the watchdog (none outside systemd).
            (f"plantd_wal_max_bytes{{{i}}}", WAL_MAX_BYTES),
            (f"plantd_buffer_max_bytes{{{i}}}", BUFFER_MAX_BYTES),
            (f"plantd_watchdog_interval_seconds{{{i}}}", 0),
            (f"plantd_progress_age_seconds{{{i}}}", Below(PROGRESS_AGE_MAX)),
            # One dry run of `deadletter replay` (replay_dry_run), which replays nothing.
            (f"plantd_dead_letter_replay_requests_total{{{i}}}", 1),
            (f"plantd_dead_letters_replayed_total{{{i}}}", 0),
        ]
        for destination in ("mqtt", "mysql", "influxdb"):
            d = f'{i},destination="{destination}"'
            checks += [(f"plantd_alert_deliveries_total{{{d}}}", 1),
                       (f"plantd_alert_delivery_failures_total{{{d}}}", 0),
                       (f"plantd_alert_delivery_pending{{{d}}}", 0)]
        return checks

    def check_values(self):
        checks = self.expected_values()

        def mismatches():
            wrong = []
            for expr, expected in checks:
                try:
                    got = self.value(expr)
                except Failure as e:
                    wrong.append(str(e))
                    continue
                if isinstance(expected, Below):
                    if not 0 <= got < expected.limit:
                        wrong.append(f"{expr} = {got:g}, expected at least 0 and below {expected.limit:g}")
                elif got != expected:
                    wrong.append(f"{expr} = {got:g}, expected {expected}")
            return wrong

        # Prometheus sees the final counts within a few scrapes of plantd having them.
        deadline = time.monotonic() + 20
        while True:
            wrong = mismatches()
            if not wrong:
                break
            if time.monotonic() > deadline:
                raise Failure("series in Prometheus do not have the expected values:\n  " + "\n  ".join(wrong)
                              + "\nplantd log:\n" + self.log_tail("plantd"))
            time.sleep(0.5)
        log(f"{len(checks)} series have their exact expected values in Prometheus")

    def rule_file_entries(self):
        with open(RULES) as f:
            text = f.read()
        alerts = re.findall(r"^\s*- alert:\s*(\S+)\s*$", text, re.M)
        records = re.findall(r"^\s*- record:\s*(\S+)\s*$", text, re.M)
        return text, alerts, records

    def runbook_anchors(self):
        anchors = set()
        found = False
        for path in RUNBOOKS:
            if not os.path.exists(path):
                continue
            found = True
            with open(path) as f:
                for line in f:
                    m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
                    if m:
                        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
                        anchors.add(slug)
        check(found, f"no runbook file: {' or '.join(RUNBOOKS)}")
        return anchors

    def check_rules(self):
        _, alerts, records = self.rule_file_entries()
        check(alerts, f"{RULES}: no alerts found")
        anchors = self.runbook_anchors()

        def loaded():
            groups = [g for g in self.api_get("rules", {})["groups"] if g["file"] == RULES]
            if not groups:
                return "the rule file is not loaded"
            rules = [r for g in groups for r in g["rules"]]
            unevaluated = [r["name"] for r in rules if r.get("health") == "unknown"]
            if unevaluated:
                return f"not evaluated yet: {unevaluated}"
            return True

        self.wait_for("Prometheus to evaluate every rule", loaded, 15, ["prometheus"])
        groups = [g for g in self.api_get("rules", {})["groups"] if g["file"] == RULES]
        rules = [r for g in groups for r in g["rules"]]
        got_alerts = [r["name"] for r in rules if r["type"] == "alerting"]
        got_records = [r["name"] for r in rules if r["type"] == "recording"]
        check(sorted(got_alerts) == sorted(alerts),
              f"alerts loaded {sorted(got_alerts)} differ from the file's {sorted(alerts)}")
        check(sorted(got_records) == sorted(records),
              f"recording rules loaded {sorted(got_records)} differ from the file's {sorted(records)}")
        problems = []
        for r in rules:
            if r.get("health") != "ok" or r.get("lastError"):
                problems.append(f"{r['name']}: health {r.get('health')}, error {r.get('lastError')!r}")
            if r["type"] != "alerting":
                continue
            if r["labels"].get("severity") not in ("critical", "warning"):
                problems.append(f"{r['name']}: severity label {r['labels'].get('severity')!r}")
            for key in ("summary", "description", "runbook"):
                if not r["annotations"].get(key):
                    problems.append(f"{r['name']}: no {key} annotation")
            runbook = r["annotations"].get("runbook", "")
            m = re.fullmatch(r"docs/OPERATIONS\.md#([\w-]+)", runbook)
            if not m:
                problems.append(f"{r['name']}: runbook {runbook!r} is not docs/OPERATIONS.md#<anchor>")
            elif m.group(1) not in anchors:
                problems.append(f"{r['name']}: runbook anchor #{m.group(1)} has no heading in the runbook")
        check(not problems, "rules:\n  " + "\n  ".join(problems))
        log(f"rule file loaded: {len(got_alerts)} alerts and {len(got_records)} recording rules, all healthy, "
            "each with severity, summary, description and a runbook heading")

        # A healthy plantd sets nothing off.
        firing = [a for a in self.api_get("alerts", {})["alerts"] if a["state"] == "firing"]
        check(not firing, "alerts firing on a healthy plantd: "
              + ", ".join(f"{a['labels'].get('alertname')} {a['labels']}" for a in firing))
        pending = [a["labels"].get("alertname") for a in self.api_get("alerts", {})["alerts"]]
        log("no alert fires" + (f" (pending: {pending})" if pending else ", none is pending"))

    def check_dashboard(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        for name in ("instance", "factory"):
            check(name in variables, f"dashboard: no template variable {name!r}")
        datasource_vars = [n for n, v in variables.items() if v["type"] == "datasource"]
        check(datasource_vars, "dashboard: no datasource template variable")
        ds_refs = {"${%s}" % n for n in datasource_vars} | {"$%s" % n for n in datasource_vars}
        # plantd exports its bounds: no variable for the operator to keep in step with the configuration.
        for name in ("wal_max_bytes", "buffer_max_bytes"):
            check(name not in variables, f"dashboard: variable {name}: use plantd_{name} instead")
        textboxes = [n for n, v in variables.items() if v["type"] == "textbox"]
        check(not textboxes, f"dashboard: text box variables {textboxes}: use plantd's gauges")

        panels = []

        def walk(items):
            for p in items:
                panels.append(p)
                walk(p.get("panels", []))

        walk(dashboard["panels"])
        targets = []
        for p in panels:
            if p["type"] == "row":
                continue
            check(p.get("datasource", {}).get("uid") in ds_refs,
                  f"panel {p['title']!r}: datasource {p.get('datasource')} is not the datasource variable")
            check(p.get("targets"), f"panel {p['title']!r} has no queries")
            for t in p["targets"]:
                check(t.get("expr"), f"panel {p['title']!r} target {t.get('refId')} has no expr")
                targets.append((p["title"], t["refId"], t["expr"]))

        fixed = {"__rate_interval": "1m", "__interval": "15s", "__range": "10m"}
        modes = {
            "all": dict(fixed, job=JOB, instance=".*", factory=".*"),
            "this plantd": dict(fixed, job=JOB, instance=self.target, factory=self.factory),
        }

        def substitute(expr, values):
            def one(m):
                name = m.group(1) or m.group(2) or m.group(3)
                if name not in values:
                    raise Failure(f"dashboard query uses an unknown variable ${name}: {expr}")
                return values[name]

            return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)", one, expr)

        # The template variables' own queries (label_values) find this plantd.
        expected_option = {"job": JOB, "instance": self.target, "factory": self.factory}
        for name, v in variables.items():
            if v["type"] != "query":
                continue
            definition = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", definition)
            check(m, f"dashboard variable {name}: unsupported query {definition!r}")
            selector = substitute(m.group(1), modes["all"])
            values = self.api_get(f"label/{m.group(2)}/values", {"match[]": selector})
            check(expected_option.get(name) in values,
                  f"dashboard variable {name} ({definition}) offers {values}, not {expected_option.get(name)!r}")

        problems = []
        for mode, values in modes.items():
            for title, ref, expr in targets:
                query = substitute(expr, values)
                try:
                    result = self.query(query)
                except Failure as e:
                    problems.append(f"[{mode}] {title} / {ref}: {e}")
                    continue
                if not result:
                    problems.append(f"[{mode}] {title} / {ref}: no data: {query}")
                elif not any(math.isfinite(float(s["value"][1])) for s in result):
                    problems.append(f"[{mode}] {title} / {ref}: only NaN or infinite values: {query}")
        check(not problems, "dashboard queries:\n  " + "\n  ".join(problems))
        log(f"dashboard: {len(targets)} queries of {len([p for p in panels if p['type'] != 'row'])} panels "
            f"return data, with every variable at 'All' and at this plantd; the variables' queries find it")

    def check_metric_names(self, scrape):
        """Every plantd_* and process_* name in the rules, the dashboard and the runbook is one plantd
        exposes."""
        exposed = set()
        for line in scrape.splitlines():
            if line.startswith("# TYPE "):
                parts = line.split()
                exposed.add(parts[2])
                if parts[3] == "histogram":
                    exposed.update(parts[2] + s for s in ("_bucket", "_sum", "_count"))
            elif line and not line.startswith("#"):
                exposed.add(re.split(r"[{ ]", line, maxsplit=1)[0])
        texts = [self.rule_file_entries()[0]]
        for path in [DASHBOARD] + [p for p in RUNBOOKS if os.path.exists(p)]:
            with open(path) as f:
                texts.append(f.read())
        text = "\n".join(texts)
        # grep patterns in the runbook: plantd_(a|b) stands for plantd_a and plantd_b (and
        # plantd_(a|b)_c for plantd_a_c and plantd_b_c), and a name ending in "_" (grep '^plantd_mqtt_')
        # for any exposed name it starts. plantd_0.1.0-1_amd64.deb is a package, not a metric: no
        # metric name has a digit right after the prefix.
        used = set()
        alternation = r"\b((?:plantd|process)_[a-z0-9_]*)\(([a-z0-9_|]+)\)([a-z0-9_]*)"
        for prefix, alternatives, suffix in re.findall(alternation, text):
            used.update(prefix + a + suffix for a in alternatives.split("|"))
        text = re.sub(alternation, " ", text)
        used.update(re.findall(r"\b((?:plantd|process)_[a-z_][a-z0-9_]*)", text))
        unknown = sorted(n for n in used if (not any(e.startswith(n) for e in exposed) if n.endswith("_")
                                             else n not in exposed))
        check(not unknown, f"names in the rules, dashboard or runbook that plantd does not expose: {unknown}")
        log(f"all {len(used)} metric names the rules, the dashboard and the runbook use are in plantd's /metrics")

    def check_scrape(self):
        _, scrape = http_get(f"http://{self.target}/metrics")
        result = subprocess.run([self.promtool, "check", "metrics"], input=scrape, capture_output=True,
                                text=True, timeout=30)
        output = (result.stdout + result.stderr).strip()
        check(result.returncode == 0 and not output,
              f"promtool check metrics on plantd's /metrics (exit {result.returncode}):\n{output}")
        log(f"promtool check metrics: clean ({len(scrape.splitlines())} lines)")
        self.check_metric_names(scrape)

    def check_rule_files(self):
        run([self.promtool, "check", "rules", RULES], "promtool check rules")
        run([self.promtool, "test", "rules", RULE_TESTS], "promtool test rules")
        log("promtool check rules and test rules pass")

    def wait_for_plantd(self):
        """plantd itself has taken, written and rejected everything (before asking Prometheus)."""
        def done():
            _, text = http_get(f"http://{self.target}/metrics")
            received = re.search(r"^plantd_messages_received_total (\S+)$", text, re.M)
            written = re.search(r'^plantd_points_written_total\{factory_id="%s"\} (\S+)$'
                                % re.escape(self.factory), text, re.M)
            deliveries = re.findall(r"^plantd_alert_deliveries_total\{[^}]*\} (\S+)$", text, re.M)
            letters = re.search(r"^plantd_dead_letters_written_total (\S+)$", text, re.M)
            state = (received and float(received.group(1)), written and float(written.group(1)), deliveries,
                     letters and float(letters.group(1)))
            return (state[0] == GOOD + BAD and state[1] == GOOD and deliveries == ["1", "1", "1"] and
                    state[3] == BAD) or f"received, written, alert deliveries, dead letters: {state}"

        self.wait_for("plantd to write and reject every message", done, 20, ["plantd"])
        log("plantd has taken every message")

    def replay_dry_run(self):
        """`plantd deadletter replay --dry-run` asks the running daemon over its socket: it would replay
        the BAD malformed messages, and replays nothing."""
        out = self.cli("deadletter", "replay", "--reason", "malformed_json", "--dry-run", "--json")
        try:
            report = json.loads(out)
        except ValueError:
            raise Failure(f"deadletter replay --json: not JSON: {out!r}") from None
        expected = {"matched": BAD, "would_replay": BAD, "replayed": 0, "already_replayed": 0,
                    "not_replayable": 0, "problem": ""}
        got = {k: report.get(k) for k in expected}
        check(got == expected, f"deadletter replay --dry-run: {got}, expected {expected}")
        log(f"deadletter replay --dry-run: would replay the {BAD} malformed messages")

    def run(self):
        self.check_rule_files()
        self.start_plantd()
        self.start_prometheus()
        self.publish_all()
        self.wait_for_plantd()
        self.replay_dry_run()
        self.check_values()
        self.check_rules()
        self.check_dashboard()
        self.check_scrape()

    # --- clean-up -----------------------------------------------------------------------------------

    def cleanup(self):
        """Stops what it started and removes what it created; returns problems that matter."""
        problems = []
        for name in ("prometheus", "plantd"):
            if name not in self.processes:
                continue
            process, log_file, _ = self.processes[name]
            try:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout=5)
                        problems.append(f"{name} did not stop on SIGTERM within 15 s (killed)")
            except OSError as e:
                problems.append(f"stopping {name}: {e}")
            finally:
                log_file.close()
        warnings = []

        def attempt(what, action):
            try:
                action()
            except Exception as e:  # noqa: BLE001 - clean-up goes on whatever failed
                warnings.append(f"{what}: {e}")

        # The retained status message plantd left on the broker.
        attempt("clearing the status topic", lambda: run(
            [self.mosquitto_pub, "-h", self.mqtt.hostname, "-p", str(self.mqtt.port), "-q", "1", "-r", "-n",
             "-i", f"{self.instance}-cleanup", "-t", f"plantd/{self.instance}/status"], "mosquitto_pub -r -n"))

        def redis_cleanup():
            base = [self.redis_cli, "-h", self.redis.hostname, "-p", str(self.redis.port),
                    "-n", self.redis.path.lstrip("/") or "0"]
            extra = {"REDISCLI_AUTH": urllib.parse.unquote(self.redis.password)} if self.redis.password else {}
            keys = run(base + ["--scan", "--pattern", f"{self.redis_prefix}:*"], "redis-cli --scan",
                       env_extra=extra).split()
            for i in range(0, len(keys), 100):
                run(base + ["DEL", *keys[i:i + 100]], "redis-cli DEL", env_extra=extra)

        attempt("removing the Redis keys", redis_cleanup)

        def influx_cleanup():
            data = urllib.parse.urlencode({"q": f'DROP DATABASE "{self.influx_db}"'}).encode()
            with urllib.request.urlopen(urllib.request.Request(f"{self.influx_url}/query", data=data),
                                        timeout=10) as response:
                response.read()

        attempt("dropping the InfluxDB database", influx_cleanup)
        if self.mysql_created:
            attempt("dropping the MySQL database",
                    lambda: self.mysql_command(f"DROP DATABASE IF EXISTS `{self.mysql_db}`"))
        if os.environ.get("PLANTD_KEEP_TEST_DIRS"):
            print(f"kept {self.dir} (PLANTD_KEEP_TEST_DIRS)", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
            if os.path.exists(self.dir):
                problems.append(f"could not remove {self.dir}")
        for w in warnings:
            print(f"warning: clean-up: {w}", file=sys.stderr)
        return problems


def main():
    # A stop request (Ctrl-C, SIGTERM) still runs the clean-up.
    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PLANTD_BINARY", "build/daemon/plantd")
    binary = os.path.abspath(binary if os.path.isabs(binary) or os.path.exists(binary)
                             else os.path.join(REPO, binary))
    if not os.access(binary, os.X_OK):
        print(f"CANNOT RUN: no plantd binary at {binary}", file=sys.stderr)
        return 2
    try:
        test = LiveTest(binary)
    except CannotRun as e:
        print(f"CANNOT RUN: {e}", file=sys.stderr)
        return 2
    status = 0
    try:
        test.run()
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        if not os.environ.get("PLANTD_KEEP_TEST_DIRS"):
            print("(PLANTD_KEEP_TEST_DIRS=1 keeps the temporary directory with plantd's and Prometheus' logs)",
                  file=sys.stderr)
        status = 1
    except CannotRun as e:
        print(f"CANNOT RUN: {e}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt as e:
        print(f"INTERRUPTED ({e})", file=sys.stderr)
        status = 1
    except Exception as e:  # noqa: BLE001 - any surprise is a failure, after the clean-up
        import traceback
        traceback.print_exc()
        print(f"FAILED: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        problems = test.cleanup()
    if problems:
        print("FAILED: clean-up: " + "; ".join(problems), file=sys.stderr)
        status = status or 1
    if status == 0:
        print(f"PASSED in {time.monotonic() - START:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
