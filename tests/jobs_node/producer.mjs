// A TypeScript service's side of promptgov's job queue, as a BullMQ user writes it: enqueue
// triage jobs with the options BullMQ users set, then read the results our worker wrote.
// Usage: node producer.mjs REDIS_URL QUEUE PROMPT_HASH N  → prints a JSON array of results.
import { createHash } from "node:crypto";
import { Queue } from "bullmq";
import IORedis from "ioredis";

const [url, name, promptHash, n] = process.argv.slice(2);

// promptgov's job id: sha256 of the canonical JSON (sorted keys, no spaces) of key, input and
// the prompt version's content hash, so a job submitted from Python and from Node is one job.
const canonical = (v) =>
  Array.isArray(v) ? `[${v.map(canonical).join(",")}]`
  : v && typeof v === "object"
    ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`
    : JSON.stringify(v);
const jobId = (key, input) =>
  createHash("sha256").update(canonical({ input, key, prompt: promptHash })).digest("hex");

const connection = new IORedis(url, { maxRetriesPerRequest: null });
const queue = new Queue(name, { connection });
const ids = [];
for (let i = 0; i < Number(n); i++) {
  const key = `node/${i}`;
  const input = { text: `node ticket ${i}: where is my card?` };
  const opts = {
    jobId: jobId(key, input), attempts: 3, removeOnComplete: false, removeOnFail: false,
    backoff: { type: "exponential", delay: 100, jitter: 0.5 },
  };
  const job = await queue.add("triage", { key, input }, opts);
  if (i === 0) await queue.add("triage", { key, input }, opts); // a duplicate: a no-op
  ids.push(job.id);
}
const deadline = Date.now() + 60_000;
const results = [];
for (const id of ids) {
  for (;;) {
    // the state first, then the job: a job fetched before it completes, then found completed,
    // would carry no return value
    const state = await queue.getJobState(id);
    if (state === "completed" || state === "failed") {
      const job = await queue.getJob(id);
      results.push({ id, state, returnvalue: job.returnvalue, attemptsMade: job.attemptsMade,
                     failedReason: job.failedReason ?? null });
      break;
    }
    if (Date.now() > deadline) throw new Error(`job ${id} still ${state} after 60 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
console.log(JSON.stringify({ counts: await queue.getJobCounts("completed", "failed", "waiting", "active", "delayed"), results }));
await queue.close();
await connection.quit();
