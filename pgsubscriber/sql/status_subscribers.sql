-- `pgsubscriber status`, per subscriber record: its state and its lag. Gone: it said it stopped,
-- or it has not written for 3 x its interval + 5 s. Lag: the events of its topics after its
-- position and, for a live subscriber, before the first event created after its last write (so a
-- busy stream is not counted against it between two writes); and the age of the oldest of them.
-- Index reads only: the bound through events_created_at_idx, the count by an index-only scan of
-- each topic's range of events_topic_id_idx, the oldest at the start of each range.
-- Each role writes its own records with any values the columns accept ('infinity' times, a NaN
-- or infinite interval), so what the status computes with is clamped first: one crafted record
-- must not make the status fail for everyone. A time that is not finite reads as the epoch (the
-- record shows as gone), the interval stays within 0 s .. 1 day.
WITH r AS (
    SELECT x.instance, x.db_role, x.name, x.host, x.pid, x.topics, x.mode, x.position,
           x.events_delivered, x.last_error, x.group_name, x.role,
           CASE WHEN pg_catalog.isfinite(x.started_at) THEN x.started_at
                ELSE 'epoch'::timestamptz END AS started_at,
           CASE WHEN pg_catalog.isfinite(x.last_seen) THEN x.last_seen
                ELSE 'epoch'::timestamptz END AS last_seen,
           CASE WHEN x.stopped_at IS NULL OR pg_catalog.isfinite(x.stopped_at) THEN x.stopped_at
                ELSE 'epoch'::timestamptz END AS stopped_at,
           least(greatest(x.heartbeat_seconds, 0), 86400) AS heartbeat_seconds
    FROM public.events_subscribers AS x
), s AS (
    SELECT r.*,
           (r.stopped_at IS NOT NULL
            OR r.last_seen < pg_catalog.now() - pg_catalog.make_interval(secs => 3 * r.heartbeat_seconds + 5))
               AS gone
    FROM r
), bounded AS (
    SELECT s.*,
           CASE WHEN s.gone THEN 9223372036854775807
                ELSE coalesce((SELECT e.id FROM public.events AS e
                               WHERE e.created_at > s.last_seen
                               ORDER BY e.created_at LIMIT 1), 9223372036854775807)
           END AS before_id
    FROM s
)
SELECT b.instance, b.name, b.host, b.pid, b.db_role, b.topics, b.mode, b.position,
       b.events_delivered, b.last_error, b.started_at, b.last_seen, b.stopped_at, b.group_name,
       b.role, b.gone,
       extract(epoch FROM pg_catalog.now() - b.last_seen)::float8 AS seen_ago,
       lag.events AS lag_events,
       extract(epoch FROM pg_catalog.now() - oldest.created_at)::float8 AS lag_seconds
FROM bounded AS b
LEFT JOIN LATERAL (
    SELECT count(*) AS events
    FROM public.events AS e
    WHERE e.topic = ANY (b.topics) AND e.id > b.position AND e.id < b.before_id
) AS lag ON b.position IS NOT NULL
LEFT JOIN LATERAL (
    SELECT min(first.created_at) AS created_at
    FROM unnest(b.topics) AS t(name)
    CROSS JOIN LATERAL (
        SELECT e.created_at FROM public.events AS e
        WHERE e.topic = t.name AND e.id > b.position AND e.id < b.before_id
        ORDER BY e.topic, e.id LIMIT 1
    ) AS first
) AS oldest ON b.position IS NOT NULL
ORDER BY b.name, b.host, b.started_at
