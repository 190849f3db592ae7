-- A backlog of events in one statement (one writer registration). The payload has the shape the
-- benchmark's producers publish.
INSERT INTO public.{table} (topic, payload, created_at)
SELECT
    %(topic)s,
    jsonb_build_object(
        'type', 'course.created',
        'course_id', 'bench-' || n,
        'title', 'Databases 101',
        'seats', 30,
        'seq', n
    ),
    %(created_at)s
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
