-- One message, one round trip, correct whatever the session's defaults: its own READ COMMITTED
-- transaction (events_fetch needs a new snapshot per statement and refuses to run otherwise),
-- the server's own bound on the query, no lock_timeout of the role's to cut it short, then the
-- next batch and the delivery horizon (pgsubscriber/migrations/0005_safe_delivery.sql explains
-- the rows: the events, maybe one row `beyond` the batch, then the horizon).
BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL statement_timeout = %(statement_timeout_ms)s;
SET LOCAL lock_timeout = 0;
SELECT safe_id, last_drawn_id, writers, blocking_pid, foreign_pid, foreign_role,
       notify_queue_usage,
       purged_up_to_id, beyond, id, topic, payload, created_at, key
FROM public.events_fetch(%(after_id)s, %(topics)s::text[], %(limit)s, %(max_bytes)s);
COMMIT
