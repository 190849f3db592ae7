-- "This subscriber re-polls for writers in flight": writers may skip their NOTIFY meanwhile.
SELECT pg_advisory_lock_shared(1884487679, 2)
