"""Schema migrations for the events log: ``python -m db_migrations`` applies what is missing."""

from db_migrations.runner import MigrationError, applied_migrations, available_migrations, migrate

__all__ = ["MigrationError", "applied_migrations", "available_migrations", "migrate"]
