-- "An idle subscriber listens on this session": writers NOTIFY while any session holds this
-- shared session lock; it also ends with the connection (see migration 0002). Never waits: only a
-- writer's instant check or a foreign session holds it exclusively.
SELECT pg_try_advisory_lock_shared(1884487679, 1)
