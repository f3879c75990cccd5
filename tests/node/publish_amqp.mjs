// celery-node publishing one journey step to a RabbitMQ broker, as a Node billing app would.
// Used by tests/integration/test_quorum.py.
//
//   node publish_amqp.mjs AMQP_URL < kwargs.json
//
// Prints one JSON document: {"published": true} once celery-node's publish resolved, or
// {"error": "<message>"} when the broker refused it (the channel closed, an error event).
import celery from "celery-node";

const SETTLE_MS = 1000; // a refused declaration closes the channel right after the publish

function report(doc) {
  process.stdout.write(JSON.stringify(doc) + "\n");
  process.exit(0);
}

process.on("uncaughtException", (error) => report({ error: String(error.message || error) }));
process.on("unhandledRejection", (error) => report({ error: String(error?.message || error) }));

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const kwargs = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const url = process.argv[2];
const client = celery.createClient(url, url, "zns");
const result = client.createTask("zns.send_journey_step").applyAsync([], kwargs);
await client.broker.channel;
await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
report({ published: true, task_id: result.taskId });
