from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgsubscriber import SchemaMissingError, Subscriber, SubscriberSettings
from pgsubscriber.events import channel_for
from pgsubscriber.migrate import applied_migrations, available_migrations, migrate
from pgsubscriber.schema import SCHEMA_VERSION
from tests.support.handlers import RecordingHandler

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_db(pg_server):
    name = f"empty_{os.getpid()}"
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_server.dsn_for(name)
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_applies_every_migration_once_and_a_second_run_is_a_no_op(empty_db):
    names = migrate(empty_db)
    assert names == [m.name for m in available_migrations()]
    assert migrate(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        assert applied_migrations(conn) == [m.version for m in available_migrations()]


def test_two_processes_at_once_apply_each_migration_once(empty_db):
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(empty_db))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(len(r) for r in results) == [0, len(available_migrations())]


def console_script() -> str:
    """The ``pgsubscriber`` console script installed beside this interpreter."""
    return str(Path(sys.executable).with_name("pgsubscriber"))


@pytest.mark.parametrize("command", ["console script", "python -m"])
def test_pgsubscriber_migrate_works_from_any_directory(empty_db, tmp_path, command):
    argv = [console_script()] if command == "console script" else [sys.executable, "-m", "pgsubscriber"]
    env = {**os.environ, "DATABASE_URL": empty_db}
    done = subprocess.run(
        [*argv, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert available_migrations()[-1].name in done.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('public.events') IS NOT NULL").fetchone() == (True,)


def test_the_compose_service_runs_the_same_migrations(empty_db):
    env = {**os.environ, "DATABASE_URL": empty_db}
    done = subprocess.run(
        [sys.executable, "-m", "db_migrations"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_db) as conn:
        assert applied_migrations(conn) == [m.version for m in available_migrations()]


def test_migrate_without_a_database_says_what_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [console_script(), "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr and "Traceback" not in done.stderr


def test_migrate_against_an_unreachable_server_is_one_line_not_a_traceback(tmp_path):
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"}
    done = subprocess.run(
        [console_script(), "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Connection refused" in done.stderr and "Traceback" not in done.stderr


def test_the_library_needs_exactly_the_newest_migration():
    assert available_migrations()[-1].version == SCHEMA_VERSION


def test_a_database_behind_the_library_is_refused_naming_the_missing_migration(empty_db):
    migrate(empty_db, up_to=SCHEMA_VERSION - 1)
    settings = SubscriberSettings(dsn=empty_db, topics=["courses"])
    with pytest.raises(SchemaMissingError, match=f"needs {SCHEMA_VERSION:04d}.*apply {SCHEMA_VERSION:04d}"):
        asyncio.run(asyncio.wait_for(Subscriber(RecordingHandler(), settings).run(), 30))


def test_a_database_never_migrated_is_refused_with_what_to_run(empty_db):
    settings = SubscriberSettings(dsn=empty_db, topics=["courses"])
    with pytest.raises(SchemaMissingError, match="pgsubscriber migrate"):
        asyncio.run(asyncio.wait_for(Subscriber(RecordingHandler(), settings).run(), 30))


def test_all_migrations_give_the_schema_the_code_expects(empty_db):
    migrate(empty_db)
    with psycopg.connect(empty_db) as conn:

        def rows(query: str) -> list[tuple[object, ...]]:
            return conn.execute(query).fetchall()

        # The SECURITY DEFINER functions are on the read path, read the catalog only, with a
        # pinned search_path.
        definers = rows(
            "SELECT proname, proconfig FROM pg_proc WHERE prosecdef "
            "AND pronamespace = 'public'::regnamespace ORDER BY 1"
        )
        pinned = ["search_path=pg_catalog, pg_temp"]
        assert definers == [("events_writer_since", pinned), ("events_writers", pinned)]
        # The registry: row level security, so a role writes its own rows only.
        assert rows(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.events_subscribers'::regclass"
        ) == [(True,)]
        registry_columns = {
            r[0]
            for r in rows(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'events_subscribers'"
            )
        }
        assert {"name", "host", "pid", "topics", "mode", "position", "db_role", "group_name", "role"} <= (
            registry_columns
        )
        # Registration fires whatever session_replication_role says; NOTIFY as usual.
        triggers = rows(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'public.events'::regclass "
            "AND NOT tgisinternal ORDER BY 1"
        )
        assert triggers == [("events_register_writer", "A"), ("events_wake_listeners", "O")]
        # Producers insert these columns only; ids and created_at are the database's.
        insertable = rows(
            "SELECT column_name FROM information_schema.column_privileges WHERE table_name = 'events' "
            "AND grantee = 'events_producer' AND privilege_type = 'INSERT' ORDER BY 1"
        )
        assert [r[0] for r in insertable] == ["key", "partition_key", "payload", "topic"]
        # The library's queries name these functions with these arguments.
        for signature in [
            "public.events_fetch(bigint, text[], integer, bigint)",
            "public.events_delivery_horizon()",
            "public.events_channel(text)",
            "public.events_partition(text, bigint, integer)",
            "public.events_fetch_partition(bigint, text[], integer, bigint, integer, integer)",
        ]:
            assert rows(f"SELECT to_regprocedure('{signature}') IS NOT NULL") == [(True,)], signature
        assert rows("SELECT events_channel('courses')") == [(channel_for("courses"),)]
        long_topic = "t" * 100
        assert rows(f"SELECT events_channel('{long_topic}')") == [(channel_for(long_topic),)]
        # The horizon exists once: events_fetch calls it and reads no lock itself.
        fetch_body = rows("SELECT prosrc FROM pg_proc WHERE proname = 'events_fetch'")[0][0]
        assert "events_delivery_horizon()" in str(fetch_body) and "pg_locks" not in str(fetch_body)
        # A partition's fetch reads the same horizon (consumer groups).
        partition_body = rows("SELECT prosrc FROM pg_proc WHERE proname = 'events_fetch_partition'")[0][0]
        assert "events_delivery_horizon()" in str(partition_body)
        # Events without a partition key are spread by id; with one, by its hash (partition_of).
        assert rows("SELECT events_partition(NULL, 7, 3), events_partition('a', 7, 1)") == [(1, 0)]
