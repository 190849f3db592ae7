-- fetch_in_session.sql for one partition of a consumer group (events_fetch_partition, migration
-- 0008). Group members need a session (their lease), so no pooler fallback here.
SELECT safe_id, last_drawn_id, writers, blocking_pid, foreign_pid, foreign_role,
       notify_queue_usage, purged_up_to_id, beyond, id, topic, payload, created_at, key
FROM public.events_fetch_partition(%(after_id)s, %(topics)s, %(limit)s, %(max_bytes)s,
                                   %(partitions)s, %(partition)s)
