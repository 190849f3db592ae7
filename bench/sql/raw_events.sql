-- The raw baselines' table: the same columns, constraints, defaults and indexes as public.events
-- (its own identity sequence included), but no trigger: no writer registration, no NOTIFY.
CREATE TABLE public.raw_events (LIKE public.events INCLUDING ALL);
