-- Was this database ever migrated? (The migrations' own bookkeeping table exists.)
SELECT pg_catalog.to_regclass('public.schema_migrations') IS NOT NULL
