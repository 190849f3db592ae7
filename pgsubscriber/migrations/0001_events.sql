-- The global event log, its publish notification, and the three least-privilege roles.
--
-- Roles are cluster-wide, so they are created only when missing; the grants are per database.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'events_producer') THEN
        CREATE ROLE events_producer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'events_consumer') THEN
        CREATE ROLE events_consumer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'events_purger') THEN
        CREATE ROLE events_purger NOLOGIN;
    END IF;
END
$$;

CREATE TABLE public.events (
    -- The global position. GENERATED ALWAYS: no client can choose an id, so ids are drawn from the
    -- sequence only, which the gap-free delivery (migration 0002) relies on. CACHE 1 (the default)
    -- keeps the sequence's last_value equal to the newest id drawn by any session.
    id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
    -- Same rule as pgsubscriber.events.TOPIC_PATTERN.
    topic text NOT NULL
        CONSTRAINT events_topic_format CHECK (topic ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'),
    payload jsonb NOT NULL
        CONSTRAINT events_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    -- Optional idempotency key: publishing the same key twice stores one event.
    key text
        CONSTRAINT events_key_unique UNIQUE
        CONSTRAINT events_key_length CHECK (length(key) BETWEEN 1 AND 512),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Subscribers read one or a few topics in id order.
CREATE INDEX events_topic_id_idx ON public.events (topic, id);
-- The purger deletes by age.
CREATE INDEX events_created_at_idx ON public.events (created_at);

-- One notification per INSERT statement; NOTIFY folds identical notifications of one transaction,
-- so a transaction sends at most one. The payload is only a hint: subscribers always read the table.
CREATE FUNCTION public.events_notify() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON public.events
    FOR EACH STATEMENT EXECUTE FUNCTION public.events_notify();

REVOKE ALL ON public.events FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO events_producer, events_consumer, events_purger;
-- A producer inserts; reading back (id, key) is what RETURNING id and idempotent publishing need.
GRANT INSERT ON public.events TO events_producer;
GRANT SELECT (id, key) ON public.events TO events_producer;
GRANT SELECT ON public.events TO events_consumer;
GRANT SELECT, DELETE ON public.events TO events_purger;
