"""Settings: every problem named at start, the guide's defaults, .env.example in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.config import ACCOUNT_VARIABLES, Settings, load_account, load_settings
from daemon.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

VALID = {
    "RACKBEAT_API_TOKEN": "rb-token-123",
    "SHOPIFY_SHOP": "demo-shop.myshopify.com",
    "SHOPIFY_ACCESS_TOKEN": "shpat_abc123",
    "SYNC_PAYMENT_TERMS": "1",
    "SYNC_EMPLOYEE": "2",
    "SYNC_CUSTOMER_GROUP": "3",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An empty environment and a working directory without .env."""
    for name in list(__import__("os").environ):
        if name.startswith(
            ("RACKBEAT_", "SHOPIFY_", "SYNC_", "SHOP", "HEALTH_", "LOG_", "CREDENTIALS_", "STATE_DIR")
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def problems(env: pytest.MonkeyPatch, **values: str) -> list[str]:
    for key, value in values.items():
        env.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    return str(info.value).splitlines()


def test_empty_environment_names_every_missing_variable(env: pytest.MonkeyPatch) -> None:
    lines = problems(env)
    named = {line.split(":")[0] for line in lines}
    assert named == {
        "RACKBEAT_API_TOKEN",
        "SHOPIFY_SHOP",
        "SHOPIFY_ACCESS_TOKEN",
        "SYNC_PAYMENT_TERMS",
        "SYNC_EMPLOYEE",
        "SYNC_CUSTOMER_GROUP",
    }
    assert len(lines) == len(named)  # one line per problem


def test_bad_enum_names_variable_and_allowed_values(env: pytest.MonkeyPatch) -> None:
    lines = problems(env, **VALID, SYNC_ORDER_STATUS="shipped", SYNC_PRODUCT_PRIORITY="both")
    assert "SYNC_ORDER_STATUS: 'shipped' is not allowed; allowed: draft, booked, ready_to_ship" in lines
    assert "SYNC_PRODUCT_PRIORITY: 'both' is not allowed; allowed: rackbeat, shopify, disabled" in lines


@pytest.mark.parametrize("variable", ["SYNC_STOCK", "SYNC_ORDERS", "SYNC_PRICES_EXCLUDE_VAT"])
def test_bad_boolean_names_variable_and_allowed_values(env: pytest.MonkeyPatch, variable: str) -> None:
    [line] = [line for line in problems(env, **{**VALID, variable: "maybe"}) if line.startswith(variable)]
    assert "'maybe'" in line
    assert "allowed: true, false" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SHOPIFY_SHOP", "https://demo.myshopify.com"),
        ("SYNC_POLL_SECONDS", "0"),
        ("HEALTH_LISTEN", "8787"),
        ("SYNC_LOCATIONS", "1,,2"),
        ("SYNC_CURRENCY", "kronor"),
        ("SHOPIFY_API_VERSION", "2026-11"),
        ("SYNC_VAT_RATE", "-5"),
        ("SYNC_STOCK", "maybe"),
        ("SHOPIFY_LOCATION_ID", "main warehouse"),
    ],
)
def test_wrong_value_is_named(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    lines = problems(env, **{**VALID, variable: value})
    assert len(lines) == 1
    assert lines[0].startswith(f"{variable}: ")


def test_tokens_never_echoed_in_errors(env: pytest.MonkeyPatch) -> None:
    lines = problems(env, **{**VALID, "SHOPIFY_SHOP": "nope"})
    assert all("shpat_abc123" not in line and "rb-token-123" not in line for line in lines)


def test_guide_defaults(env: pytest.MonkeyPatch) -> None:
    for key, value in VALID.items():
        env.setenv(key, value)
    s = load_settings()
    assert (s.sync_order_status, s.sync_order_number, s.sync_vat_zone) == (
        "ready_to_ship",
        "rackbeat",
        "domestic",
    )
    assert (s.sync_currency, s.sync_shipping_product, s.sync_product_priority) == ("SEK", "frakt", "rackbeat")
    assert (s.sync_stock, s.sync_prices_exclude_vat, s.sync_send_order_confirmation) == (True, True, False)
    assert s.location_numbers is None
    assert s.graphql_url == "https://demo-shop.myshopify.com/admin/api/2026-10/graphql.json"
    assert s.token_url == "https://demo-shop.myshopify.com/admin/oauth/access_token"
    assert s.health_address == ("127.0.0.1", 8787)
    assert s.sync_db == Path("sync.db")
    assert "shpat_abc123" not in repr(s)


def test_client_credentials_instead_of_token(env: pytest.MonkeyPatch) -> None:
    values = {k: v for k, v in VALID.items() if k != "SHOPIFY_ACCESS_TOKEN"}
    lines = problems(env, **values, SHOPIFY_CLIENT_ID="cid")
    assert [line.split(":")[0] for line in lines] == ["SHOPIFY_ACCESS_TOKEN"]
    env.setenv("SHOPIFY_CLIENT_SECRET", "csecret")
    assert load_settings().shopify_client_id == "cid"


def test_shopify_priority_needs_product_group(env: pytest.MonkeyPatch) -> None:
    lines = problems(env, **VALID, SYNC_PRODUCT_PRIORITY="shopify")
    assert [line.split(":")[0] for line in lines] == ["SYNC_DEFAULT_PRODUCT_GROUP"]


def test_orders_off_needs_no_order_numbers(env: pytest.MonkeyPatch) -> None:
    for key in ("RACKBEAT_API_TOKEN", "SHOPIFY_SHOP", "SHOPIFY_ACCESS_TOKEN"):
        env.setenv(key, VALID[key])
    env.setenv("SYNC_ORDERS", "false")
    assert load_settings().sync_orders is False


def test_state_directory_and_credentials_directory(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "rackbeat_api_token").write_text("from-credential\n")
    (creds / "SHOPIFY_ACCESS_TOKEN").write_text("shpat_cred")
    for key, value in VALID.items():
        if "TOKEN" not in key:
            env.setenv(key, value)
    env.setenv("CREDENTIALS_DIRECTORY", str(creds))
    env.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    s = load_settings()
    assert s.rackbeat_api_token.get_secret_value() == "from-credential"
    assert s.shopify_access_token is not None
    assert s.shopify_access_token.get_secret_value() == "shpat_cred"
    assert s.sync_db == tmp_path / "state" / "sync.db"


def test_dotenv_in_working_directory(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("\n".join(f"{k}={v}" for k, v in VALID.items()) + "\nSYNC_VAT_RATE=12\n")
    s = load_settings()
    assert str(s.sync_vat_rate) == "12"


def test_env_example_lists_every_setting_and_only_those() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = re.findall(r"^([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    assert set(listed) == {name.upper() for name in Settings.model_fields}
    # every variable has a one-line explanation right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]+=", line):
            assert lines[i - 1].startswith("# "), f"{line.split('=')[0]} has no explanation above it"


#: the commented-out example of several shops in .env.example: ``# SHOPS=…``, ``# SHOP_EU__…=…``
SEVERAL_SHOPS = re.compile(r"^# (SHOPS|SHOP_([A-Z0-9_]+?)__([A-Z0-9_]+))=(.*)$", re.MULTILINE)


def test_env_example_shows_several_shops_commented_out() -> None:
    # SHOPS and SHOP_<ALIAS>__<VARIABLE> are no Settings fields: they are shown commented
    # out (a copy of the file stays a one-shop configuration), with per-shop variables that
    # exist and may be set per shop
    text = (ROOT / ".env.example").read_text()
    examples = SEVERAL_SHOPS.findall(text)
    assert examples[0][0] == "SHOPS"
    aliases = examples[0][3].split(",")
    per_shop = [(alias, variable) for _, alias, variable, _ in examples[1:]]
    assert {alias.lower() for alias, _ in per_shop} == set(aliases)
    assert ("EU", "SHOPIFY_SHOP") in per_shop
    for _, variable in per_shop:
        assert variable.lower() in Settings.model_fields, variable
        assert variable.lower() not in ACCOUNT_VARIABLES, f"{variable} belongs to the account"
    assert not re.search(r"^(SHOPS|SHOP_\w+__\w+)=", text, re.MULTILINE), (
        "a several-shops line is not commented out"
    )


def test_env_example_with_several_shops_uncommented_is_a_valid_account(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = (ROOT / ".env.example").read_text()
    filled = SEVERAL_SHOPS.sub(lambda m: m.group(0).removeprefix("# "), text)
    filled = re.sub(r"^(SHOP_\w+__SHOPIFY_ACCESS_TOKEN|RACKBEAT_API_TOKEN)=$", r"\1=x", filled, flags=re.M)
    for key in ("SYNC_PAYMENT_TERMS", "SYNC_CUSTOMER_GROUP", "SYNC_EMPLOYEE"):
        filled = filled.replace(f"{key}=\n", f"{key}=1\n")
    (tmp_path / ".env").write_text(filled)
    eu, se = load_account().shops
    assert (eu.alias, eu.settings.shop, eu.settings.sync_currency) == (
        "eu",
        "your-eu-shop.myshopify.com",
        "EUR",
    )
    assert (se.alias, se.settings.shop, se.settings.sync_currency) == (
        "se",
        "your-se-shop.myshopify.com",
        "SEK",
    )
    assert eu.settings.location_numbers == ("1",)
    assert se.settings.location_numbers is None  # the unprefixed default: all


def test_env_example_values_are_valid_defaults(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = (ROOT / ".env.example").read_text()
    filled = text.replace("RACKBEAT_API_TOKEN=\n", "RACKBEAT_API_TOKEN=x\n")
    filled = filled.replace("SHOPIFY_ACCESS_TOKEN=\n", "SHOPIFY_ACCESS_TOKEN=y\n")
    for key in ("SYNC_PAYMENT_TERMS", "SYNC_CUSTOMER_GROUP", "SYNC_EMPLOYEE"):
        filled = filled.replace(f"{key}=\n", f"{key}=1\n")
    (tmp_path / ".env").write_text(filled)
    s = load_settings()
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert s.sync_order_status == defaults["sync_order_status"]
    assert s.sync_poll_seconds == defaults["sync_poll_seconds"]
