-- Delivery that no session setting, role or plain-SQL writer can break.
--
-- Migrations 0002 and 0004 made delivery gap-free for well-behaved clients. This one makes it hold
-- whatever the clients do:
--
--   * Ids and created_at are the database's: a producer may insert topic, payload and key only
--     (column privileges). (A time the owner writes beyond what clients represent, such as
--     'infinity', is clamped by the library's loaders; a CHECK would cost every insert.)
--   * No SECURITY DEFINER on the write path: producers read the sequence with their own SELECT
--     privilege. Trigger functions qualify every operator, function and type, so a caller's
--     search_path cannot change what they compute. The one SECURITY DEFINER function left
--     (events_writer_since, read path) pins its search_path and touches only the catalog.
--   * The once-per-transaction marker is only a hint: a session that forges it (SET
--     pgsubscriber.writer_key = ...) still holds a registration no later than its first id.
--   * A lock in the writers' key range counts only when its holder also writes to events
--     (RowExclusiveLock on the table, which every INSERT takes before its BEFORE trigger fires). A
--     role that can merely connect cannot hold delivery back; such a holder is reported.
--   * events_fetch refuses to run outside READ COMMITTED (it needs a new snapshot per statement),
--     and the library runs it in an explicit READ COMMITTED transaction whatever the defaults.
--   * One notification channel per topic, derived by events_channel(topic): a subscriber is woken
--     only by its own topics. A writer notifies only while an idle listener waits AND the
--     server's notification queue is below 10% full, so a listener that stops draining (frozen,
--     or its connection wedged) cannot fill the queue and make commits fail; listeners then see
--     the usage in every fetch and poll instead. No AFTER trigger on the write path.
--   * Batches are bounded by bytes as well as count, by payloads' stored sizes (stored
--     uncompressed from now on, so those are their real sizes).
--   * The delivery horizon exists once (events_delivery_horizon); events_fetch calls it.

-- Ids and created_at ---------------------------------------------------------------------------

REVOKE INSERT ON public.events FROM events_producer;
GRANT INSERT (topic, payload, key) ON public.events TO events_producer;

-- The writer lock key holds (id >> 32) in its first int4 above 1884487680: ids end at 2^32 *
-- (2147483647 - 1884487680 + 1) - 1. The trigger refuses to register a billion ids before that,
-- with a message saying why; the sequence's MAXVALUE is the backstop.
ALTER TABLE public.events ALTER COLUMN id SET MAXVALUE 1129559081539862527;

-- Batches are bounded by bytes with pg_column_size(payload), which reads a value's stored size
-- without fetching it. Stored uncompressed (EXTERNAL: out of line when large, never compressed),
-- that is its real size, so a batch of highly compressible payloads cannot be far larger than the
-- bound. Payloads stored before this migration keep their compression.
ALTER TABLE public.events ALTER COLUMN payload SET STORAGE EXTERNAL;

GRANT SELECT ON SEQUENCE public.events_id_seq TO events_producer, events_consumer, events_purger;
GRANT SELECT ON public.schema_migrations TO events_producer, events_consumer, events_purger;

-- Channels ---------------------------------------------------------------------------------------

-- The NOTIFY channel of a topic: 'events:' || topic, or 'events:' || md5(topic) when that would
-- exceed PostgreSQL's 63-byte identifiers (topics are ASCII, see events_topic_format).
-- pgsubscriber.channel_for(topic) computes the same in Python.
CREATE FUNCTION public.events_channel(topic text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE
    WHEN pg_catalog.octet_length(topic) OPERATOR(pg_catalog.<=) 56
        THEN 'events:' OPERATOR(pg_catalog.||) topic
    ELSE 'events:' OPERATOR(pg_catalog.||) pg_catalog.md5(topic)
END;

GRANT EXECUTE ON FUNCTION public.events_channel(text) TO PUBLIC;

-- Writers ----------------------------------------------------------------------------------------

DROP TRIGGER events_register_writer ON public.events;
DROP FUNCTION public.events_register_writer();

-- BEFORE INSERT, once per statement: register this transaction before it draws any id.
CREATE FUNCTION public.events_register_writer() RETURNS trigger
    LANGUAGE plpgsql
AS
$$
DECLARE
    last_drawn bigint;
    hint pg_catalog.text;
    registered bigint;
    low bigint;
BEGIN
    last_drawn := coalesce(pg_catalog.pg_sequence_last_value('public.events_id_seq'::pg_catalog.regclass), 0);
    IF last_drawn OPERATOR(pg_catalog.>=) 1129559080000000000 THEN
        RAISE EXCEPTION 'events: ids are exhausted (the sequence is at %)', last_drawn
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'Gap-free delivery encodes an id in a 48-bit advisory lock key, so ids end at 1129559080000000000.',
                  HINT = 'Archive the events table and start a new one.';
    END IF;
    -- The key this transaction registered with, if an earlier statement did. Only a hint: it is
    -- taken again below (a cheap re-grant when this transaction really holds it), and any value
    -- no greater than last_drawn is a valid registration, since every id this statement draws is
    -- greater than last_drawn. A forged or stale value is replaced.
    hint := pg_catalog.current_setting('pgsubscriber.writer_key', true);
    registered := CASE WHEN hint OPERATOR(pg_catalog.~) '^[0-9]{1,19}$' THEN hint::bigint END;
    IF registered IS NULL OR registered OPERATOR(pg_catalog.>) last_drawn THEN
        registered := last_drawn;
        PERFORM pg_catalog.set_config('pgsubscriber.writer_key', registered::pg_catalog.text, true);
    END IF;
    low := registered OPERATOR(pg_catalog.&) 4294967295;
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(
        (1884487680 OPERATOR(pg_catalog.+) (registered OPERATOR(pg_catalog.>>) 32))::int,
        (CASE WHEN low OPERATOR(pg_catalog.>=) 2147483648
              THEN low OPERATOR(pg_catalog.-) 4294967296 ELSE low END)::int
    );
    -- Wake listeners? Registration came first, so "no idle listener" (the try-lock succeeds)
    -- means every listener is polling and will fetch again after seeing this writer's lock (see
    -- 0002). Above 10% of the server's notification queue, never: listeners poll then (they read
    -- the usage in every fetch), so a listener that stops draining cannot fill the queue and make
    -- commits fail. '*' = notify each topic written (events_wake_listeners); unset (or empty) = do
    -- not. It is transaction-local: a later statement of the same transaction may notify again,
    -- which costs a NOTIFY that PostgreSQL folds, never a missed one.
    IF pg_catalog.pg_try_advisory_lock(1884487679, 1) THEN
        PERFORM pg_catalog.pg_advisory_unlock(1884487679, 1);
    ELSIF pg_catalog.pg_notification_queue_usage() OPERATOR(pg_catalog.<) 0.1 THEN
        PERFORM pg_catalog.set_config('pgsubscriber.wake', '*', true);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_register_writer
    BEFORE INSERT ON public.events
    FOR EACH STATEMENT EXECUTE FUNCTION public.events_register_writer();
-- Registration fires whatever session_replication_role says.
ALTER TABLE public.events ENABLE ALWAYS TRIGGER events_register_writer;

-- BEFORE INSERT, per row, but only when the statement decided to wake listeners and the row's topic
-- differs from the last one notified in this transaction (the WHEN clause costs no function call):
-- one NOTIFY per topic written, on the topic's own channel, so a subscriber is woken only by its
-- own topics. No AFTER trigger: no transition table to build on the write path.
CREATE FUNCTION public.events_wake_listeners() RETURNS trigger
    LANGUAGE plpgsql
AS
$$
BEGIN
    PERFORM pg_catalog.pg_notify(public.events_channel(NEW.topic), '');
    PERFORM pg_catalog.set_config('pgsubscriber.wake', NEW.topic, true);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_wake_listeners
    BEFORE INSERT ON public.events
    FOR EACH ROW
    WHEN (coalesce(pg_catalog.current_setting('pgsubscriber.wake', true), '') NOT IN ('', NEW.topic))
    EXECUTE FUNCTION public.events_wake_listeners();

-- Readers ----------------------------------------------------------------------------------------

DROP FUNCTION public.events_fetch(bigint, text[], integer);
DROP FUNCTION public.events_delivery_horizon();

-- When the writer that holds delivery back started its transaction. pg_stat_activity hides that
-- from other roles, so this reads it as the owner, for a backend that holds a writer key only.
CREATE FUNCTION public.events_writer_since(writer_pid integer) RETURNS timestamptz
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS
$$
    SELECT a.xact_start
    FROM pg_stat_activity AS a
    WHERE a.pid = writer_pid
      AND EXISTS (
          SELECT FROM pg_locks AS l
          WHERE l.pid = writer_pid AND l.locktype = 'advisory' AND l.objsubid = 2
            AND l.classid >= 1884487680::oid
      )
$$;

-- What a subscriber may deliver now: every committed event with id <= safe_id is visible to any
-- snapshot taken after this call. Order matters: the sequence first, the locks second (0002).
CREATE FUNCTION public.events_delivery_horizon(
    OUT safe_id bigint,            -- deliver up to here
    OUT last_drawn_id bigint,      -- newest id drawn by anyone (committed or not)
    OUT writers integer,           -- transactions writing to events now
    OUT blocking_pid integer,      -- the writer holding safe_id back, if any
    OUT blocking_since timestamptz,  -- when its transaction started
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
    -- Per transaction: its lowest writer key, and whether it holds the table for writing. A writer
    -- takes RowExclusiveLock on events before its key, and holds both to its end, so a writer
    -- that registered before last_drawn_id was read shows both here. One that registers while
    -- pg_locks is being read may show its key alone (fast-path locks are read first), but its key
    -- is then >= last_drawn_id: ignoring it changes nothing, and it is not reported as foreign.
    -- A writer that is ending releases its table lock before its key, but only once its commit
    -- (or rollback) is visible to every new snapshot: ignoring it then changes nothing either.
    -- (The subscriber reports a holder as foreign only when it stays.)
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
    IF safe_id < last_drawn_id THEN
        blocking_since := public.events_writer_since(blocking_pid);
    ELSE
        blocking_pid := NULL;
    END IF;
    notify_queue_usage := pg_notification_queue_usage();
END
$$;

-- One round trip per batch: the horizon, then (a new statement, so a new snapshot, taken after the
-- writers were read) the events after after_id up to it, at most max_events of them and no more
-- than max_bytes of payload (at least one event, whatever its size), then the purge watermark.
--
-- Rows: first the events, in id order, with NULL horizon columns; when the batch was cut short (by
-- count or by bytes) one more row with `beyond` true and only its id (the client drops it: it says
-- "fetch again at once"); last, one row with the horizon and purged_up_to_id and NULL event columns.
-- The watermark is read after the batch (a later snapshot): an event purged before the batch was
-- read is covered by it, and one purged after it is in the batch or beyond it, so both count.
--
-- One topic reads events_topic_id_idx from (topic, after_id) to (topic, safe_id) and stops after
-- the batch, whatever other topics hold. The bounds are row comparisons on (topic, id) (together
-- they mean topic = t AND after_id < id <= safe_id): the index starts its scan at the first one,
-- and the primary key can neither use them nor give (topic, id) order, so the planner cannot pick
-- it and filter other topics' rows, also on a table not analyzed since a large backlog arrived
-- (measured: 120-200 ms per fetch behind 1,000,000 rows; a plain topic = t beside them makes the
-- scan start at the topic's first entry, slower the further a subscriber is into its topic). Several topics read each topic's index range (at most
-- max_events + 1 each) and merge them. Plans are generic (plan_cache_mode): planned once per
-- session, not on every call. jit = off: the sort penalty would push estimates past the JIT
-- threshold.
CREATE FUNCTION public.events_fetch(
    after_id bigint, wanted_topics text[], max_events integer, max_bytes bigint
)
    RETURNS TABLE (
        safe_id bigint, last_drawn_id bigint, writers integer, blocking_pid integer,
        blocking_since timestamptz, foreign_pid integer, foreign_role text,
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
        SELECT NULL::bigint, NULL::bigint, NULL::int, NULL::int, NULL::timestamptz, NULL::int, NULL::text,
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
        -- Every event that fits, and the first one that does not (the first event always fits).
        WHERE b.n <= 2 OR b.running - b.payload_size <= max_bytes) AS x;
    ELSE
        RETURN QUERY
        SELECT NULL::bigint, NULL::bigint, NULL::int, NULL::int, NULL::timestamptz, NULL::int, NULL::text,
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
    SELECT h.safe_id, h.last_drawn_id, h.writers, h.blocking_pid, h.blocking_since, h.foreign_pid,
           h.foreign_role, h.notify_queue_usage,
           (SELECT coalesce(max(p.purged_up_to_id), 0)
            FROM public.events_purge_watermarks AS p
            WHERE p.topic = ANY(wanted_topics)),
           NULL::boolean, NULL::bigint, NULL::text, NULL::jsonb, NULL::timestamptz, NULL::text;
END
$$;

REVOKE ALL ON FUNCTION public.events_register_writer() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.events_wake_listeners() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.events_writer_since(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.events_delivery_horizon() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.events_fetch(bigint, text[], integer, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.events_writer_since(integer) TO events_consumer, events_purger;
GRANT EXECUTE ON FUNCTION public.events_delivery_horizon() TO events_consumer, events_purger;
GRANT EXECUTE ON FUNCTION public.events_fetch(bigint, text[], integer, bigint) TO events_consumer, events_purger;
