// A producer in a Node.js codebase: celery-node's own client publishes journey steps by task name
// on the broker and reads their results back from the Redis result backend.
// Used by tests/integration/test_node_producer.py.
//
//   node produce.mjs REDIS_URL < spec.json
//
// spec: {
//   "queue": "zns",                          default "zns"
//   "task": "zns.send_journey_step",         default
//   "timeout_ms": 30000,                     how long each result is waited for
//   "steps": [{"protocol": 2 | 1, "kwargs": {...}, "task_id": "..." (default celery-node's
//              uuid v4), "wait": true (false: publish only, read no result)}]
// }
//
// Prints one JSON document on stdout: for each step, in order, the task id and whether it is a
// well-formed UTF-16 string, the message exactly as celery-node pushed it to Redis (the kombu
// envelope as a string, and decoded with its base64 body), and the result read back (or null).
//
// Protocols: celery-node 0.5.9 builds both itself, chosen by `client.conf.TASK_PROTOCOL`
// (app/client.js: `asTaskV2`, the default, puts the task name and id in the headers and the body
// is [args, kwargs, embed]; `asTaskV1` sends empty headers and a body {task, id, args, kwargs}).
// Nothing is hand-built here: the only hook is a spy around the LPUSH of celery-node's broker
// connection (its ioredis client), to learn when the publish is done and what went on the wire.
import { createRequire } from "node:module";

import celery from "celery-node";

const require = createRequire(import.meta.url);
const CELERY_NODE_VERSION = require("celery-node/package.json").version;
const RESULT_POLL_MS = 50; // celery-node's AsyncResult polls GET celery-task-meta-<id>
const PUBLISH_TIMEOUT_MS = 10000;

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (chunk) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

function wellFormed(text) {
  if (typeof text.isWellFormed === "function") return text.isWellFormed(); // Node >= 20
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}

// One celery-node client per protocol; every LPUSH of its broker connection is recorded.
function clientFor(clients, protocol, url, queue) {
  if (!clients.has(protocol)) {
    const client = celery.createClient(url, url, queue);
    client.conf.TASK_PROTOCOL = protocol;
    const connection = client.broker.redis; // ioredis, as celery-node's RedisBroker made it
    const lpush = connection.lpush.bind(connection);
    const pushed = [];
    connection.lpush = (key, value) => {
      const done = lpush(key, value);
      pushed.push({ key, value, done });
      return done;
    };
    clients.set(protocol, { client, pushed });
  }
  return clients.get(protocol);
}

async function publishAndRead(entry, step, spec) {
  const { client, pushed } = entry;
  const before = pushed.length;
  const result = client.sendTask(spec.task, [], step.kwargs, step.task_id);
  await client.isReady(); // sendTask publishes once both connections are up
  const deadline = Date.now() + PUBLISH_TIMEOUT_MS;
  while (pushed.length === before) {
    if (Date.now() > deadline) throw new Error(`celery-node published nothing for ${step.task_id}`);
    await new Promise((r) => setTimeout(r, 1));
  }
  const wire = pushed[before];
  await wire.done; // the LPUSH went through
  const envelope = JSON.parse(wire.value);
  const published = {
    queue: wire.key,
    raw: wire.value,
    envelope,
    body: JSON.parse(Buffer.from(envelope.body, "base64").toString("utf8")),
  };
  const out = {
    protocol: step.protocol,
    task_id: result.taskId,
    task_id_well_formed: wellFormed(result.taskId),
    published,
    result: null,
    state: null,
    error: null,
  };
  if (step.wait === false) return out;
  try {
    out.result = await result.get(spec.timeout_ms, RESULT_POLL_MS);
    out.state = (await client.backend.getTaskMeta(result.taskId)).status;
  } catch (err) {
    out.state = err.message; // celery-node: "TIMEOUT", "FAILURE" or "REVOKED"
    out.error = { message: err.message, ...err };
  }
  return out;
}

async function main() {
  const url = process.argv[2];
  if (!url) throw new Error("usage: node produce.mjs REDIS_URL < spec.json");
  const spec = {
    queue: "zns",
    task: "zns.send_journey_step",
    timeout_ms: 30000,
    ...JSON.parse(await readStdin()),
  };
  const clients = new Map();
  const steps = [];
  try {
    for (const step of spec.steps) {
      if (step.protocol !== 1 && step.protocol !== 2) throw new Error(`protocol ${step.protocol}?`);
      const entry = clientFor(clients, step.protocol, url, spec.queue);
      steps.push(await publishAndRead(entry, step, spec));
    }
  } finally {
    for (const { client } of clients.values()) await client.disconnect();
  }
  return { celery_node_version: CELERY_NODE_VERSION, node_version: process.version, steps };
}

main().then(
  (report) => process.stdout.write(`${JSON.stringify(report)}\n`),
  (err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
