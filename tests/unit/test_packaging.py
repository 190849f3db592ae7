"""What an app team installs: one import name, pgsubscriber, with its schema and its command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from pgsubscriber.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_one_top_level_package_with_its_sql_and_command(tmp_path):
    # Built from a copy of what git tracks, so the build leaves nothing in the checkout.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("pgsubscriber-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"pgsubscriber"}
    migrations = sorted(n for n in names if n.startswith("pgsubscriber/migrations/") and n.endswith(".sql"))
    assert migrations and migrations[-1].startswith(f"pgsubscriber/migrations/{SCHEMA_VERSION:04d}_")
    assert "pgsubscriber/sql/fetch.sql" in names and "pgsubscriber/py.typed" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "pgsubscriber = pgsubscriber.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
