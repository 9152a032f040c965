// BullMQ's no-op drain rate, for benches/peers/run: N jobs added in bulk to a fresh queue,
// then one Worker at concurrency 16 started and timed until the N-th `completed` event.
// A warm-up run first (N/10, at least 1,000), then RUNS runs; prints one JSON line with the
// median. Env: N (100000), RUNS (5), REDIS_URL (redis://127.0.0.1:6379). Every queue it
// makes is obliterated at the end.
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";
import { createRequire } from "node:module";

const N = parseInt(process.env.N || "100000", 10);
const RUNS = Math.max(1, parseInt(process.env.RUNS || "5", 10));
const WARMUP = Math.max(1000, Math.floor(N / 10));
const url = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const version = createRequire(import.meta.url)("bullmq/package.json").version;

async function drain(n) {
  const name = `virel-peer-bullmq-${process.pid}-${Date.now()}`;
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(name, { connection });
  for (let i = 0; i < n; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) batch.push({ name: "noop", data: { i: j } });
    await queue.addBulk(batch);
  }
  let done = 0;
  let resolve;
  const all = new Promise((r) => (resolve = r));
  const worker = new Worker(name, async () => {}, { connection: new IORedis(url, { maxRetriesPerRequest: null }), concurrency: 16, autorun: false });
  worker.on("completed", () => {
    if (++done === n) resolve();
  });
  const started = process.hrtime.bigint();
  worker.run();
  await all;
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await connection.quit();
  return n / secs;
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const w = await drain(WARMUP);
console.error(`bullmq: warm-up of ${WARMUP} jobs at ${w.toFixed(0)} jobs/s`);
const rates = [];
for (let r = 0; r < RUNS; r++) {
  const rate = await drain(N);
  console.error(`bullmq: run ${r + 1} of ${RUNS}: ${N} jobs at ${rate.toFixed(0)} jobs/s`);
  rates.push(rate);
}
console.log(JSON.stringify({ system: `bullmq ${version} (concurrency 16)`, jobs_per_s: Math.round(median(rates)), n: N, runs: rates.map(Math.round) }));
process.exit(0);
