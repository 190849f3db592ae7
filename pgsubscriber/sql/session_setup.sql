-- Output formats the loaders rely on, and what fetch_in_session.sql relies on, whatever the role
-- or the database sets (a pooler such as PgBouncer keeps DateStyle and TimeZone per client; the
-- rest it may not keep, which the fetch detects).
SET client_encoding = 'UTF8';
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'UTC';
SET default_transaction_isolation = 'read committed';
SET lock_timeout = 0;
SET statement_timeout = %(statement_timeout_ms)s
