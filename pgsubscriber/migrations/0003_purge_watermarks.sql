-- How far the purger has deleted, per topic. Subscribers read it in the same statement (the same
-- snapshot) as their fetch, so an event deleted before they received it is always noticed.
CREATE TABLE public.events_purge_watermarks (
    topic text PRIMARY KEY,
    purged_up_to_id bigint NOT NULL,   -- the greatest id deleted on this topic
    purged_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON public.events_purge_watermarks FROM PUBLIC;
GRANT SELECT ON public.events_purge_watermarks TO events_consumer;
GRANT SELECT, INSERT, UPDATE ON public.events_purge_watermarks TO events_purger;
