-- Who holds the idle-listener lock exclusively (a session outside pgsubscriber, when it lasts).
SELECT l.pid, a.usename
FROM pg_catalog.pg_locks AS l
LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = 1884487679 AND l.objid = 1 AND l.objsubid = 2
  AND l.mode = 'ExclusiveLock' AND l.granted
LIMIT 1
