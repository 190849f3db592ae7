#!/usr/bin/env node
// A consumer of the pgsubscriber event stream in Node.js, step by step as in docs/protocol.md.
// Prints one JSON line per event: {"id":..., "topic":..., "payload":...}.
//
//   npm ci
//   node consume.js --dsn postgresql://events_consumer:secret@localhost/app --topics courses \
//     [--after ID] [--count N] [--seconds T] [--safety-poll S]
//
// Environment: PGSUBSCRIBER_DSN, PGSUBSCRIBER_TOPICS (comma-separated), CONSUMER_AFTER,
// CONSUMER_COUNT, CONSUMER_SECONDS, PGSUBSCRIBER_SAFETY_POLL_INTERVAL. On any database error it
// exits with status 1: run it under a supervisor that restarts it from the stored position.
'use strict';

const { parseArgs } = require('node:util');
const { Client } = require('pg');

const env = process.env;
const { values: args } = parseArgs({
  options: {
    dsn: { type: 'string', default: env.PGSUBSCRIBER_DSN },
    topics: { type: 'string', default: env.PGSUBSCRIBER_TOPICS },
    after: { type: 'string', default: env.CONSUMER_AFTER ?? '0' },
    count: { type: 'string', default: env.CONSUMER_COUNT },
    seconds: { type: 'string', default: env.CONSUMER_SECONDS },
    'safety-poll': { type: 'string', default: env.PGSUBSCRIBER_SAFETY_POLL_INTERVAL ?? '30' },
  },
});
if (!args.dsn || !args.topics || !/^\d+$/.test(args.after)) {
  console.error('usage: consume.js --dsn DSN --topics a,b [--after ID] [--count N] [--seconds T]');
  process.exit(2);
}
const topics = args.topics.split(',').map((t) => t.trim()).filter(Boolean);
const maxEvents = args.count === undefined ? Infinity : Number(args.count);
const deadline = args.seconds === undefined ? Infinity : Date.now() + 1000 * Number(args.seconds);
const safetyPollMs = 1000 * Number(args['safety-poll']);
const POLL_MS = 50; // while producer transactions are in flight
const IDLE_LOCK = 'SELECT pg_try_advisory_lock_shared(1884487679, 1) AS held';

async function main() {
  // Step 1: a member of events_consumer, on a direct connection.
  const client = new Client({ connectionString: args.dsn, keepAlive: true });
  client.on('error', (err) => fail(err));
  await client.connect();

  // A notification sets the flag and ends the current wait; the flag is cleared before each fetch,
  // so one that arrives during a fetch makes the loop fetch again.
  let notified = false;
  let wake = () => {};
  client.on('notification', () => {
    notified = true;
    wake();
  });
  const waitForNotification = (ms) =>
    notified || ms <= 0
      ? Promise.resolve()
      : new Promise((resolve) => {
          const timer = setTimeout(resolve, ms);
          wake = () => (clearTimeout(timer), resolve());
        });

  // Step 2: LISTEN on each topic's channel, before anything is read.
  for (const topic of topics) {
    const { rows } = await client.query('SELECT events_channel($1) AS channel', [topic]);
    await client.query(`LISTEN ${client.escapeIdentifier(rows[0].channel)}`);
  }

  // Step 4: one message, one round trip. Parameters go in as literals (the position is digits
  // only). Ids stay strings (pg's default for bigint) and the payload stays text: both exact.
  const topicArray = `ARRAY[${topics.map((t) => client.escapeLiteral(t)).join(', ')}]::text[]`;
  const fetchSql = (position) => `BEGIN ISOLATION LEVEL READ COMMITTED;
    SET LOCAL statement_timeout = '10s';
    SELECT safe_id, writers, notify_queue_usage, purged_up_to_id, beyond, id, topic, payload::text AS payload
    FROM events_fetch(${position}::bigint, ${topicArray}, 1000, 16777216);
    COMMIT;`;

  let position = BigInt(args.after);
  let delivered = 0;
  let holdsLock = false;
  while (delivered < maxEvents && Date.now() < deadline) {
    // Step 3 (again until it succeeds): writers notify while this session holds the lock.
    if (!holdsLock) holdsLock = (await client.query(IDLE_LOCK)).rows[0].held;
    notified = false;
    const results = await client.query(fetchSql(position));
    const rows = results.find((r) => r.command === 'SELECT').rows;
    const horizon = rows[rows.length - 1]; // the last row: the horizon; before it the events
    const more = rows.length > 1 && rows[rows.length - 2].beyond === true;
    if (BigInt(horizon.purged_up_to_id) > position) {
      fail(new Error(`events ${position + 1n}..${horizon.purged_up_to_id} were purged before being read`));
    }
    for (const row of rows) {
      if (row.id === null || row.beyond) continue;
      // The effect and the stored position; a real consumer writes both in one transaction.
      process.stdout.write(`{"id":${row.id},"topic":${JSON.stringify(row.topic)},"payload":${row.payload}}\n`);
      position = BigInt(row.id);
      if (++delivered === maxEvents) break;
    }
    if (delivered === maxEvents) break;
    if (more) continue;
    const mustPoll = !holdsLock || horizon.writers > 0 || horizon.notify_queue_usage >= 0.1;
    await waitForNotification(Math.min(mustPoll ? POLL_MS : safetyPollMs, deadline - Date.now()));
  }
  await client.end();
}

function fail(err) {
  console.error(`consume.js: ${err.message}`);
  process.exit(1);
}

main().catch(fail);
