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
from pydantic import SecretStr

from daemon.config import CREDENTIALS_ID, load_account
from daemon.errors import ConfigError

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "rackbeat-shopify@.service"
INSTANCE = "rackbeat-shopify@test.service"
MAX_EXPOSURE = 2.0
TOOL_TIMEOUT = 60

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


def test_unit_keeps_state_settings_and_tokens_per_account(unit: UnitFile) -> None:
    service = unit["Service"]
    assert one(service, "DynamicUser") == "yes"
    assert one(service, "StateDirectory") == "rackbeat-shopify/%i"
    assert one(service, "StateDirectoryMode") == "0700"
    assert one(service, "UMask") == "0077"
    assert one(service, "EnvironmentFile").removeprefix("-") == "/etc/rackbeat-shopify/%i.env"

    # one line loads the account's whole credentials directory: a shop added to SHOPS
    # needs a file there, not a change to the unit
    ident, _, path = one(service, "LoadCredential").partition(":")
    assert (ident, path) == (CREDENTIALS_ID, "/etc/rackbeat-shopify/credentials/%i")
    # the fallback keeps a missing directory from failing the start, and must stay blank
    # so that it never stands in for a real token
    fallback_id, _, fallback = one(service, "SetCredential").partition(":")
    assert fallback_id == CREDENTIALS_ID
    assert fallback.replace("\\n", "").strip() == ""


def credentials_directory(unit: UnitFile, instance: str, etc: Path, into: Path) -> Path:
    """What PID 1 puts in ``$CREDENTIALS_DIRECTORY`` for the unit's ``LoadCredential=`` and
    ``SetCredential=`` lines, by systemd.exec(5) (252): a file becomes one credential named
    ID; a directory one credential per file in it (recursively, symlinks ignored), named ID,
    ``_`` and the file's path below the directory with ``/`` as ``_``; a missing path the
    ``SetCredential=`` value of the same ID. ``/etc/rackbeat-shopify`` is ``etc`` here."""
    into.mkdir()
    fallbacks = dict(value.split(":", 1) for value in unit["Service"].get("SetCredential", []))
    for value in unit["Service"].get("LoadCredential", []):
        ident, _, raw = value.partition(":")
        path = etc / raw.replace("%i", instance).removeprefix("/etc/rackbeat-shopify/")
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and not file.is_symlink():
                    name = "_".join((ident, *file.relative_to(path).parts))
                    (into / name).write_bytes(file.read_bytes())
        elif path.is_file():
            (into / ident).write_bytes(path.read_bytes())
        else:
            assert ident in fallbacks, f"{path} is missing and {ident} has no fallback: the start fails"
            (into / ident).write_text(fallbacks[ident].replace("\\n", "\n"))
    return into


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting of ours in the environment, and no .env in the working directory."""
    for name in list(os.environ):
        if name.startswith(("RACKBEAT_", "SHOPIFY_", "SYNC_", "SHOP", "HEALTH_", "LOG_", "CREDENTIALS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for name, value in {"SYNC_PAYMENT_TERMS": "1", "SYNC_CUSTOMER_GROUP": "1", "SYNC_EMPLOYEE": "1"}.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def test_every_shop_of_the_account_gets_its_tokens_from_the_one_directory(
    unit: UnitFile, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the operator's files: the account's token, eu's access token, se's client secret
    # (a shop's files may also sit in a directory named after its alias)
    tokens = tmp_path / "etc" / "credentials" / "acme"
    (tokens / "se").mkdir(parents=True)
    (tokens / "rackbeat_api_token").write_text("rb-token\n")
    (tokens / "eu_shopify_access_token").write_text("shpat_eu\n")
    (tokens / "se" / "shopify_client_secret").write_text("se-secret\n")
    directory = credentials_directory(unit, "acme", tmp_path / "etc", tmp_path / "run")
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(directory))
    clean_env.setenv("SHOPS", "eu,se")
    clean_env.setenv("SHOP_EU__SHOPIFY_SHOP", "eu-shop.myshopify.com")
    clean_env.setenv("SHOP_SE__SHOPIFY_SHOP", "se-shop.myshopify.com")
    clean_env.setenv("SHOP_SE__SHOPIFY_CLIENT_ID", "se-client")

    eu, se = load_account().shops

    assert {secret(shop.settings.rackbeat_api_token) for shop in (eu, se)} == {"rb-token"}
    assert (eu.alias, secret(eu.settings.shopify_access_token)) == ("eu", "shpat_eu")
    assert (se.alias, secret(se.settings.shopify_access_token)) == ("se", None)
    assert secret(se.settings.shopify_client_secret) == "se-secret"
    assert secret(eu.settings.shopify_client_secret) is None


def test_a_single_shops_credentials_directory_still_works(
    unit: UnitFile, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # an instance from before SHOPS: its files carry no alias
    tokens = tmp_path / "etc" / "credentials" / "myshop"
    tokens.mkdir(parents=True)
    (tokens / "rackbeat_api_token").write_text("rb-token")
    (tokens / "shopify_access_token").write_text("shpat_one")
    directory = credentials_directory(unit, "myshop", tmp_path / "etc", tmp_path / "run")
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(directory))
    clean_env.setenv("SHOPIFY_SHOP", "myshop.myshopify.com")

    [shop] = load_account().shops

    assert secret(shop.settings.rackbeat_api_token) == "rb-token"
    assert secret(shop.settings.shopify_access_token) == "shpat_one"


def test_without_a_credentials_directory_the_daemon_names_the_missing_tokens(
    unit: UnitFile, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = credentials_directory(unit, "acme", tmp_path / "etc", tmp_path / "run")
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(directory))
    clean_env.setenv("SHOPS", "eu")
    clean_env.setenv("SHOP_EU__SHOPIFY_SHOP", "eu-shop.myshopify.com")

    with pytest.raises(ConfigError) as missing:
        load_account()

    assert "RACKBEAT_API_TOKEN: missing" in str(missing.value)
    assert "shop eu: SHOPIFY_ACCESS_TOKEN: missing" in str(missing.value)


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


def test_the_readmes_commands_get_the_units_state_and_credentials(unit: UnitFile) -> None:
    # `rbs` (README, "Against a systemd instance") runs a command as the service would
    readme = (UNIT.parent.parent / "README.md").read_text(encoding="utf-8")
    helper = re.search(r"^rbs\(\) \{\n(.*?)^\}", readme, re.MULTILINE | re.DOTALL)
    assert helper, "README has no rbs() helper"
    given: dict[str, list[str]] = {}
    for key, value in re.findall(r"-p '?(\w+)=(\S+?)'? ", helper.group(1)):
        given.setdefault(key, []).append(value)
    service = unit["Service"]
    for key in ("StateDirectory", "EnvironmentFile", "LoadCredential", "SetCredential"):
        assert given[key] == [v.replace("%i", "$account") for v in service[key]], key
    assert given["User"] == ["rackbeat-shopify"]  # the dynamic user's name: the template's
