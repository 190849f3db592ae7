-- Take a partition if no live member owns it (never waits).
SELECT pg_catalog.pg_try_advisory_lock(%(partition_key)s)
