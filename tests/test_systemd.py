"""The systemd unit: its required settings, ``systemd-analyze verify``, and its exposure score.

The unit is a template (``rackbeat-shopify@.service``); the checks that run systemd's own
tools copy it to a temporary directory and instantiate it as ``rackbeat-shopify@test``, the
way ``systemctl`` would. They are skipped only where ``systemd-analyze`` is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import Settings

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "rackbeat-shopify@.service"
INSTANCE = "rackbeat-shopify@test.service"
MAX_EXPOSURE = 2.0
TOOL_TIMEOUT = 60
# the token variables the unit passes as credentials (file name = variable in lower case)
CREDENTIALS = ("rackbeat_api_token", "shopify_access_token", "shopify_client_secret")

UnitFile = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> UnitFile:
    """Section → key → every value in order (systemd keys may repeat, unlike INI's)."""
    sections: UnitFile = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line {number}: continuation lines are not expected"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None, f"line {number}: setting outside a section: {raw!r}"
        assert sep, f"line {number}: not 'Key=value': {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> UnitFile:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def one(section: dict[str, list[str]], key: str) -> str:
    """The single value of ``key``; fails when it is missing or given twice."""
    values = section.get(key, [])
    assert len(values) == 1, f"{key}= should be set exactly once, found {values}"
    return values[0]


def test_unit_runs_the_daemon_as_a_notify_service_with_a_watchdog(unit: UnitFile) -> None:
    service = unit["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert int(one(service, "WatchdogSec")) > 0
    assert one(service, "ExecStart") == "/opt/rackbeat-shopify/bin/rackbeat-shopify run"
    # the daemon exits within 10 s of SIGTERM; systemd waits a little longer before SIGKILL
    assert int(one(service, "TimeoutStopSec")) > 10


def test_unit_restarts_on_failure_but_not_on_a_config_error(unit: UnitFile) -> None:
    service = unit["Service"]
    assert one(service, "Restart") == "on-failure"
    assert int(one(service, "RestartSec")) > 0
    assert "78" in one(service, "RestartPreventExitStatus").split()  # EX_CONFIG
    # the start limit lives in [Unit]; systemd ignores it (with a warning) in [Service]
    assert int(one(unit["Unit"], "StartLimitIntervalSec")) > 0
    assert int(one(unit["Unit"], "StartLimitBurst")) > 0


def test_unit_keeps_state_settings_and_tokens_per_shop(unit: UnitFile) -> None:
    service = unit["Service"]
    assert one(service, "DynamicUser") == "yes"
    assert one(service, "StateDirectory") == "rackbeat-shopify/%i"
    assert one(service, "StateDirectoryMode") == "0700"
    assert one(service, "UMask") == "0077"
    assert one(service, "EnvironmentFile").removeprefix("-") == "/etc/rackbeat-shopify/%i.env"

    loaded = dict(value.split(":", 1) for value in service.get("LoadCredential", []))
    fallbacks = dict(value.split(":", 1) for value in service.get("SetCredential", []))
    assert sorted(loaded) == sorted(CREDENTIALS)
    for name in CREDENTIALS:
        assert name in Settings.model_fields, f"the daemon has no setting for credential {name}"
        assert loaded[name] == f"/etc/rackbeat-shopify/credentials/%i/{name}"
        # the fallback keeps a missing file from failing the start, and must stay blank
        # so that it never stands in for a real token
        assert fallbacks[name].replace("\\n", "").strip() == "", f"SetCredential={name} is not blank"


@pytest.fixture(scope="module")
def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed")
    return path


def instantiate(directory: Path, text: str) -> Path:
    """Write ``text`` as the template in ``directory`` and return the test instance's path."""
    (directory / UNIT.name).write_text(text, encoding="utf-8")
    instance = directory / INSTANCE
    instance.symlink_to(UNIT.name)
    return instance


def verifiable(text: str) -> str:
    """The unit with ExecStart's binary swapped for one that exists here.

    verify fails a unit whose ExecStart= binary is missing, and the daemon is not
    installed under /opt on a test machine; this Python is, so verify checks the rest.
    """
    replaced, count = re.subn(
        r"^ExecStart=\S+", lambda _: f"ExecStart={sys.executable}", text, flags=re.MULTILINE
    )
    assert count == 1
    return replaced


def run_analyze(analyze: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - a fixed tool with arguments built here, no shell
        [analyze, *args],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"},
    )


def about_our_unit(output: str) -> list[str]:
    # verify also loads the unit's dependencies from the host; their warnings aren't ours
    return [line for line in output.splitlines() if "rackbeat-shopify@" in line]


def test_systemd_analyze_verify_accepts_the_unit(analyze: str, tmp_path: Path) -> None:
    instance = instantiate(tmp_path, verifiable(UNIT.read_text(encoding="utf-8")))

    result = run_analyze(analyze, "verify", "--man=no", str(instance))

    output = result.stdout + result.stderr
    assert about_our_unit(output) == [], output
    assert result.returncode == 0, f"systemd-analyze verify exited {result.returncode}:\n{output}"


def test_systemd_analyze_verify_would_notice_a_mistake(analyze: str, tmp_path: Path) -> None:
    # guards the test above against passing because the tool or the filter sees nothing
    broken = verifiable(UNIT.read_text(encoding="utf-8")).replace("[Service]\n", "[Service]\nTpye=notify\n")
    instance = instantiate(tmp_path, broken)

    result = run_analyze(analyze, "verify", "--man=no", str(instance))

    assert any("Tpye" in line for line in about_our_unit(result.stdout + result.stderr))


def test_exposure_score_is_at_most_two(analyze: str, tmp_path: Path) -> None:
    help_text = run_analyze(analyze, "--help").stdout
    if "--offline" not in help_text:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    instance = instantiate(tmp_path, UNIT.read_text(encoding="utf-8"))

    result = run_analyze(analyze, "security", "--no-pager", "--offline=true", str(instance))

    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match, output
    exposed = "\n".join(line for line in result.stdout.splitlines() if line.lstrip().startswith("✗"))
    assert float(match.group(1)) <= MAX_EXPOSURE, exposed
    # parse problems (an ignored line silently weakens the sandbox) show up here too
    assert about_our_unit(result.stderr) == [], result.stderr
