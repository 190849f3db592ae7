-- `pgsubscriber status`: producer transactions in flight (events_writers(), migration 0007), and
-- how long each has been open. One that registered before the newest id drawn holds back the
-- delivery of every id after its own until it ends.
SELECT w.pid, w.registered_id, w.xact_start, w.application_name, w.role,
       extract(epoch FROM pg_catalog.now() - w.xact_start)::float8 AS open_seconds
FROM public.events_writers() AS w
