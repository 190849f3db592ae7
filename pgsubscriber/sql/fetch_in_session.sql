-- The same fetch as fetch.sql, as one statement, for a session that itself runs in READ COMMITTED
-- with the subscriber's statement_timeout (session_setup.sql, checked by events_fetch itself). A
-- transaction pooler may hand this statement a server connection with other settings: events_fetch
-- then refuses to run, or the statement is cancelled, and the session falls back to fetch.sql.
SELECT safe_id, last_drawn_id, writers, blocking_pid, foreign_pid, foreign_role,
       notify_queue_usage, purged_up_to_id, beyond, id, topic, payload, created_at, key
FROM public.events_fetch(%(after_id)s, %(topics)s, %(limit)s, %(max_bytes)s)
