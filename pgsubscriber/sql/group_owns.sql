-- The fence, right before each handler call: does this lease session still hold the partition?
-- An answer at all proves the session is alive (the server has not ended it), and the lock row
-- proves the member did not hand the partition back.
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_locks AS l
    WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'advisory' AND l.objsubid = 1
      AND l.granted AND l.mode = 'ExclusiveLock'
      AND l.classid = %(group_id)s::pg_catalog.oid AND l.objid = %(objid)s::pg_catalog.oid
)
