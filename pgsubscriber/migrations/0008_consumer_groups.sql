-- Consumer groups: partition keys on events, and a fetch of one partition.
--
-- A group of subscribers shares the work of one application: each partition of a group is owned by
-- one live member at a time (a session advisory lock, taken by pgsubscriber/group.py; the server
-- releases it when the holder's session ends). An event belongs to partition
-- events_partition(partition_key, id, partitions): a hash of its partition key (the producer sets
-- it, e.g. to a course id, so events of one key stay in order in one partition), or its id when it
-- has none (spread evenly). pgsubscriber.partition_of computes the same in Python; a test keeps
-- the two equal.
--
-- No index on the partition: N is a property of the group, not of the table, and a stored hash
-- would cost every insert. A partition's fetch reads the topic's index range as events_fetch does
-- and skips the other partitions' rows: each member of a group of N reads every event of its
-- topics once per round and delivers 1/N of them (bench: "groups").

ALTER TABLE public.events ADD COLUMN partition_key text;

REVOKE INSERT ON public.events FROM events_producer;
GRANT INSERT (topic, payload, key, partition_key) ON public.events TO events_producer;

-- The partition of an event among `partitions`: the first 32 bits of md5(partition_key) as an
-- unsigned number, modulo partitions; without a key, id modulo partitions.
CREATE FUNCTION public.events_partition(partition_key text, id bigint, partitions integer)
    RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (CASE
    WHEN partition_key IS NULL THEN id OPERATOR(pg_catalog.%) partitions
    ELSE (('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(partition_key), 1, 8))::pg_catalog.bit(32)
            ::pg_catalog.int4::pg_catalog.int8 OPERATOR(pg_catalog.&) 4294967295)
         OPERATOR(pg_catalog.%) partitions
END)::pg_catalog.int4;

GRANT EXECUTE ON FUNCTION public.events_partition(text, bigint, integer) TO PUBLIC;

-- events_fetch (0006) restricted to one partition: the same rows, the same horizon, the same
-- bounds by count and bytes, counted over the partition's events only. The range scanned is the
-- topic's, so a partition whose last event is far behind the horizon scans up to it: the client
-- starts the next scan where the last one ended when its position has not moved (see
-- pgsubscriber/_partitions.py).
CREATE FUNCTION public.events_fetch_partition(
    after_id bigint, wanted_topics text[], max_events integer, max_bytes bigint,
    partitions integer, wanted_partition integer
)
    RETURNS TABLE (
        safe_id bigint, last_drawn_id bigint, writers integer, blocking_pid integer,
        foreign_pid integer, foreign_role text,
        notify_queue_usage double precision, purged_up_to_id bigint, beyond boolean,
        id bigint, topic text, payload jsonb, created_at timestamptz, key text
    )
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET enable_sort = off
    SET jit = off
    SET plan_cache_mode = force_generic_plan
AS
$$
#variable_conflict use_column
DECLARE
    h record;
    horizon_id bigint;
BEGIN
    IF partitions < 1 OR wanted_partition < 0 OR wanted_partition >= partitions THEN
        RAISE EXCEPTION 'events: partition % of % does not exist', wanted_partition, partitions
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO h FROM public.events_delivery_horizon();
    horizon_id := h.safe_id;
    RETURN QUERY
    SELECT NULL::bigint, NULL::bigint, NULL::int, NULL::int, NULL::int, NULL::text,
           NULL::float8, NULL::bigint, x.beyond,
           x.id, x.topic, CASE WHEN x.beyond THEN NULL ELSE x.payload END, x.created_at, x.key
    FROM (SELECT b.*, b.n > max_events OR (b.n > 1 AND b.running > max_bytes) AS beyond FROM (
        SELECT c.*, sum(c.payload_size) OVER w AS running, row_number() OVER w AS n
        FROM (
            SELECT e.id, e.topic, e.payload, e.created_at, e.key, e.payload_size
            FROM (SELECT DISTINCT u.name FROM unnest(wanted_topics) AS u(name)) AS t
            CROSS JOIN LATERAL (
                SELECT ev.id, ev.topic, ev.payload, ev.created_at, ev.key,
                   pg_column_size(ev.payload) AS payload_size
                FROM public.events AS ev
                WHERE (ev.topic, ev.id) > (t.name, after_id)
                  AND (ev.topic, ev.id) <= (t.name, horizon_id)
                  AND public.events_partition(ev.partition_key, ev.id, partitions) = wanted_partition
                ORDER BY ev.topic, ev.id
                LIMIT max_events + 1
            ) AS e
            ORDER BY e.id
            LIMIT max_events + 1
        ) AS c
        WINDOW w AS (ORDER BY c.id ROWS UNBOUNDED PRECEDING)
    ) AS b
    -- Every event that fits, and the first one that does not (the first event always fits).
    WHERE b.n <= 2 OR b.running - b.payload_size <= max_bytes) AS x;
    RETURN QUERY
    SELECT h.safe_id, h.last_drawn_id, h.writers, h.blocking_pid, h.foreign_pid,
           h.foreign_role, h.notify_queue_usage,
           (SELECT coalesce(max(p.purged_up_to_id), 0)
            FROM public.events_purge_watermarks AS p
            WHERE p.topic = ANY(wanted_topics)),
           NULL::boolean, NULL::bigint, NULL::text, NULL::jsonb, NULL::timestamptz, NULL::text;
END
$$;

REVOKE ALL ON FUNCTION public.events_fetch_partition(bigint, text[], integer, bigint, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.events_fetch_partition(bigint, text[], integer, bigint, integer, integer)
    TO events_consumer, events_purger;
