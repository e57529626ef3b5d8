#!/usr/bin/env node
// One Sparkplug B edge node, played by Cirrus Link's reference client (sparkplug-client), driven by
// the test through JSON lines on stdin; what it sees comes back as JSON lines on stdout.
//
//   node edge_node.js MQTT_URL GROUP_ID EDGE_NODE_ID CLIENT_ID
//
// Commands: {"op":"nbirth","metrics":[...]}, {"op":"ndata","metrics":[...]},
// {"op":"dbirth","device":"d","metrics":[...]}, {"op":"ddata","device":"d","metrics":[...]},
// {"op":"ddeath","device":"d"}, {"op":"skip_seq"} (the next message's seq jumps one ahead),
// {"op":"raw","topic":"...","metrics":[...],"seq":n} (a payload of the client's encoder on any topic),
// {"op":"stop"}. Values are JSON numbers (the client's encoder takes 64-bit integers as numbers). Each command is answered {"done":<op>} once the client has taken it.
// Events: {"event":"connected"} and {"event":"ncmd","metrics":[{"name":..,"value":..}]}.
"use strict";
const readline = require("readline");
const sparkplug = require("sparkplug-client");
const payloads = require("sparkplug-payload").get("spBv1.0");

const [url, groupId, edgeNode, clientId] = process.argv.slice(2);
const client = sparkplug.newClient({
  serverUrl: url,
  username: "",
  password: "",
  groupId,
  edgeNode,
  clientId,
  version: "spBv1.0",
  keepalive: 5,
});
const say = (object) => process.stdout.write(JSON.stringify(object) + "\n");

const stamped = (metrics) => ({ timestamp: Date.now(), metrics: metrics || [] });

client.on("birth", () => say({ event: "connected" }));
client.on("ncmd", (payload) => {
  say({
    event: "ncmd",
    metrics: (payload.metrics || []).map((m) => ({ name: m.name, value: m.value })),
  });
});
client.on("error", (error) => say({ event: "error", message: String(error) }));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  switch (command.op) {
    case "nbirth":
      client.publishNodeBirth(stamped(command.metrics));
      break;
    case "ndata":
      client.publishNodeData(stamped(command.metrics));
      break;
    case "dbirth":
      client.publishDeviceBirth(command.device, stamped(command.metrics));
      break;
    case "ddata":
      client.publishDeviceData(command.device, stamped(command.metrics));
      break;
    case "ddeath":
      client.publishDeviceDeath(command.device, { timestamp: Date.now() });
      break;
    case "skip_seq":
      client.seq = (client.seq + 1) % 256;
      break;
    case "raw": {
      const payload = stamped(command.metrics);
      if (command.seq !== undefined) payload.seq = command.seq;
      client.client.publish(command.topic, Buffer.from(payloads.encodePayload(payload)));
      break;
    }
    case "stop":
      client.stop();
      say({ done: "stop" });
      setTimeout(() => process.exit(0), 200);
      return;
    default:
      say({ event: "error", message: "unknown op " + command.op });
      return;
  }
  say({ done: command.op });
});
