-- The next batch after the handler's position, never past the delivery horizon, plus how far the
-- purger has deleted on these topics. One statement, so both come from one snapshot: an event that
-- was purged before this read is either absent from the batch AND covered by the watermark, or in
-- the batch. The LEFT JOIN returns one row (with NULL event columns) when the batch is empty.
SELECT w.purged_up_to, e.id, e.topic, e.payload, e.created_at, e.key
FROM (
    SELECT coalesce(max(purged_up_to_id), 0) AS purged_up_to
    FROM public.events_purge_watermarks
    WHERE topic = ANY(%(topics)s)
) AS w
LEFT JOIN LATERAL (
    SELECT id, topic, payload, created_at, key
    FROM public.events
    WHERE topic = ANY(%(topics)s) AND id > %(after_id)s AND id <= %(safe_id)s
    ORDER BY id
    LIMIT %(limit)s
) AS e ON true
ORDER BY e.id
