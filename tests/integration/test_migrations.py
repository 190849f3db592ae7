from __future__ import annotations

import os
import subprocess
import sys
import threading

import psycopg
import pytest
from psycopg import sql

from db_migrations import applied_migrations, available_migrations, migrate

pytestmark = pytest.mark.integration


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


def test_command_line_works_from_any_directory(empty_db, tmp_path):
    env = {**os.environ, "DATABASE_URL": empty_db}
    done = subprocess.run(
        [sys.executable, "-m", "db_migrations"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('public.events') IS NOT NULL").fetchone() == (True,)


def test_command_line_without_database_url_says_what_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "db_migrations"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr
