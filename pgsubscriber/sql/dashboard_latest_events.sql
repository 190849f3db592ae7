-- The dashboard's latest events of one topic (events_topic_id_idx, backwards from the newest).
SELECT e.id, e.topic, e.payload::text, e.created_at, e.key
FROM public.events AS e
WHERE e.topic = %(topic)s
ORDER BY e.topic DESC, e.id DESC
LIMIT %(limit)s
