-- Baseline of `publish_many`: one multi-row INSERT and one NOTIFY, in one statement (one round
-- trip, like publish_many on an autocommit connection).
WITH inserted AS (
    INSERT INTO public.raw_events (topic, payload)
    SELECT t, p::jsonb FROM unnest(%s::text[], %s::text[]) AS input(t, p)
    RETURNING 1
)
SELECT pg_notify('raw_events', '')
