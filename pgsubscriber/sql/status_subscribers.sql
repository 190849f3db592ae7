-- `pgsubscriber status`, per subscriber record: its state and its lag. Gone: it said it stopped,
-- or it has not written for 3 x its interval + 5 s. Lag: the events of its topics after its
-- position (for a live subscriber, those that existed when it last wrote, so a busy stream is not
-- counted against it between two writes), and the age of the oldest of them.
WITH s AS (
    SELECT r.*,
           (r.stopped_at IS NOT NULL
            OR r.last_seen < pg_catalog.now() - pg_catalog.make_interval(secs => 3 * r.heartbeat_seconds + 5))
               AS gone
    FROM public.events_subscribers AS r
)
SELECT s.instance, s.name, s.host, s.pid, s.db_role, s.topics, s.mode, s.position,
       s.events_delivered, s.last_error, s.started_at, s.last_seen, s.stopped_at, s.group_name,
       s.role, s.gone,
       extract(epoch FROM pg_catalog.now() - s.last_seen)::float8 AS seen_ago,
       lag.events AS lag_events,
       extract(epoch FROM pg_catalog.now() - lag.oldest)::float8 AS lag_seconds
FROM s
LEFT JOIN LATERAL (
    SELECT count(*) AS events, min(e.created_at) AS oldest
    FROM public.events AS e
    WHERE e.topic = ANY (s.topics)
      AND e.id > s.position
      AND (s.gone OR e.created_at <= s.last_seen)
) AS lag ON s.position IS NOT NULL
ORDER BY s.name, s.host, s.started_at
