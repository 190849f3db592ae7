-- The same page with the payload left as text: how fast rows move when nothing is decoded.
SELECT id, topic, payload::text, created_at, key
FROM public.events
WHERE topic = ANY(%(topics)s) AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s
