"""The README stays true: its tables are checked against the code they describe."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from daemon import rackbeat
from daemon.__main__ import _parser
from daemon.config import Settings
from daemon.reasons import REASONS
from daemon.storm import ApiProblem

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
    rows = table_rows(section("Troubleshooting").split("\n### ")[0])  # the reason codes' table
    documented = {row[0].strip("`"): (row[1], row[2]) for row in rows}
    assert documented == {code: (a.meaning, a.fix) for code, a in REASONS.items()}


def test_troubleshooting_explains_the_stalled_and_storm_states() -> None:
    states = {row[0]: row[2] for row in table_rows(section("Troubleshooting").split("\n### ")[1])}
    assert any("stalled:" in state for state in states)
    assert any(f"{ApiProblem.kind}:" in state for state in states)
    assert any("held:" in state for state in states)
    assert all("check --live" in fix for state, fix in states.items() if ApiProblem.kind in state)


ASSUMED = "[assumed]"


def assumption_rows() -> list[tuple[str, str]]:
    """(assumption, the one name in "Where it lives") per row of the README table."""
    rows = []
    for row in table_rows(section("Rackbeat API assumptions")):
        names = re.findall(r"`([A-Za-z_][\w.]*)(?:\(\))?`", row[1])
        assert len(names) == 1, f"README row {row[0][:60]!r} must name exactly one place, names {names}"
        rows.append((row[0], names[0]))
    return rows


def resolve(dotted: str) -> object:
    """``daemon.config.VatZone`` from its module; anything else from ``daemon/rackbeat.py``."""
    if dotted.startswith("daemon."):
        module, _, attribute = dotted.rpartition(".")
        owner: object = importlib.import_module(module)
        parts = [attribute]
    else:
        owner = rackbeat
        parts = dotted.split(".")
    for part in parts:
        assert hasattr(owner, part), f"README names {dotted} but {owner!r} has no {part}"
        owner = getattr(owner, part)
    return owner


def docstring_assumptions() -> set[str]:
    """The names the ``Assumptions`` part of ``daemon/rackbeat.py``'s docstring lists."""
    doc = rackbeat.__doc__ or ""
    match = re.search(r"^Assumptions\n-+\n(.*?)(?=^\w[^\n]*\n-+\n)", doc, re.MULTILINE | re.DOTALL)
    assert match, "daemon/rackbeat.py's docstring has no Assumptions part"
    return set(re.findall(r":(?:func|meth|data|class):`~?([\w.]+)`", match.group(1)))


def code_marked_assumed() -> set[str]:
    """Functions and methods of ``daemon/rackbeat.py`` whose docstring says [assumed]."""
    marked = set()
    for name, value in vars(rackbeat).items():
        if inspect.isfunction(value) and value.__module__ == rackbeat.__name__:
            if ASSUMED in (inspect.getdoc(value) or ""):
                marked.add(name)
        elif inspect.isclass(value) and value.__module__ == rackbeat.__name__:
            for attribute, member in vars(value).items():
                function = getattr(member, "__func__", member)
                if inspect.isfunction(function) and ASSUMED in (inspect.getdoc(function) or ""):
                    marked.add(f"{name}.{attribute}")
    return marked


def test_every_rackbeat_assumption_points_at_code_that_exists() -> None:
    rows = assumption_rows()
    # the reference's [assumed] facts: transport, lists, customers, orders, reference data, stock
    assert len(rows) >= 15
    places = [place for _, place in rows]
    assert len(places) == len(set(places)), "two README rows name the same place"
    for assumption, place in rows:
        target = resolve(place)
        if callable(target) and not inspect.isclass(target):
            assert ASSUMED in (inspect.getdoc(target) or ""), (
                f"{place}() is where the README says {assumption[:50]!r}… lives, "
                f"but its docstring does not mark it {ASSUMED}"
            )
    text = section("Rackbeat API assumptions")
    for dotted in re.findall(r"`([A-Za-z_][\w.]*)\(\)`", text):  # "how to correct" names code too
        resolve(dotted)
    for constant in re.findall(r"`([A-Z][A-Z_]+)`", text):
        if constant not in {name.upper() for name in Settings.model_fields} and constant not in REASONS:
            assert hasattr(rackbeat, constant), f"README names {constant}, daemon/rackbeat.py has none"


def test_readme_and_rackbeat_docstring_list_the_same_assumptions() -> None:
    in_readme = {place for _, place in assumption_rows()}
    listed = docstring_assumptions()
    assert in_readme - listed == set(), "in the README but not in daemon/rackbeat.py's docstring"
    assert listed - in_readme == set(), "in daemon/rackbeat.py's docstring but not in the README"


def test_every_function_marked_assumed_has_a_readme_row() -> None:
    in_readme = {place for _, place in assumption_rows()}
    assert code_marked_assumed() - in_readme == set(), "marked [assumed] in code, missing in the README"


def test_the_two_commands_exist_and_ci_runs_the_test_command() -> None:
    commands = re.findall(r"^make (\w+)", section("Two commands"), re.MULTILINE)
    assert commands == ["demo", "test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in commands:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()


STATE_INVARIANT = (
    "a cursor never passes a record whose outcome is not committed, and applying a record again is harmless."
)


def test_the_state_invariant_is_stated_the_same_way_everywhere_it_is_kept() -> None:
    """README, the store and every module that moves a cursor say the one invariant in the
    same words (the crash tests of each flow are what hold them to it)."""

    def plain(text: str) -> str:
        return " ".join(text.replace("*", "").split())

    modules = [
        "daemon.store",
        "daemon.index",
        "daemon.incremental",
        "daemon.flows.orders",
        "daemon.flows.fulfilments",
        "daemon.flows.products",
        "daemon.flows.stock",
    ]
    for name in modules:
        doc = importlib.import_module(name).__doc__ or ""
        assert STATE_INVARIANT in plain(doc), name
    assert STATE_INVARIANT in plain(README)
    # every module that advances a cursor is one of them
    movers = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "daemon").rglob("*.py")
        if "set_cursor(" in path.read_text() and "sim" not in path.parts
    }
    assert movers <= {*modules, "daemon.store"}, movers - set(modules)


def test_the_commands_block_lists_every_command() -> None:
    block = re.search(r"```\n(rackbeat-shopify .*?)```", section("Commands"), re.DOTALL)
    assert block, "the Commands section has no block of commands"
    listed = re.findall(r"^rackbeat-shopify ([\w-]+)", block.group(1), re.MULTILINE)
    sub = next(a for a in _parser()._actions if a.dest == "command")
    assert sub.choices is not None
    assert sorted(listed) == sorted(sub.choices), "README's Commands block and the parser differ"
