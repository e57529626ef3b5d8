#!/usr/bin/env node
// plantd as a Sparkplug B host, driven by edge nodes it did not write: Cirrus Link's reference
// Node.js client (sparkplug-client, sparkplug-payload), each edge node its own process
// (edge_node.js), against the real mosquitto and InfluxDB of the local stack.
//
//   eval "$(scripts/stack env | sed 's/^/export /')"
//   node tests/sparkplug/test_sparkplug.js [PLANTD_BINARY]
//
// What it checks, with exact counts and values in InfluxDB and on /metrics:
// 1. births with aliases, then node and device DATA by alias only (values, field names with
//    Sparkplug folders, integer, float, boolean and string types, online points);
// 2. one skipped seq: the data after it is written once the reorder window passes, exactly one
//    rebirth request arrives on the node's NCMD topic, and the new birth's different aliases are used;
// 3. DDEATH: the device's offline point;
// 4. a hostile edge node in another group with the same node and device ids, a forged NDEATH with a
//    wrong bdSeq on the first group's topic, and DATA without a birth: nothing of the first group
//    changes, the other group's data lands in its own factory's database only; an unlisted group
//    named like the first group's factory is refused;
// 5. an edge process killed with SIGKILL: the broker's will (NDEATH) makes its offline point; a
//    birth over max_payload_bytes: no DATA resolved until a birth is read; an alert rule on the
//    online point fired exactly once per device that went offline;
// 6. plantd restarted while an edge node goes on sending by alias: after the restart that DATA is
//    rejected (no birth: never resolved through aliases plantd no longer knows), one rebirth is
//    asked for, and the re-birthed node's data is right; the host's STATE is retained online while
//    plantd runs and offline after its stop, with the timestamp of the birth.
// The ledger balances (received = accepted + rejected). Exit 0: passed; 1: failed; 2: cannot run.
"use strict";
const { spawn } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");
const readline = require("readline");
const mqtt = require("mqtt");

const here = __dirname;
const binary = process.argv[2] || process.env.PLANTD_BINARY || path.join(here, "..", "..", "build", "daemon", "plantd");
const mqttUrl = process.env.PLANTD_MQTT_URI || "tcp://127.0.0.1:11883";
const influxUrl = process.env.PLANTD_INFLUX_URL || "http://127.0.0.1:18086";
const run = crypto.randomBytes(4).toString("hex");
const groupA = `spbA${run}`; // mapped to factory factoryA by [sparkplug] group_factories
const factoryA = `plantA${run}`;
const groupB = `spbB${run}`; // not listed: its own factory id
const factoryB = groupB;
const hostId = `plantd-test-${run}`;
const alertRoot = `spbalerts${run}`;
const database = (factory) => `spbtest_${factory}`;
const started = Date.now();

class Failure extends Error {}
const check = (condition, what) => {
  if (!condition) throw new Failure(what);
};
const equal = (actual, expected, what) => {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Failure(`${what}: expected ${e}, got ${a}`);
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function eventually(what, probe, timeoutMs = 10000) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await sleep(100);
  }
  throw new Failure(`${what} (waited ${timeoutMs} ms; last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

// One edge node process; commands answered in order.
class Edge {
  constructor(name, group, node) {
    this.name = name;
    this.events = [];
    this.waiting = [];
    this.child = spawn(process.execPath, [path.join(here, "edge_node.js"), mqttUrl, group, node, `${node}-${group}`], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    readline.createInterface({ input: this.child.stdout }).on("line", (line) => {
      const message = JSON.parse(line);
      if (message.done) this.waiting.shift()?.(message);
      else this.events.push(message);
    });
  }
  send(command) {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write(JSON.stringify(command) + "\n");
    });
  }
  connected() {
    return eventually(`${this.name} connects`, () => this.events.some((e) => e.event === "connected"));
  }
  rebirths() {
    return this.events.filter(
      (e) => e.event === "ncmd" && e.metrics.some((m) => m.name === "Node Control/Rebirth" && m.value === true),
    ).length;
  }
  kill() {
    this.child.kill("SIGKILL");
  }
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) await this.send({ op: "stop" });
  }
}

class Plantd {
  constructor(dir, port) {
    this.dir = dir;
    this.port = port;
    this.config = path.join(dir, "plantd.toml");
    this.log = path.join(dir, "plantd.log");
    fs.mkdirSync(path.join(dir, "rules"));
    // An alert on the online point: a rule written for any device works on Sparkplug's.
    fs.writeFileSync(
      path.join(dir, "rules", "offline.toml"),
      `[[rule]]\nid = "offline"\nfactory = "${factoryA}"\nwhen = "online < 1"\nseverity = "warning"\nmessage = "offline"\n`,
    );
    fs.writeFileSync(
      this.config,
      `instance = "spbtest${run}"
[mqtt]
uri = "${mqttUrl}"
client_id = "plantd-spbtest-${run}"
clean_session = true  # nothing of this test stays queued at the broker after it
[ingest]
allowed_factories = ["${factoryA}", "${factoryB}"]
max_payload_bytes = "64KiB"
[influxdb]
url = "${influxUrl}"
database = "spbtest_{factory_id}"
flush_interval = "50ms"
[dead_letter]
path = "${path.join(dir, "dead-letters.jsonl")}"
[durability]
directory = "${path.join(dir, "state")}"
[control]
listen = "127.0.0.1:${port}"
socket = "${path.join(dir, "control.sock")}"
[rules]
directory = "${path.join(dir, "rules")}"
alert_topic = "${alertRoot}/{factory_id}/alerts/{device_id}"
[sparkplug]
enabled = true
host_id = "${hostId}"
group_factories = ["${groupA}=${factoryA}"]
reorder_window = "500ms"
rebirth_interval = "2s"
`,
    );
  }
  async start() {
    const out = fs.openSync(this.log, "a");
    this.child = spawn(binary, ["-c", this.config], { stdio: ["ignore", out, out] });
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
    await eventually("plantd is ready", async () => (await fetch(`http://127.0.0.1:${this.port}/ready`)).status === 200, 20000);
    await eventually("plantd's Sparkplug connection is up", async () => (await this.metrics())["plantd_sparkplug_mqtt_connected"] === 1);
  }
  async metrics() {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    const values = {};
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const at = line.lastIndexOf(" ");
      values[line.slice(0, at)] = Number(line.slice(at + 1));
    }
    return values;
  }
  async stop() {
    this.child.kill("SIGTERM");
    const { code } = await this.exited;
    check(code === 0, `plantd exits 0 on SIGTERM (got ${code}); see ${this.log}`);
  }
}

async function query(factory, q) {
  const url = `${influxUrl}/query?db=${encodeURIComponent(database(factory))}&q=${encodeURIComponent(q)}`;
  const body = await (await fetch(url)).json();
  const series = body.results?.[0]?.series?.[0];
  if (!series) return [];
  return series.values.map((row) => Object.fromEntries(series.columns.map((c, i) => [c, row[i]])));
}
// The values of one field of one device, in time order.
async function values(factory, device, field) {
  // Selecting one field returns only the points that have it.
  const rows = await query(factory, `SELECT "${field}" FROM telemetry WHERE device_id = '${device}'`);
  return rows.map((r) => r[field]).filter((v) => v !== null);
}
function deadLetters(dir) {
  const file = path.join(dir, "dead-letters.jsonl");
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}
// The host's STATE as a fresh subscriber sees it (retained).
function state() {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(mqttUrl, { clientId: `state-${run}-${crypto.randomBytes(2).toString("hex")}`, clean: true });
    const timer = setTimeout(() => {
      client.end(true);
      reject(new Failure("no retained STATE"));
    }, 3000);
    client.on("connect", () => client.subscribe(`spBv1.0/STATE/${hostId}`, { qos: 1 }));
    client.on("message", (_topic, payload) => {
      clearTimeout(timer);
      client.end(true);
      resolve(JSON.parse(payload.toString()));
    });
  });
}
function clearState() {
  return new Promise((resolve) => {
    const client = mqtt.connect(mqttUrl, { clientId: `state-clear-${run}`, clean: true });
    client.on("connect", () => client.publish(`spBv1.0/STATE/${hostId}`, "", { qos: 1, retain: true }, () => client.end(false, resolve)));
  });
}

const at = (base, i) => base + i * 10; // explicit, distinct timestamps: points never merge
const nodeBirth = (aliases, base) => [
  { name: "temperature", alias: aliases.temperature, type: "Double", value: 20.0, timestamp: base },
  { name: "count", alias: aliases.count, type: "Int32", value: 0, timestamp: base },
  { name: "Motor/Speed", alias: aliases.speed, type: "UInt64", value: 1000, timestamp: base },
  { name: "serial", alias: aliases.serial, type: "String", value: "SN-1", timestamp: base },
];
const deviceBirth = (base) => [
  { name: "pressure", alias: 10, type: "Float", value: 1.0, timestamp: base },
  { name: "running", alias: 11, type: "Boolean", value: true, timestamp: base },
];

async function main() {
  if (!fs.existsSync(binary)) {
    console.error(`cannot run: no plantd binary at ${binary}`);
    return 2;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plantd-sparkplug-"));
  const plantd = new Plantd(dir, await freePort());
  const edges = [];
  const alerts = [];
  const alertClient = mqtt.connect(mqttUrl, { clientId: `alerts-${run}`, clean: true });
  await new Promise((resolve) => alertClient.on("connect", () => alertClient.subscribe(`${alertRoot}/#`, { qos: 1 }, resolve)));
  alertClient.on("message", (_topic, payload) => alerts.push(JSON.parse(payload.toString())));
  try {
    await plantd.start();
    const online = await eventually("STATE online", async () => {
      const s = await state();
      return s.online === true ? s : null;
    });
    check(Number.isInteger(online.timestamp) && Math.abs(online.timestamp - Date.now()) < 60000, "STATE carries a timestamp");

    // 1. Births with aliases, DATA by alias only.
    const edge1 = new Edge("edge1", groupA, "edge1");
    edges.push(edge1);
    await edge1.connected();
    const base = Date.now() - 60000;
    let aliases = { temperature: 1, count: 2, speed: 3, serial: 4 };
    await edge1.send({ op: "nbirth", metrics: nodeBirth(aliases, base) });
    await edge1.send({ op: "dbirth", device: "press", metrics: deviceBirth(base) });
    for (let i = 1; i <= 10; i++) {
      await edge1.send({
        op: "ndata",
        metrics: [
          { alias: 1, type: "Double", value: 20 + i, timestamp: at(base, i) },
          { alias: 2, type: "Int32", value: i, timestamp: at(base, i) },
        ],
      });
      await edge1.send({ op: "ddata", device: "press", metrics: [{ alias: 10, type: "Float", value: i + 0.5, timestamp: at(base, i) }] });
    }
    await eventually("phase 1 data in InfluxDB", async () => (await values(factoryA, "edge1.press", "pressure")).length === 11);
    equal(await values(factoryA, "edge1", "temperature"), [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30], "node temperatures");
    equal(await values(factoryA, "edge1", "count"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "node counts (Int32)");
    equal(await values(factoryA, "edge1", "Motor.Speed"), [1000], "a metric in a Sparkplug folder");
    equal(await values(factoryA, "edge1", "serial"), ["SN-1"], "a String metric");
    equal(await values(factoryA, "edge1.press", "pressure"), [1, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5], "device pressures");
    equal(await values(factoryA, "edge1.press", "running"), [true], "a Boolean metric");
    equal(await values(factoryA, "edge1", "online"), [true], "the node's online point");
    equal(await values(factoryA, "edge1.press", "online"), [true], "the device's online point");
    equal(edge1.rebirths(), 0, "no rebirth request while everything is in order");

    // 2. One skipped seq: held for the reorder window, then written, and exactly one rebirth request.
    await edge1.send({ op: "skip_seq" });
    for (let i = 11; i <= 13; i++)
      await edge1.send({ op: "ndata", metrics: [{ alias: 2, type: "Int32", value: i, timestamp: at(base, i) }] });
    await eventually("a rebirth request on NCMD", () => edge1.rebirths() === 1, 5000);
    await eventually("the data after the gap", async () => (await values(factoryA, "edge1", "count")).length === 14);
    // The node's new birth swaps two aliases: DATA must be resolved through the new ones.
    aliases = { temperature: 2, count: 1, speed: 3, serial: 4 };
    await edge1.send({ op: "nbirth", metrics: nodeBirth(aliases, at(base, 20)) });
    await edge1.send({ op: "dbirth", device: "press", metrics: deviceBirth(at(base, 20)) });
    await edge1.send({
      op: "ndata",
      metrics: [
        { alias: 2, type: "Double", value: 100.0, timestamp: at(base, 21) },
        { alias: 1, type: "Int32", value: 50, timestamp: at(base, 21) },
      ],
    });
    await eventually("data by the new aliases", async () => (await values(factoryA, "edge1", "temperature")).includes(100));
    await sleep(2500); // past the rebirth interval: a second request would show now
    equal(edge1.rebirths(), 1, "exactly one rebirth request for one gap");
    equal((await values(factoryA, "edge1", "count")).slice(-5), [11, 12, 13, 0, 50], "counts after the gap and the rebirth");
    equal((await values(factoryA, "edge1", "temperature")).slice(-2), [20, 100], "temperatures by the new aliases");

    // 3. DDEATH.
    await edge1.send({ op: "ddeath", device: "press" });
    await eventually("the device's offline point", async () => (await values(factoryA, "edge1.press", "online")).length === 2);
    equal(await values(factoryA, "edge1.press", "online"), [true, false], "device online, then offline");

    // 4. A hostile edge node: group B, the same node and device ids; a forged NDEATH for group A.
    const hostile = new Edge("hostile", groupB, "edge1");
    edges.push(hostile);
    await hostile.connected();
    await hostile.send({ op: "raw", topic: `spBv1.0/${groupA}/NDEATH/edge1`, metrics: [{ name: "bdSeq", type: "UInt64", value: 7 }] });
    await hostile.send({ op: "raw", topic: `spBv1.0/${groupB}/DDATA/edge1/press`, seq: 0, metrics: [{ alias: 10, type: "Float", value: 999 }] });
    await hostile.send({ op: "nbirth", metrics: [{ name: "temperature", alias: 1, type: "Double", value: 999.0, timestamp: at(base, 30) }] });
    await hostile.send({ op: "ndata", metrics: [{ alias: 1, type: "Double", value: 998.0, timestamp: at(base, 31) }] });
    await sleep(20); // online points are stamped when plantd receives them: one millisecond apart at least
    await hostile.send({ op: "raw", topic: `spBv1.0/${groupB}/NDEATH/edge1`, metrics: [{ name: "bdSeq", type: "UInt64", value: 0 }] });
    await eventually("group B's data in its own database", async () => (await values(factoryB, "edge1", "online")).length === 2);
    equal(await values(factoryB, "edge1", "temperature"), [999, 998], "group B's temperatures, in group B's factory");
    equal(await values(factoryB, "edge1", "online"), [true, false], "group B's node online, then offline");
    equal(await values(factoryB, "edge1.press", "pressure"), [], "no device data without a DBIRTH");
    equal(await values(factoryA, "edge1", "online"), [true], "group A's node is still online after the forged NDEATH");
    check(!(await values(factoryA, "edge1", "temperature")).some((v) => v >= 998), "nothing of group B in group A's database");
    // Group A's node is untouched: its DATA is still taken in order.
    await edge1.send({ op: "ndata", metrics: [{ alias: 1, type: "Int32", value: 51, timestamp: at(base, 40) }] });
    await eventually("group A's node goes on", async () => (await values(factoryA, "edge1", "count")).includes(51));
    // An unlisted group named like group A's factory is refused: it would write as group A's nodes.
    const impostor = 'plantd_rejected_total{scope="message",reason="unknown_factory",factory_id="_unregistered"}';
    await hostile.send({ op: "raw", topic: `spBv1.0/${factoryA}/NBIRTH/edge1`, seq: 0, metrics: [{ name: "bdSeq", type: "UInt64", value: 0 }, { name: "temperature", alias: 1, type: "Double", value: 997.0, timestamp: at(base, 32) }] });
    await hostile.send({ op: "raw", topic: `spBv1.0/${factoryA}/NDATA/edge1`, seq: 1, metrics: [{ alias: 1, type: "Double", value: 996.0, timestamp: at(base, 33) }] });
    await eventually("the impostor group's two messages refused", async () => (await plantd.metrics())[impostor] === 2);
    check(!(await values(factoryA, "edge1", "temperature")).some((v) => v >= 996), "nothing of the impostor group in group A's database");

    // 5. An edge process killed: the broker publishes its will (NDEATH with its bdSeq).
    const edge2 = new Edge("edge2", groupA, "edge2");
    edges.push(edge2);
    await edge2.connected();
    await edge2.send({ op: "nbirth", metrics: [{ name: "level", alias: 1, type: "Int16", value: -5, timestamp: base }] });
    await edge2.send({ op: "ndata", metrics: [{ alias: 1, type: "Int16", value: 6, timestamp: at(base, 1) }] });
    await eventually("edge2's data", async () => (await values(factoryA, "edge2", "level")).length === 2);
    edge2.kill();
    await eventually("edge2's offline point from its will", async () => (await values(factoryA, "edge2", "online")).length === 2);
    equal(await values(factoryA, "edge2", "level"), [-5, 6], "Int16 values, sign kept");
    equal(await values(factoryA, "edge2", "online"), [true, false], "edge2 online, then offline by its will");

    // 5b. A birth plantd refuses unread (over max_payload_bytes): DATA is not resolved through the
    // aliases of the birth before it (the refused one may have renumbered them) until a birth is read.
    const edge3 = new Edge("edge3", groupA, "edge3");
    edges.push(edge3);
    await edge3.connected();
    await edge3.send({ op: "nbirth", metrics: [{ name: "level", alias: 1, type: "Int32", value: 1, timestamp: base }] });
    await edge3.send({ op: "ndata", metrics: [{ alias: 1, type: "Int32", value: 2, timestamp: at(base, 1) }] });
    await eventually("edge3's data", async () => (await values(factoryA, "edge3", "level")).length === 2);
    const bulky = { name: "notes", alias: 9, type: "String", value: "x".repeat(70000), timestamp: at(base, 2) };
    await edge3.send({ op: "nbirth", metrics: [{ name: "flow", alias: 1, type: "Int32", value: 3, timestamp: at(base, 2) }, bulky] });
    // No rebirth is asked for the refused birth itself (a rebirth would be as large); the DATA after
    // it is refused as before any birth, and that asks for one.
    await edge3.send({ op: "ndata", metrics: [{ alias: 1, type: "Int32", value: 4, timestamp: at(base, 3) }] });
    await eventually("a rebirth request for the DATA after the birth plantd could not read", () => edge3.rebirths() === 1, 5000);
    await edge3.send({ op: "nbirth", metrics: [{ name: "flow", alias: 1, type: "Int32", value: 5, timestamp: at(base, 4) }] });
    await edge3.send({ op: "ndata", metrics: [{ alias: 1, type: "Int32", value: 6, timestamp: at(base, 5) }] });
    await eventually("edge3's data after a birth plantd read", async () => (await values(factoryA, "edge3", "flow")).length === 2);
    equal(await values(factoryA, "edge3", "flow"), [5, 6], "flow from the birth plantd read on");
    equal(await values(factoryA, "edge3", "level"), [1, 2], "no DATA of the unread birth's session resolved as the old birth's level");

    // The offline points drove the rule: one alert for each device that went offline in group A.
    const firing = () => alerts.filter((a) => a.state === "firing").map((a) => `${a.factory_id}/${a.device_id}/${a.rule}`).sort();
    await eventually("edge2's offline alert", () => firing().length === 2);
    await sleep(200);
    equal(firing(), [`${factoryA}/edge1.press/offline`, `${factoryA}/edge2/offline`], "one firing per device offline, none of group B");

    const first = await plantd.metrics();
    equal(first["plantd_sparkplug_rebirth_requests_total"], 3, "rebirths asked for: the gap, group B's DDATA before a birth, edge3's unread birth");
    equal(first['plantd_rejected_total{scope="message",reason="oversize",factory_id="' + factoryA + '"}'], 1, "edge3's birth over max_payload_bytes");
    equal(first['plantd_rejected_total{scope="message",reason="sparkplug_no_birth",factory_id="' + factoryA + '"}'], 1, "edge3's DATA after the unread birth");
    equal(first['plantd_rejected_total{scope="message",reason="sparkplug_stale_death",factory_id="' + factoryA + '"}'], 1, "the forged NDEATH");
    equal(first['plantd_rejected_total{scope="message",reason="sparkplug_no_birth",factory_id="' + factoryB + '"}'], 1, "group B's DDATA before a birth");

    // 6. plantd restarted while edge1 goes on sending by alias.
    await plantd.stop();
    const offline = await state();
    equal(offline, { online: false, timestamp: online.timestamp }, "STATE offline after the stop, with the birth's timestamp");
    await plantd.start();
    const rebirthsBefore = edge1.rebirths();
    await edge1.send({ op: "ndata", metrics: [{ alias: 2, type: "Double", value: 200.0, timestamp: at(base, 50) }] });
    await eventually("a rebirth request after plantd's restart", () => edge1.rebirths() === rebirthsBefore + 1, 5000);
    aliases = { temperature: 7, count: 8, speed: 9, serial: 4 };
    await edge1.send({ op: "nbirth", metrics: nodeBirth(aliases, at(base, 60)) });
    await edge1.send({ op: "ndata", metrics: [{ alias: 7, type: "Double", value: 300.0, timestamp: at(base, 61) }] });
    await eventually("data after the rebirth", async () => (await values(factoryA, "edge1", "temperature")).includes(300));
    const temperatures = await values(factoryA, "edge1", "temperature");
    check(!temperatures.includes(200), "DATA by aliases plantd no longer knew is not resolved");
    equal(temperatures.slice(-2), [20, 300], "temperatures after the restart's rebirth");
    const rejected = deadLetters(dir).filter((d) => d.reason === "sparkplug_no_birth" && d.topic === `spBv1.0/${groupA}/NDATA/edge1`);
    equal(rejected.length, 1, "one dead letter for the DATA before the new birth");
    check(typeof rejected[0].payload_base64 === "string" && rejected[0].payload_base64.length > 0, "the dead letter keeps the raw payload in base64");
    for (const letter of deadLetters(dir)) {
      const group = letter.topic.split("/")[1];
      const expected = group === groupA ? factoryA : group === factoryA ? "_unregistered" : factoryB;
      equal(letter.factory_id, expected, `the factory of the dead letter on ${letter.topic}`);
    }

    const last = await plantd.metrics();
    let rejectedMessages = 0;
    for (const [key, value] of Object.entries(last))
      if (key.startsWith('plantd_rejected_total{scope="message"')) rejectedMessages += value;
    equal(last["plantd_messages_received_total"], last["plantd_messages_accepted_total"] + rejectedMessages, "received = accepted + rejected");
    await plantd.stop();
    console.log(`test_sparkplug: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } catch (error) {
    console.error(`test_sparkplug: FAILED: ${error.message}`);
    if (!(error instanceof Failure)) console.error(error.stack);
    try {
      console.error(fs.readFileSync(plantd.log, "utf8").split("\n").slice(-30).join("\n"));
    } catch {}
    return 1;
  } finally {
    for (const edge of edges) {
      try {
        await Promise.race([edge.stop(), sleep(1000)]);
      } catch {}
      edge.child.kill("SIGKILL");
    }
    if (plantd.child && plantd.child.exitCode === null) plantd.child.kill("SIGKILL");
    alertClient.end(true);
    await clearState();
    for (const factory of process.env.PLANTD_TEST_KEEP ? [] : [factoryA, factoryB])
      await fetch(`${influxUrl}/query?q=${encodeURIComponent(`DROP DATABASE "${database(factory)}"`)}`, { method: "POST" }).catch(() => {});
    if (!process.env.PLANTD_TEST_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    else console.error(`kept ${dir}`);
  }
}

main().then((code) => process.exit(code));
