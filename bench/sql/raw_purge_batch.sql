-- Baseline of the purger: delete the oldest expired rows, one batch per transaction.
DELETE FROM public.raw_events
WHERE id IN (
    SELECT id FROM public.raw_events
    WHERE created_at < %(cutoff)s
    ORDER BY id
    LIMIT %(batch_size)s
)
