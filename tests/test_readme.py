"""The README stays true: its tables are checked against the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from daemon import rackbeat
from daemon.config import Settings
from daemon.reasons import REASONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README + "\n## ", re.MULTILINE | re.DOTALL)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("|---")
    ]
    return rows[1:]  # without the header


def rendered_default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.is_required():
        return "required"
    value = field.default
    if value is None or value == "":
        return "—"
    value = getattr(value, "value", value)
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_configuration_reference_lists_every_setting_with_its_default() -> None:
    rows = table_rows(section("Configuration reference"))
    documented = {row[0].strip("`"): row[1] for row in rows}
    assert set(documented) == {name.upper() for name in Settings.model_fields}
    for name in Settings.model_fields:
        if name != "sync_db":  # its default depends on $STATE_DIRECTORY and is spelled out
            assert documented[name.upper()] == rendered_default(name), name


def test_troubleshooting_explains_every_reason_code_in_the_words_of_parked() -> None:
    rows = table_rows(section("Troubleshooting"))
    documented = {row[0].strip("`"): (row[1], row[2]) for row in rows}
    assert documented == {code: (a.meaning, a.fix) for code, a in REASONS.items()}


def test_every_rackbeat_assumption_points_at_code_that_exists() -> None:
    names = re.findall(r"`([A-Za-z_][\w.]*)\(\)`", section("Rackbeat API assumptions"))
    assert len(names) >= 8
    for dotted in names:
        owner: object = rackbeat
        for part in dotted.split("."):
            assert hasattr(owner, part), f"README names {dotted}() but daemon/rackbeat.py has no {part}"
            owner = getattr(owner, part)
    for constant in re.findall(r"`([A-Z][A-Z_]+)`", section("Rackbeat API assumptions")):
        if constant not in {name.upper() for name in Settings.model_fields}:
            assert hasattr(rackbeat, constant), constant


def test_the_two_commands_exist_and_ci_runs_the_test_command() -> None:
    commands = re.findall(r"^make (\w+)", section("Two commands"), re.MULTILINE)
    assert commands == ["demo", "test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in commands:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()
