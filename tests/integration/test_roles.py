from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration

INSERT = "INSERT INTO events (topic, payload) VALUES ('courses', '{}')"
DELETE = "DELETE FROM events"
READ = "SELECT topic, payload FROM events"


def attempt(db, role: str, statement: str) -> bool:
    with psycopg.connect(db.role_dsn(role), autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return False
    return True


def test_consumer_reads_only(db):
    assert attempt(db, "events_consumer", READ)
    assert not attempt(db, "events_consumer", INSERT)
    assert not attempt(db, "events_consumer", DELETE)
    assert not attempt(db, "events_consumer", "UPDATE events SET topic = 'x'")


def test_producer_inserts_but_cannot_delete_update_or_read_payloads(db):
    assert attempt(db, "events_producer", INSERT)
    assert not attempt(db, "events_producer", DELETE)
    assert not attempt(db, "events_producer", "UPDATE events SET topic = 'x'")
    assert not attempt(db, "events_producer", READ)
    assert not attempt(db, "events_producer", "SELECT * FROM events_delivery_horizon()")


def test_purger_reads_and_deletes_but_cannot_insert(db):
    assert attempt(db, "events_purger", READ)
    assert attempt(db, "events_purger", DELETE)
    assert not attempt(db, "events_purger", INSERT)
    assert not attempt(db, "events_purger", "UPDATE events SET topic = 'x'")


def test_no_role_is_a_superuser_or_can_create_roles(db):
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname LIKE 'events\\_%'"
        ).fetchall()
    assert {r[0] for r in rows} == {"events_producer", "events_consumer", "events_purger"}
    assert not any(r[1] or r[2] or r[3] for r in rows)
