-- Events spread round-robin over %(topics)s topics named <prefix>-<n mod topics>, in one statement
-- (one writer registration). The payload has the shape the benchmark's producers publish.
INSERT INTO public.events (topic, payload)
SELECT
    %(prefix)s || '-' || mod(n, %(topics)s::bigint),
    jsonb_build_object(
        'type', 'course.created',
        'course_id', 'bench-' || n,
        'title', 'Databases 101',
        'seats', 30,
        'seq', n
    )
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
