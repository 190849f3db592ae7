-- Run once when a subscriber registers (its own role's rows only, by row level security): it
-- replaces the gone records of the same name on the same host (a restarted process), and deletes
-- records gone for more than a day. "Gone" as in status_subscribers.sql.
-- One message, its own transaction and timeouts, as registry_write.sql.
BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
SET LOCAL statement_timeout = %(statement_timeout_ms)s;
SET LOCAL lock_timeout = %(statement_timeout_ms)s;
DELETE FROM public.events_subscribers AS s
WHERE s.instance <> %(instance)s
  AND (s.stopped_at IS NOT NULL
       OR s.last_seen < pg_catalog.now() - pg_catalog.make_interval(secs => 3 * s.heartbeat_seconds + 5))
  AND ((s.name = %(name)s AND s.host = %(host)s)
       OR s.last_seen < pg_catalog.now() - interval '1 day');
COMMIT
