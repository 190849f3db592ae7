-- Baseline of catch-up: the next page of a plain keyset read, in id order.
SELECT id, topic, payload, created_at, key
FROM public.events
WHERE topic = ANY(%(topics)s) AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s
