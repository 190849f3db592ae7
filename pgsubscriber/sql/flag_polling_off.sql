-- Leaving polling mode. The subscriber fetches once more after this, so a writer that registered
-- (and skipped its NOTIFY) just before the release is still seen.
SELECT pg_advisory_unlock_shared(1884487679, 2)
