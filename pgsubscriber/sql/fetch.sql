-- The delivery horizon and the next batch in one round trip (db_migrations 0004_fetch_function.sql
-- explains why the horizon must be read before the batch's snapshot, and how the function does it).
SELECT safe_id, last_drawn_id, writers, blocking_pid, blocking_since, purged_up_to,
       id, topic, payload, created_at, key
FROM public.events_fetch(%(after_id)s, %(topics)s, %(limit)s)
