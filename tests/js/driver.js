// kafkajs driver for the black-box tests: a third, independent client implementation.
//
// Usage: node driver.js COMMAND REQUEST_JSON_FILE   (prints one JSON object on stdout)
//   produce: {brokers, topic, acks, codec, records: [{key, value, headers, timestamp, partition}]}
//            keys, values and header values are base64 (null stays null); answers
//            {results: [{partition, offset}]} in record order.
//   admin:   {brokers, topic, partitions, grownPartitions} runs create, metadata, offsets,
//            create partitions, describe configs and delete, and answers what each returned.
//   group:   {brokers, topic, groupId, consumers, expected} runs `consumers` group members on the
//            topic until `expected` values arrived and the members' assignments cover every
//            partition, then disconnects them (committing); answers {assignments, values}.
//
// kafkajs ships gzip; snappy, lz4 and zstd codecs are registered here from pure JS/WASM or
// prebuilt packages. Every call is bounded by kafkajs timeouts and a global watchdog.
'use strict';

const fs = require('fs');
const { Kafka, CompressionTypes, CompressionCodecs, ConfigResourceTypes, logLevel } = require('kafkajs');

const WATCHDOG_MS = 120000;
setTimeout(() => {
  process.stderr.write(`driver: watchdog fired after ${WATCHDOG_MS} ms\n`);
  process.exit(3);
}, WATCHDOG_MS).unref();

function registerCodecs() {
  CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy');
  const lz4 = require('lz4-napi');
  CompressionCodecs[CompressionTypes.LZ4] = () => ({
    compress: async (encoder) => lz4.compressFrame(encoder.buffer),
    decompress: async (buffer) => lz4.decompressFrame(buffer),
  });
  const { ZstdCodec } = require('zstd-codec');
  const simple = new Promise((resolve) => ZstdCodec.run((zstd) => resolve(new zstd.Simple())));
  CompressionCodecs[CompressionTypes.ZSTD] = () => ({
    compress: async (encoder) => Buffer.from((await simple).compress(encoder.buffer, 3)),
    decompress: async (buffer) => Buffer.from((await simple).decompress(buffer)),
  });
}

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
};

function client(brokers) {
  return new Kafka({
    clientId: 'sluice-blackbox-kafkajs',
    brokers,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
    logLevel: logLevel.ERROR,
  });
}

const b64 = (s) => (s === null ? null : Buffer.from(s, 'base64'));

async function produce(req) {
  const producer = client(req.brokers).producer({ allowAutoTopicCreation: false, idempotent: false });
  await producer.connect();
  const results = new Array(req.records.length);
  const chunk = 500;
  try {
    for (let start = 0; start < req.records.length; start += chunk) {
      const slice = req.records.slice(start, start + chunk);
      const messages = slice.map((r) => {
        const headers = {};
        for (const [k, v] of r.headers) headers[k] = b64(v);
        return { key: b64(r.key), value: b64(r.value), headers, timestamp: String(r.timestamp), partition: r.partition };
      });
      const meta = await producer.send({
        topic: req.topic, messages, acks: req.acks, timeout: 30000, compression: CODECS[req.codec],
      });
      // Within one send, each partition's messages form one batch in order: offset = base + index.
      const base = new Map(meta.map((m) => [m.partition, BigInt(m.baseOffset)]));
      const seen = new Map();
      slice.forEach((r, i) => {
        const n = seen.get(r.partition) || 0n;
        seen.set(r.partition, n + 1n);
        if (!base.has(r.partition)) throw new Error(`no result for partition ${r.partition}: ${JSON.stringify(meta)}`);
        results[start + i] = { partition: r.partition, offset: Number(base.get(r.partition) + n) };
      });
    }
  } finally {
    await producer.disconnect();
  }
  return { results };
}

async function admin(req) {
  const adminClient = client(req.brokers).admin();
  await adminClient.connect();
  const out = {};
  try {
    out.created = await adminClient.createTopics({
      topics: [{ topic: req.topic, numPartitions: req.partitions, replicationFactor: 1,
        configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
      waitForLeaders: true, timeout: 30000,
    });
    out.createdAgain = await adminClient.createTopics({
      topics: [{ topic: req.topic, numPartitions: req.partitions }], timeout: 30000,
    });
    out.listed = (await adminClient.listTopics()).includes(req.topic);
    const md = await adminClient.fetchTopicMetadata({ topics: [req.topic] });
    out.partitions = md.topics[0].partitions.map((p) => p.partitionId).sort((a, b) => a - b);
    out.offsets = await adminClient.fetchTopicOffsets(req.topic);
    await adminClient.createPartitions({ topicPartitions: [{ topic: req.topic, count: req.grownPartitions }] });
    const md2 = await adminClient.fetchTopicMetadata({ topics: [req.topic] });
    out.grown = md2.topics[0].partitions.length;
    const configs = await adminClient.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: req.topic, configNames: ['retention.ms'] }],
      includeSynonyms: false,
    });
    out.retention = configs.resources[0].configEntries.find((e) => e.configName === 'retention.ms').configValue;
    await adminClient.deleteTopics({ topics: [req.topic], timeout: 30000 });
    out.listedAfterDelete = (await adminClient.listTopics()).includes(req.topic);
  } finally {
    await adminClient.disconnect();
  }
  return out;
}

async function group(req) {
  const kafka = client(req.brokers);
  const admin = kafka.admin();
  await admin.connect();
  const partitionCount = (await admin.fetchTopicMetadata({ topics: [req.topic] })).topics[0].partitions.length;
  await admin.disconnect();
  const values = [];
  const assignments = new Array(req.consumers).fill(null).map(() => []);
  const consumers = [];
  let final = null;
  for (let i = 0; i < req.consumers; i++) {
    const consumer = kafka.consumer({
      groupId: req.groupId, sessionTimeout: 10000, rebalanceTimeout: 20000, heartbeatInterval: 500, maxWaitTimeInMs: 100,
    });
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      assignments[i] = (event.payload.memberAssignment[req.topic] || []).slice().sort((a, b) => a - b);
    });
    consumers.push(consumer);
  }
  try {
    for (const consumer of consumers) {
      await consumer.connect();
      await consumer.subscribe({ topics: [req.topic], fromBeginning: true });
      await consumer.run({ eachMessage: async ({ message }) => { values.push(message.value.toString()); } });
    }
    const covered = () => {
      const all = assignments.flat();
      return assignments.every((a) => a.length > 0) && all.length === partitionCount && new Set(all).size === partitionCount;
    };
    const deadline = Date.now() + 90000;
    while (Date.now() < deadline && !(values.length >= req.expected && covered())) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (!(values.length >= req.expected && covered())) {
      throw new Error(`group not done: ${values.length}/${req.expected} values, assignments ${JSON.stringify(assignments)}`);
    }
    // Members leaving below rebalance the rest: keep the assignments as they were when covered.
    final = assignments.map((a) => a.slice());
  } finally {
    for (const consumer of consumers) await consumer.disconnect();
  }
  return { assignments: final, values };
}

async function main() {
  const [command, file] = process.argv.slice(2);
  const req = JSON.parse(fs.readFileSync(file, 'utf8'));
  registerCodecs();
  const handlers = { produce, admin, group };
  if (!handlers[command]) throw new Error(`unknown command ${command}`);
  const answer = await handlers[command](req);
  process.stdout.write(JSON.stringify(answer));
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`driver: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
