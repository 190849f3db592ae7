-- The newest migration applied to this database (schema_present.sql says whether there is any).
SELECT max(version) FROM public.schema_migrations
