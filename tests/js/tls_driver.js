// kafkajs over TLS for the black-box tests: connects with the CA (and a client certificate when
// given), produces records, and reports what the cluster description names.
//
// Usage: node tls_driver.js REQUEST_JSON_FILE   (prints one JSON object on stdout)
//   {brokers, topic, ca, cert, key, values}: produces `values` (strings) to partition 0 of
//   `topic` with acks=all, then answers {offsets: [...], brokers: [{nodeId, host, port}]}.
// Every call is bounded by kafkajs timeouts and a global watchdog.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const WATCHDOG_MS = 60000;
setTimeout(() => {
  process.stderr.write(`tls_driver: watchdog fired after ${WATCHDOG_MS} ms\n`);
  process.exit(3);
}, WATCHDOG_MS).unref();

async function main() {
  const req = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const ssl = { ca: [fs.readFileSync(req.ca, 'utf8')], rejectUnauthorized: true };
  if (req.cert) {
    ssl.cert = fs.readFileSync(req.cert, 'utf8');
    ssl.key = fs.readFileSync(req.key, 'utf8');
  }
  const kafka = new Kafka({
    clientId: 'sluice-blackbox-kafkajs-tls',
    brokers: req.brokers,
    ssl,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
    logLevel: logLevel.ERROR,
  });
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
  await producer.connect();
  const offsets = [];
  try {
    for (const value of req.values) {
      const [meta] = await producer.send({ topic: req.topic, acks: -1, messages: [{ value, partition: 0 }] });
      offsets.push(Number(meta.baseOffset));
    }
  } finally {
    await producer.disconnect();
  }
  const admin = kafka.admin();
  await admin.connect();
  let brokers;
  try {
    brokers = (await admin.describeCluster()).brokers;
  } finally {
    await admin.disconnect();
  }
  process.stdout.write(JSON.stringify({ offsets, brokers }));
}

main().catch((error) => {
  process.stderr.write(`tls_driver: ${error.stack || error}\n`);
  process.exit(2);
});
