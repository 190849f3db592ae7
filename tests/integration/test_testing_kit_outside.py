"""An app team's tests with the kit, run by pytest from a directory outside this repository.

The package is installed (here in the suite's environment), so its pytest plugin is active in any
directory: the README's example runs as written, and a project that uses no fixture starts nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()

BROKEN = """
from pgsubscriber.testing import check_handler

class PositionFirst:
    def __init__(self, db, run):
        self.db, self.run = db, run
    def on_notification(self, events):
        self.db["position"] = events[-1].id
        self.run.crash_point("after position")
        titles = self.db.setdefault("titles", {})
        for event in events:
            titles[event.payload["course"]] = event.payload["title"]
    def get_latest_received_id(self):
        return self.db.get("position", 0)

def test_position_first(pgsubscriber_db):
    stores = {}
    check_handler(lambda run: PositionFirst(stores.setdefault(run.store, {}), run),
                  [("courses", {"course": f"c{n % 3}", "title": f"T{n}"}) for n in range(9)],
                  observe=lambda handler: dict(handler.db.get("titles", {})),
                  database=pgsubscriber_db)
"""

UNUSED = """
import pgsubscriber.testing.database as database

started = []
original = database.start_server
database.start_server = lambda: started.append(1) or original()

def pytest_sessionfinish(session):
    plugin = session.config.pluginmanager.has_plugin("pgsubscriber")
    print(f"\\nplugin loaded: {plugin}, servers started: {len(started)}")
"""


def readme_example() -> str:
    section = README.split("### Testing your handler", 1)[1].split("\n### ", 1)[0]
    (code,) = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    return code


def run_pytest(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def outside_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGSUBSCRIBER_TEST_DSN", "PYTHONPATH")}
    env.update(extra)
    return env


@pytest.mark.parametrize("server", ["own cluster", "PGSUBSCRIBER_TEST_DSN"])
def test_the_readme_example_passes_and_a_broken_handler_fails_outside_the_repository(
    tmp_path, pg_server, server
):
    if server == "own cluster" and os.environ.get("PGSUBSCRIBER_TEST_DSN"):
        pytest.skip("the suite runs against an external server: the machine may have no server binaries")
    (tmp_path / "test_handler.py").write_text(readme_example())
    (tmp_path / "test_broken_handler.py").write_text(BROKEN)
    env = outside_env() if server == "own cluster" else outside_env(PGSUBSCRIBER_TEST_DSN=pg_server.admin_dsn)
    done = run_pytest(tmp_path, env)
    output = done.stdout + done.stderr
    assert "1 failed, 1 passed" in output, output
    assert (
        "crash safety: after a crash at 'after position' (crash point 1 while handling events 4..6), "
        "get_latest_received_id() is 6, ahead of the stored effects: events 4..6 would never be applied"
    ) in output


def test_a_project_that_uses_no_fixture_of_the_kit_starts_no_server(tmp_path):
    (tmp_path / "conftest.py").write_text(UNUSED)
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    done = run_pytest(tmp_path, outside_env())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "plugin loaded: True, servers started: 0" in output
