-- read_events(since=...): the first id of these topics created at or after a time
-- (events_created_at_idx; created_at is the writer's transaction start, so ids and times are in
-- nearly the same order, and everything after this id is read).
SELECT min(e.id)
FROM public.events AS e
WHERE e.created_at >= %(since)s AND e.topic = ANY (%(topics)s::text[])
