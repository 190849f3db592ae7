-- "A subscriber listens on this session": writers notify while some listener is not polling.
-- Shared session advisory lock, released when the connection ends (see migration 0002).
SELECT pg_advisory_lock_shared(1884487679, 1)
