#!/usr/bin/env node
// A tasktable worker in Node.js with the `pg` package: the whole protocol is SQL.
//
//   DATABASE_URL=postgresql://... node worker.js --queue default [--exit-when-idle]
//
// Claim a batch with tasktable.claim_tasks, run each task's handler, renew leases of long tasks with
// extend_lease, and report with complete_task or fail_task, passing back the attempt number the claim
// returned (the fencing token). Backoff, retries and dead letters are decided by the SQL functions.
// Delivery is at least once: handlers must be idempotent.
'use strict';
const os = require('os');
const { Client } = require('pg');

const BATCH = 10;            // tasks per claim
const POLL_MS = 1000;        // idle poll; a real worker would also LISTEN tasktable
const HEARTBEAT_MS = 5000;   // a third of a 15 s lease; the default lease is 30 s

const handlers = {
  // Example side effect, keyed by (task id, attempt) so a second run of one attempt would be visible.
  record: async (db, task) => {
    await db.query("INSERT INTO example_effect (task_id, attempt, language) VALUES ($1, $2, 'node')",
      [task.id, task.attempt]);
  },
  always_fail: async () => { throw new Error('node handler failed on purpose'); },
};

function parseArgs(argv) {
  const args = { queues: null, exitWhenIdle: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--queue') { (args.queues ??= []).push(argv[++i]); }
    else if (argv[i] === '--exit-when-idle') { args.exitWhenIdle = true; }
    else { throw new Error(`unknown argument ${argv[i]}`); }
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const connectionString = process.env.DATABASE_URL || 'postgresql://127.0.0.1:5432/postgres';
  const worker = `${os.hostname()}:${process.pid}:node`;
  const db = new Client({ connectionString });
  const beat = new Client({ connectionString });
  await db.connect();
  await beat.connect();
  const held = new Map();
  const timer = setInterval(async () => {
    if (held.size === 0) return;
    const ids = [...held.keys()];
    const { rows } = await beat.query('SELECT tasktable.extend_lease($1::bigint[], $2::int[]) AS kept',
      [ids, ids.map((id) => held.get(id))]);
    const kept = new Set(rows[0].kept.map(String));
    const lost = ids.filter((id) => !kept.has(String(id)));
    if (lost.length) console.log(`lost leases (rescued or cancelled): ${lost}`);
  }, HEARTBEAT_MS);

  let completed = 0;
  let failed = 0;
  try {
    for (;;) {
      const { rows: tasks } = await db.query(
        'SELECT id, kind, payload, attempt FROM tasktable.claim_tasks($1, $2, $3)', [BATCH, worker, args.queues]);
      if (tasks.length === 0) {
        if (args.exitWhenIdle) break;
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        continue;
      }
      tasks.forEach((t) => held.set(t.id, t.attempt));
      for (const task of tasks) {
        try {
          // The side effect and the completion commit together: a crash in between redoes both.
          await db.query('BEGIN');
          const handler = handlers[task.kind];
          if (!handler) throw new Error(`no handler registered for kind '${task.kind}'`);
          await handler(db, task);
          const { rows } = await db.query('SELECT tasktable.complete_task($1, $2, $3::jsonb) AS ok',
            [task.id, task.attempt, JSON.stringify({ worker })]);
          if (!rows[0].ok) throw new Error('lease lost: the task was rescued or cancelled');
          await db.query('COMMIT');
          completed++;
        } catch (error) {
          await db.query('ROLLBACK');
          await db.query('SELECT tasktable.fail_task($1, $2, $3)', [task.id, task.attempt, String(error.stack || error)]);
          failed++;
        } finally {
          held.delete(task.id);
        }
      }
    }
  } finally {
    clearInterval(timer);
    await db.end();
    await beat.end();
  }
  console.log(JSON.stringify({ worker, completed, failed }));
}

main().catch((error) => { console.error(`worker.js: ${error.message}`); process.exit(1); });
