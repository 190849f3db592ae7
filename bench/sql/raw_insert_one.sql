-- Baseline of `publish`: a plain single-row INSERT, no trigger, no NOTIFY.
INSERT INTO public.raw_events (topic, payload) VALUES (%s, %s::jsonb)
