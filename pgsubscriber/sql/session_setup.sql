-- Output formats the loaders rely on, whatever the role or the database sets.
SET client_encoding = 'UTF8';
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'UTC'
