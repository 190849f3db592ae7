-- A subscriber's record of itself (pgsubscriber/_registry.py): inserted at the first write, then
-- refreshed. db_role defaults to current_user, which the table's row level security checks, so a
-- role can only write rows of its own. Nothing prepared, no session state: works through a
-- transaction-pooling PgBouncer.
-- One message (simple protocol), its own transaction and timeouts whatever the role's defaults
-- (default_transaction_read_only, statement_timeout), as fetch.sql.
BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
SET LOCAL statement_timeout = %(statement_timeout_ms)s;
SET LOCAL lock_timeout = %(statement_timeout_ms)s;
INSERT INTO public.events_subscribers AS s
    (instance, name, host, pid, topics, mode, position, events_delivered, last_error,
     heartbeat_seconds, group_name, role, stopped_at)
VALUES (%(instance)s, %(name)s, %(host)s, %(pid)s, %(topics)s::text[], %(mode)s, %(position)s,
        %(events_delivered)s, %(last_error)s, %(heartbeat_seconds)s, %(group_name)s, %(role)s,
        CASE WHEN %(stopped)s THEN pg_catalog.now() END)
ON CONFLICT (instance) DO UPDATE
SET mode = EXCLUDED.mode,
    position = EXCLUDED.position,
    events_delivered = EXCLUDED.events_delivered,
    last_error = EXCLUDED.last_error,
    group_name = EXCLUDED.group_name,
    role = EXCLUDED.role,
    stopped_at = EXCLUDED.stopped_at,
    last_seen = pg_catalog.now();
COMMIT
