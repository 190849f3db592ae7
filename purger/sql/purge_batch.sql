-- Delete one batch of expired events and record, in the same statement (so the same transaction),
-- the greatest id deleted per topic. A subscriber reads that watermark in the same snapshot as its
-- fetch, so an event deleted before it was received is always noticed, never silently skipped.
--
-- Shape, and why:
--   * One statement in autocommit: one short transaction per batch. Row locks are held only for the
--     time of this statement, and at most %(batch_size)s of them.
--   * `doomed` walks events_created_at_idx from %(resume_from)s (the newest created_at deleted by the
--     previous batch of this pass) and stops after %(batch_size)s rows. Without that lower bound each
--     batch would scan again, from the start of the index, the entries of the rows the previous
--     batches deleted (dead until vacuumed) and the rows of topics kept longer: a pass would cost
--     O(rows^2 / batch_size) instead of O(rows).
--   * The topic filter selects one group of the policy: %(only_topics)s NULL with
--     %(excluded_topics)s = the topics that have their own retention (the default group), or
--     %(only_topics)s = {topic} with nothing excluded (an override). Each group has one cutoff.
--   * DELETE by `id = ANY(ARRAY(...))`: a primary-key lookup per row whatever the planner thinks
--     of the table's size (a join could turn into a sequential scan of events).
--   * No FOR UPDATE / SKIP LOCKED: producers only insert new rows and subscribers only read, so
--     nothing else locks these rows; two purgers are kept apart by an advisory lock per pass.
--   * The watermark upsert keeps greatest(existing, new): ids and created_at are not in the same
--     order, so a later batch may delete smaller ids than an earlier one. Rows are upserted in topic
--     order so that two writers of this table always lock its rows in the same order.
WITH doomed AS (
    SELECT id
    FROM public.events
    WHERE created_at < %(cutoff)s
      AND (%(resume_from)s::timestamptz IS NULL OR created_at >= %(resume_from)s)
      AND (%(only_topics)s::text[] IS NULL OR topic = ANY(%(only_topics)s::text[]))
      AND topic <> ALL(%(excluded_topics)s::text[])
    ORDER BY created_at
    LIMIT %(batch_size)s
),
deleted AS (
    DELETE FROM public.events
    WHERE id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING id, topic, created_at
),
watermarks AS (
    INSERT INTO public.events_purge_watermarks AS w (topic, purged_up_to_id, purged_at)
    SELECT topic, max(id), now()
    FROM deleted
    GROUP BY topic
    ORDER BY topic
    ON CONFLICT (topic) DO UPDATE
        SET purged_up_to_id = greatest(w.purged_up_to_id, excluded.purged_up_to_id),
            purged_at = excluded.purged_at
)
SELECT topic, count(*) AS deleted, max(created_at) AS newest_deleted
FROM deleted
GROUP BY topic
ORDER BY topic
