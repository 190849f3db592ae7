-- One look at the group from the lease session (also its heartbeat): live members (holders of the
-- shared membership lock), the partitions this session owns, and the partition counts of members
-- configured with another one (they must not run beside this member: their partitions overlap).
-- Keys are single bigint advisory locks (objsubid = 1): classid = the group's 31-bit hash, objid =
-- (partitions << 16) | slot, slot 0 = membership, slot p + 1 = partition p (pgsubscriber/_lease.py).
WITH group_locks AS (
    SELECT l.pid, l.objid::bigint AS objid, l.mode
    FROM pg_catalog.pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database AS d
                        WHERE d.datname = pg_catalog.current_database())
      AND l.classid = %(group_id)s::pg_catalog.oid
)
SELECT (SELECT pg_catalog.count(*) FROM group_locks AS g
        WHERE g.objid = %(member_objid)s AND g.mode = 'ShareLock')::integer AS members,
       (SELECT pg_catalog.array_agg((g.objid OPERATOR(pg_catalog.&) 65535) OPERATOR(pg_catalog.-) 1
                                    ORDER BY g.objid)
        FROM group_locks AS g
        WHERE g.pid = pg_catalog.pg_backend_pid() AND g.mode = 'ExclusiveLock'
          AND g.objid OPERATOR(pg_catalog.>>) 16 = %(partitions)s) AS owned,
       (SELECT pg_catalog.array_agg(DISTINCT g.objid OPERATOR(pg_catalog.>>) 16)
        FROM group_locks AS g
        WHERE g.objid OPERATOR(pg_catalog.>>) 16 <> %(partitions)s) AS other_partition_counts
