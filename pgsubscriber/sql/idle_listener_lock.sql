-- "An idle subscriber listens on this session": writers NOTIFY while any session holds this.
-- Shared session advisory lock; it also ends with the connection (see migration 0002).
SELECT pg_advisory_lock_shared(1884487679, 1)
