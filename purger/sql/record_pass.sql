-- After each pass (pgsubscriber status and the dashboard read it): what this purger did, and when
-- it runs next. A failed pass keeps the last successful pass's figures and sets last_error. Then
-- the subscriber records gone for more than a day are deleted (row level security allows the
-- purger nothing else on that table).
WITH recorded AS (
    INSERT INTO public.events_purger_passes AS p
        (host, pid, last_pass_at, last_pass_seconds, last_deleted, total_deleted, next_pass_at,
         last_error, updated_at)
    VALUES (%(host)s, %(pid)s, CASE WHEN %(failed)s THEN NULL ELSE pg_catalog.now() END,
            %(seconds)s, %(deleted)s, %(total_deleted)s, %(next_pass_at)s, %(error)s, pg_catalog.now())
    ON CONFLICT (host) DO UPDATE
    SET pid = EXCLUDED.pid,
        last_pass_at = coalesce(EXCLUDED.last_pass_at, p.last_pass_at),
        last_pass_seconds = coalesce(EXCLUDED.last_pass_seconds, p.last_pass_seconds),
        last_deleted = CASE WHEN %(failed)s THEN p.last_deleted ELSE EXCLUDED.last_deleted END,
        total_deleted = EXCLUDED.total_deleted,
        next_pass_at = EXCLUDED.next_pass_at,
        last_error = EXCLUDED.last_error,
        updated_at = EXCLUDED.updated_at
    RETURNING 1
)
DELETE FROM public.events_subscribers AS s
WHERE s.last_seen < pg_catalog.now() - interval '1 day'
