-- When the transaction of a writer that holds delivery back started (asked once per such writer,
-- when it has held delivery back long enough to be logged: reading it costs more than a fetch).
SELECT public.events_writer_since(%(pid)s)
