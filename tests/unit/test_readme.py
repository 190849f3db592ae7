"""The README stays true: its configuration table lists every setting with its default."""

from __future__ import annotations

from pathlib import Path

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
