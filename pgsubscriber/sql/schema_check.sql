-- Is the events schema (all migrations the subscriber relies on) in this database?
SELECT to_regclass('public.events') IS NOT NULL
   AND to_regclass('public.events_purge_watermarks') IS NOT NULL
   AND to_regprocedure('public.events_fetch(bigint, text[], integer)') IS NOT NULL
