-- Gap-free delivery under concurrent producers, without serializing them.
--
-- The hole: ids are drawn when a row is inserted, but transactions commit in another order, so a
-- reader that sees id 11 may later see id 10 appear. Time-based gap skipping loses the events of any
-- transaction slower than its threshold; a writers' lock held until commit serializes producers; a
-- plain xmin horizon also waits for unrelated transactions. Instead, every transaction that writes
-- to events makes itself visible to readers before it draws an id:
--
--   writer (BEFORE INSERT, once per transaction): read v = the sequence's last value, then take a
--   SHARED transaction advisory lock whose key encodes v. Every id it draws afterwards is > v, and
--   the lock is held until it commits or rolls back. Shared locks do not conflict: writers never
--   wait for each other.
--
--   reader (events_delivery_horizon): read S = the sequence's last value, THEN read the writers'
--   locks from pg_locks; safe = least(S, min v). Every id <= safe was drawn by a transaction that had
--   ended before the locks were read, so a snapshot taken afterwards (the next statement) sees it
--   committed or never sees it (rolled back). A writer that registers after the locks were read
--   draws ids > S.
--
-- A long transaction that never writes to events takes no lock and delays nothing; a long producer
-- transaction delays only the ids after its own v.
--
-- Lock key: two int4 (objsubid = 2 in pg_locks, a form apart from single-bigint advisory keys):
--   key1 = 1884487680 + (v >> 32), key2 = low 32 bits of v. Good for v < 2^48.
--
-- NOTIFY costs a cluster-wide lock held until the commit is flushed, which serializes committing
-- transactions. So a writer notifies only when some subscriber needs the wake-up. Every listening
-- subscriber that is idle (waiting for NOTIFY) holds a SHARED session advisory lock (1884487679, 1).
-- While it re-polls because it saw writers in flight, it releases that lock; it takes it again
-- only after a fetch that saw no writer, and then fetches once more.
-- A writer registers first, then tries to take that lock EXCLUSIVELY (and releases it at once):
-- failure means an idle subscriber exists, so it notifies; success means every listener is
-- polling and will fetch again after this writer registered, see its lock, and keep polling until
-- it is gone. No scan of pg_locks on the write path: two lock calls.
-- (Skipping because "another writer is in flight and will notify" is not enough: that writer may
-- roll back, and nothing would wake the subscriber.)

DROP TRIGGER events_notify ON public.events;
DROP FUNCTION public.events_notify();

-- SECURITY DEFINER (the sequence is not readable by producers) without a SET search_path clause:
-- that clause costs a GUC save and restore on every call, a third of this function's cost. Every
-- name is schema-qualified instead, and the function references no relation but the sequence.
CREATE FUNCTION public.events_register_writer() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
AS
$$
DECLARE
    last_drawn bigint;
    low bigint;
BEGIN
    -- Once per transaction: the setting is transaction-local and rolls back with a savepoint,
    -- exactly like the lock taken under it.
    IF pg_catalog.current_setting('pgsubscriber.writer_registered', true) = 'on' THEN
        RETURN NULL;
    END IF;
    last_drawn := coalesce(pg_catalog.pg_sequence_last_value('public.events_id_seq'::pg_catalog.regclass), 0);
    low := last_drawn & 4294967295;
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(
        (1884487680 + (last_drawn >> 32))::int,
        (CASE WHEN low >= 2147483648 THEN low - 4294967296 ELSE low END)::int
    );
    PERFORM pg_catalog.set_config('pgsubscriber.writer_registered', 'on', true);
    IF pg_catalog.pg_try_advisory_lock(1884487679, 1) THEN
        PERFORM pg_catalog.pg_advisory_unlock(1884487679, 1);  -- no idle subscriber: nobody to wake
    ELSE
        PERFORM pg_catalog.pg_notify('events', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_register_writer
    BEFORE INSERT ON public.events
    FOR EACH STATEMENT EXECUTE FUNCTION public.events_register_writer();

-- What a subscriber may deliver now. Called as its own statement, before the fetch statement.
CREATE FUNCTION public.events_delivery_horizon(
    OUT safe_id bigint,          -- every committed event with id <= safe_id is visible from now on
    OUT last_drawn_id bigint,    -- newest id drawn by anyone (committed or not)
    OUT writers integer,         -- transactions currently writing to events
    OUT blocking_pid integer,    -- the writer holding safe_id back, if any
    OUT blocking_since timestamptz  -- when that writer's transaction started
)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS
$$
DECLARE
    min_registered bigint;
BEGIN
    -- Order matters: the sequence first, the locks second (see the comment at the top).
    last_drawn_id := coalesce(pg_sequence_last_value('public.events_id_seq'::regclass), 0);
    SELECT count(*)::int, min(w.registered_at)
      INTO writers, min_registered
      FROM (
          SELECT ((classid::bigint - 1884487680) << 32) | objid::bigint AS registered_at
          FROM pg_locks
          WHERE locktype = 'advisory' AND objsubid = 2
            AND classid >= 1884487680::oid
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      ) AS w;
    safe_id := least(last_drawn_id, coalesce(min_registered, last_drawn_id));
    IF safe_id < last_drawn_id THEN
        SELECT l.pid, a.xact_start INTO blocking_pid, blocking_since
          FROM pg_locks AS l
          LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.objsubid = 2
           AND l.classid = (1884487680 + (min_registered >> 32))::oid
           AND l.objid = (min_registered & 4294967295)::oid
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY a.xact_start NULLS LAST
         LIMIT 1;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION public.events_register_writer() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.events_delivery_horizon() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.events_delivery_horizon() TO events_consumer, events_purger;
