-- How far delivery may go now (see db_migrations 0002_gap_free_delivery.sql). Run as its own
-- statement BEFORE the fetch: the fetch's snapshot must be taken after the writers' locks were read.
SELECT safe_id, last_drawn_id, writers, blocking_pid, blocking_since
FROM public.events_delivery_horizon()
