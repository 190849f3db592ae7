"""The README stays true: its configuration table lists every setting with its default, and its
examples read the variables that the demo prints."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from pgsubscriber import SubscriberSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table_with_its_default():
    for name, field in SubscriberSettings.model_fields.items():
        default = "required" if field.is_required() else repr(field.default)
        assert f"| `PGSUBSCRIBER_{name.upper()}` | {default} |" in README, name


def test_every_setting_is_in_the_configuration_table():
    missing = [
        name for name in SubscriberSettings.model_fields if f"`PGSUBSCRIBER_{name.upper()}`" not in README
    ]
    assert not missing


def test_the_first_screen_gives_the_test_command_that_ci_runs():
    first_screen = "\n".join(README.splitlines()[:15])
    assert "python -m pytest" in first_screen
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "python3 -m pytest\n" in ci


def test_the_examples_read_only_the_variables_that_the_demo_prints():
    from demo.system import environment

    printed = set(environment(SimpleNamespace(events_dsn="", producer_dsn="", admin_dsn="", mongo_url="")))
    handler = README.split("A handler in 15 lines:", 1)[1].split("\n---\n", 1)[0]
    verify = README.split("### Verify events received", 1)[1].split("\n## ", 1)[0]
    assert "PGSUBSCRIBER_DSN" in handler and "dsn=" not in handler
    code = "\n".join(re.findall(r"^```\w+\n(.*?)^```", verify, re.S | re.M))
    used = set(re.findall(r'os\.environ\["(\w+)"\]|\$(\w+)', code))
    names = {name for pair in used for name in pair if name}
    assert names == {"DATABASE_URL", "MONGO_URL"}
    assert names <= printed
    assert "serverSelectionTimeoutMS" in verify  # a wrong address fails in seconds, not 30


def test_no_section_or_paragraph_appears_twice():
    top_level = re.findall(r"^## .+$", README, re.M)
    assert len(top_level) == len(set(top_level)), "a top-level section appears twice"
    paragraphs = [p.strip() for p in README.split("\n\n") if len(p.strip().splitlines()) >= 3]
    repeated = {p.splitlines()[0] for p in paragraphs if paragraphs.count(p) > 1}
    assert not repeated, f"paragraphs repeated: {sorted(repeated)}"
