-- Entering polling mode: this subscriber fetches again soon, so writers may skip NOTIFY.
SELECT pg_advisory_unlock_shared(1884487679, 1)
