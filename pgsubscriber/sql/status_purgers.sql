-- `pgsubscriber status`: what each purger did last (written by the purger after each pass).
SELECT p.host, p.pid, p.last_pass_at, p.last_pass_seconds, p.last_deleted, p.total_deleted,
       p.next_pass_at, p.last_error, p.updated_at,
       extract(epoch FROM pg_catalog.now() - p.last_pass_at)::float8 AS last_pass_age
FROM public.events_purger_passes AS p
ORDER BY p.host
