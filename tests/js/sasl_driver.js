// kafkajs over SASL for the black-box tests: authenticates with the mechanism given, produces
// records, and reports their offsets, or the error that stopped it.
//
// Usage: node sasl_driver.js REQUEST_JSON_FILE   (prints one JSON object on stdout)
//   {brokers, topic, mechanism, username, password, values}: produces `values` (strings) to
//   partition 0 of `topic` with acks=all over SASL_PLAINTEXT, then answers {offsets: [...]};
//   on failure answers {error: NAME, message: TEXT} and exits 0.
// Every call is bounded by kafkajs timeouts and a global watchdog.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const WATCHDOG_MS = 60000;
setTimeout(() => {
  process.stderr.write(`sasl_driver: watchdog fired after ${WATCHDOG_MS} ms\n`);
  process.exit(3);
}, WATCHDOG_MS).unref();

async function main() {
  const req = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const kafka = new Kafka({
    clientId: 'sluice-blackbox-kafkajs-sasl',
    brokers: req.brokers,
    sasl: { mechanism: req.mechanism, username: req.username, password: req.password },
    connectionTimeout: 10000,
    authenticationTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: logLevel.NOTHING,
  });
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
  try {
    await producer.connect();
  } catch (error) {
    process.stdout.write(JSON.stringify({ error: error.name, message: String(error.message) }));
    return;
  }
  const offsets = [];
  try {
    for (const value of req.values) {
      const [meta] = await producer.send({ topic: req.topic, acks: -1, messages: [{ value, partition: 0 }] });
      offsets.push(Number(meta.baseOffset));
    }
  } finally {
    await producer.disconnect();
  }
  process.stdout.write(JSON.stringify({ offsets }));
}

main().catch((error) => {
  process.stderr.write(`sasl_driver: ${error.stack || error}\n`);
  process.exit(2);
});
