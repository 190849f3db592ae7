-- `pgsubscriber tail` without a start: the oldest of the n newest events of these topics.
SELECT min(t.id)
FROM (
    SELECT e.id FROM public.events AS e
    WHERE e.topic = ANY (%(topics)s::text[])
    ORDER BY e.id DESC
    LIMIT %(n)s
) AS t
