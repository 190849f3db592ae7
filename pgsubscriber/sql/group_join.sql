-- A member joins its group on a session of its own (the lease session). The server ends this
-- session when it stays idle longer than the group's lease timeout (the member runs group_state
-- every group_check_interval, far more often): a member that is frozen (SIGSTOP, a stalled event
-- loop) or cut off from the server loses its session, so its partition locks, without any clock
-- on the client side. Then the shared membership lock, held by every live member (pg_locks counts
-- them), and a bounded statement time for the session's own queries.
SELECT pg_catalog.set_config('idle_session_timeout', %(lease_timeout_ms)s, false),
       pg_catalog.set_config('idle_in_transaction_session_timeout', %(lease_timeout_ms)s, false),
       pg_catalog.set_config('statement_timeout', %(statement_timeout_ms)s, false),
       pg_catalog.set_config('lock_timeout', '0', false),
       pg_catalog.pg_advisory_lock_shared(%(member_key)s)
