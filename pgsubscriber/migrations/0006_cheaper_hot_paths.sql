-- The same guarantees as 0005, at less cost on the two hot paths (measured with track_functions
-- and the backends' CPU time, 1 producer at 500 events/s with one subscriber attached):
--
--   * Write path: events_wake_listeners computed each row's channel by calling events_channel(), a
--     SQL function that PL/pgSQL cannot inline: the SQL function executor cost more than the rest of
--     the trigger. The channel is now computed in place (the same expression; a test checks that
--     events_channel, this trigger and pgsubscriber.channel_for agree).
--   * Read path: every fetch that found a producer transaction in flight (about half of them under
--     steady single-event publishing) called events_writer_since, which read pg_stat_activity: the
--     costliest part of the fetch by far. The delivery horizon now reports the blocking writer's pid
--     only; when its transaction started is a question of its own (events_writer_since), which the
--     subscriber asks once per blocking writer, when that writer has held delivery back long enough
--     to be logged. events_writer_since reads that one backend's entry only.

-- Write path -----------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.events_wake_listeners() RETURNS trigger
    LANGUAGE plpgsql
AS
$$
BEGIN
    -- public.events_channel(NEW.topic), inlined.
    PERFORM pg_catalog.pg_notify(
        CASE
            WHEN pg_catalog.octet_length(NEW.topic) OPERATOR(pg_catalog.<=) 56
                THEN 'events:' OPERATOR(pg_catalog.||) NEW.topic
            ELSE 'events:' OPERATOR(pg_catalog.||) pg_catalog.md5(NEW.topic)
        END,
        '');
    PERFORM pg_catalog.set_config('pgsubscriber.wake', NEW.topic, true);
    RETURN NEW;
END
$$;

-- Read path ------------------------------------------------------------------------------------

DROP FUNCTION public.events_fetch(bigint, text[], integer, bigint);
DROP FUNCTION public.events_delivery_horizon();

-- When a writer that holds a writer key started its transaction. pg_stat_activity hides that from
-- other roles, so this reads it as the owner, for such a backend only (one backend's entry).
CREATE OR REPLACE FUNCTION public.events_writer_since(writer_pid integer) RETURNS timestamptz
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS
$$
    SELECT a.xact_start
    FROM pg_stat_get_activity(writer_pid) AS a
    WHERE EXISTS (
        SELECT FROM pg_locks AS l
        WHERE l.pid = writer_pid AND l.locktype = 'advisory' AND l.objsubid = 2
          AND l.classid >= 1884487680::oid
    )
$$;

-- What a subscriber may deliver now: every committed event with id <= safe_id is visible to any
-- snapshot taken after this call. Order matters: the sequence first, the locks second (0002). The
-- reasoning about the locks read is 0005's; only blocking_since is gone (events_writer_since).
CREATE FUNCTION public.events_delivery_horizon(
    OUT safe_id bigint,            -- deliver up to here
    OUT last_drawn_id bigint,      -- newest id drawn by anyone (committed or not)
    OUT writers integer,           -- transactions writing to events now
    OUT blocking_pid integer,      -- the writer holding safe_id back, if any
    OUT foreign_pid integer,       -- a backend holding a writer key without writing events (ignored)
    OUT foreign_role text,         -- its role
    OUT notify_queue_usage double precision  -- fraction of the server's NOTIFY queue in use
)
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = pg_catalog, pg_temp
AS
$$
DECLARE
    first_registered bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'events: the delivery horizon needs READ COMMITTED, not %',
                current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Run it in BEGIN ISOLATION LEVEL READ COMMITTED: a snapshot taken before '
                         'the writers were read could miss a committed event.';
    END IF;
    last_drawn_id := coalesce(pg_sequence_last_value('public.events_id_seq'::regclass), 0);
    SELECT count(*) FILTER (WHERE t.writes)::int,
           min(t.registered) FILTER (WHERE t.writes),
           (array_agg(t.pid ORDER BY t.registered) FILTER (WHERE t.writes))[1],
           min(t.pid) FILTER (WHERE NOT t.writes AND t.registered < last_drawn_id)
      INTO writers, first_registered, blocking_pid, foreign_pid
      FROM (
          SELECT min(l.pid) AS pid,
                 min(((l.classid::bigint - 1884487680) << 32) | l.objid::bigint)
                     FILTER (WHERE l.locktype = 'advisory') AS registered,
                 bool_or(l.locktype = 'relation') AS writes
          FROM pg_locks AS l
          WHERE l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
            AND l.granted
            AND ((l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid >= 1884487680::oid)
                 OR (l.locktype = 'relation' AND l.relation = 'public.events'::regclass
                     AND l.mode = 'RowExclusiveLock'))
          GROUP BY l.virtualtransaction
      ) AS t
     WHERE t.registered IS NOT NULL;
    safe_id := least(last_drawn_id, coalesce(first_registered, last_drawn_id));
    IF foreign_pid IS NOT NULL THEN
        SELECT a.usename INTO foreign_role FROM pg_stat_activity AS a WHERE a.pid = foreign_pid;
    END IF;
    IF safe_id >= last_drawn_id THEN
        blocking_pid := NULL;
    END IF;
    notify_queue_usage := pg_notification_queue_usage();
END
$$;

-- As in 0005 (the reasoning about the rows and the plans is there), without blocking_since.
CREATE FUNCTION public.events_fetch(
    after_id bigint, wanted_topics text[], max_events integer, max_bytes bigint
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
    SELECT * INTO h FROM public.events_delivery_horizon();
    horizon_id := h.safe_id;
    IF cardinality(wanted_topics) = 1 THEN
        RETURN QUERY
        SELECT NULL::bigint, NULL::bigint, NULL::int, NULL::int, NULL::int, NULL::text,
               NULL::float8, NULL::bigint, x.beyond,
               x.id, x.topic, CASE WHEN x.beyond THEN NULL ELSE x.payload END, x.created_at, x.key
        FROM (SELECT b.*, b.n > max_events OR (b.n > 1 AND b.running > max_bytes) AS beyond FROM (
            SELECT c.*, sum(c.payload_size) OVER w AS running, row_number() OVER w AS n
            FROM (
                SELECT ev.id, ev.topic, ev.payload, ev.created_at, ev.key,
                       pg_column_size(ev.payload) AS payload_size
                FROM public.events AS ev
                WHERE (ev.topic, ev.id) > (wanted_topics[1], after_id)
                  AND (ev.topic, ev.id) <= (wanted_topics[1], horizon_id)
                ORDER BY ev.topic, ev.id
                LIMIT max_events + 1
            ) AS c
            WINDOW w AS (ORDER BY c.topic, c.id ROWS UNBOUNDED PRECEDING)
        ) AS b
        WHERE b.n <= 2 OR b.running - b.payload_size <= max_bytes) AS x;
    ELSE
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
                    ORDER BY ev.topic, ev.id
                    LIMIT max_events + 1
                ) AS e
                ORDER BY e.id
                LIMIT max_events + 1
            ) AS c
            WINDOW w AS (ORDER BY c.id ROWS UNBOUNDED PRECEDING)
        ) AS b
        WHERE b.n <= 2 OR b.running - b.payload_size <= max_bytes) AS x;
    END IF;
    RETURN QUERY
    SELECT h.safe_id, h.last_drawn_id, h.writers, h.blocking_pid, h.foreign_pid,
           h.foreign_role, h.notify_queue_usage,
           (SELECT coalesce(max(p.purged_up_to_id), 0)
            FROM public.events_purge_watermarks AS p
            WHERE p.topic = ANY(wanted_topics)),
           NULL::boolean, NULL::bigint, NULL::text, NULL::jsonb, NULL::timestamptz, NULL::text;
END
$$;

REVOKE ALL ON FUNCTION public.events_delivery_horizon() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.events_fetch(bigint, text[], integer, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.events_delivery_horizon() TO events_consumer, events_purger;
GRANT EXECUTE ON FUNCTION public.events_fetch(bigint, text[], integer, bigint) TO events_consumer, events_purger;
