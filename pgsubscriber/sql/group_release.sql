-- Hand a partition back (its subscriber has stopped: no handler call is in progress).
SELECT pg_catalog.pg_advisory_unlock(%(partition_key)s)
