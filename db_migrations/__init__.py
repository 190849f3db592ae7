"""The migration service of the compose file: ``python -m db_migrations`` runs ``pgsubscriber migrate``."""
