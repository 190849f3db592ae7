-- `pgsubscriber status`, per topic: events stored, oldest and newest, events in the last minute,
-- and the purge watermark. One pass over the table (the status is read every few seconds at
-- most; a stream of tens of millions of events costs a second per read).
SELECT coalesce(e.topic, p.topic) AS topic,
       coalesce(e.events, 0) AS events,
       e.oldest_id,
       e.newest_id,
       extract(epoch FROM pg_catalog.now() - e.oldest_at)::float8 AS oldest_age,
       extract(epoch FROM pg_catalog.now() - e.newest_at)::float8 AS newest_age,
       coalesce(e.last_minute, 0) AS last_minute,
       coalesce(p.purged_up_to_id, 0) AS purged_up_to_id,
       p.purged_at
FROM (
    SELECT ev.topic, count(*) AS events, min(ev.id) AS oldest_id, max(ev.id) AS newest_id,
           min(ev.created_at) AS oldest_at, max(ev.created_at) AS newest_at,
           count(*) FILTER (WHERE ev.created_at > pg_catalog.now() - interval '1 minute') AS last_minute
    FROM public.events AS ev
    GROUP BY ev.topic
) AS e
FULL JOIN public.events_purge_watermarks AS p ON p.topic = e.topic
ORDER BY 1
