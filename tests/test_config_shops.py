"""Several shops on one Rackbeat account: SHOPS, SHOP_<ALIAS>__ variables, refusals across shops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.__main__ import main
from daemon.config import load_account, load_state_account
from daemon.errors import ConfigError

ACCOUNT = {
    "RACKBEAT_API_TOKEN": "rb-token-123",
    "SYNC_PAYMENT_TERMS": "1",
    "SYNC_EMPLOYEE": "2",
    "SYNC_CUSTOMER_GROUP": "3",
    "SHOPS": "eu,se",
    "SHOP_EU__SHOPIFY_SHOP": "eu-shop.myshopify.com",
    "SHOP_EU__SHOPIFY_ACCESS_TOKEN": "shpat_eu",
    "SHOP_SE__SHOPIFY_SHOP": "se-shop.myshopify.com",
    "SHOP_SE__SHOPIFY_ACCESS_TOKEN": "shpat_se",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An empty environment and a working directory without .env."""
    for name in list(os.environ):
        if name.startswith(
            ("RACKBEAT_", "SHOPIFY_", "SYNC_", "HEALTH_", "LOG_", "CREDENTIALS_", "STATE_DIR", "SHOP")
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def given(env: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        env.setenv(key, value)


def problems(env: pytest.MonkeyPatch, **values: str) -> list[str]:
    given(env, **values)
    with pytest.raises(ConfigError) as info:
        load_account()
    return str(info.value).splitlines()


def test_two_shops_with_defaults_and_per_shop_values(env: pytest.MonkeyPatch) -> None:
    given(env, **ACCOUNT, SYNC_VAT_RATE="25", SHOP_SE__SYNC_VAT_RATE="12", SHOP_SE__SYNC_LOCATIONS="2,3")
    account = load_account()
    assert [s.alias for s in account.shops] == ["eu", "se"]
    eu, se = (s.settings for s in account.shops)
    assert (eu.shop, se.shop) == ("eu-shop.myshopify.com", "se-shop.myshopify.com")
    assert (str(eu.sync_vat_rate), str(se.sync_vat_rate)) == ("25", "12")  # the default, and the shop's own
    assert (eu.location_numbers, se.location_numbers) == (None, ("2", "3"))
    assert eu.shopify_access_token is not None
    assert se.shopify_access_token is not None
    assert (eu.shopify_access_token.get_secret_value(), se.shopify_access_token.get_secret_value()) == (
        "shpat_eu",
        "shpat_se",
    )
    # the account's settings are the same for both
    assert eu.rackbeat_api_token.get_secret_value() == se.rackbeat_api_token.get_secret_value()
    assert account.several
    assert [s.alias for s in account.select("se")] == ["se"]
    assert [s.alias for s in account.select("eu-shop.myshopify.com")] == ["eu"]
    with pytest.raises(ConfigError, match="--shop us: no such shop; the shops are: eu, se"):
        account.select("us")


def test_without_shops_the_single_shop_variables_work_as_before(env: pytest.MonkeyPatch) -> None:
    values = {k: v for k, v in ACCOUNT.items() if not k.startswith("SHOP")}
    given(env, **values, SHOPIFY_SHOP="my-shop.myshopify.com", SHOPIFY_ACCESS_TOKEN="shpat_x")
    account = load_account()
    [shop] = account.shops
    assert (shop.alias, shop.settings.shop, account.several) == ("my_shop", "my-shop.myshopify.com", False)


def test_each_problem_names_the_shop_and_the_variable(env: pytest.MonkeyPatch) -> None:
    values = {k: v for k, v in ACCOUNT.items() if k != "SHOP_SE__SHOPIFY_SHOP"}
    lines = problems(env, **values, SHOP_EU__SYNC_ORDER_STATUS="shipped")
    assert any(line.startswith("SHOP_EU__SYNC_ORDER_STATUS: 'shipped' is not allowed") for line in lines)
    assert "shop se: SHOPIFY_SHOP: missing; required" in lines
    assert all("shpat_" not in line and "rb-token" not in line for line in lines)


def test_account_variables_are_refused_per_shop(env: pytest.MonkeyPatch) -> None:
    lines = problems(env, **ACCOUNT, SHOP_EU__RACKBEAT_API_TOKEN="other", SHOP_SE__SYNC_POLL_SECONDS="5")
    assert any(
        line.startswith("SHOP_EU__RACKBEAT_API_TOKEN: RACKBEAT_API_TOKEN belongs to the") for line in lines
    )
    assert any(
        line.startswith("SHOP_SE__SYNC_POLL_SECONDS: SYNC_POLL_SECONDS belongs to the") for line in lines
    )


def test_unknown_alias_and_unknown_setting_are_named(env: pytest.MonkeyPatch) -> None:
    lines = problems(env, **ACCOUNT, SHOP_US__SHOPIFY_SHOP="us.myshopify.com", SHOP_EU__SYNC_VAT_RAT="5")
    assert "SHOP_US__SHOPIFY_SHOP: shop 'us' is not in SHOPS (eu, se)" in lines
    assert any(line.startswith("SHOP_EU__SYNC_VAT_RAT: SYNC_VAT_RAT is not a setting") for line in lines)


def test_per_shop_variables_without_shops_are_refused(env: pytest.MonkeyPatch) -> None:
    values = {k: v for k, v in ACCOUNT.items() if k != "SHOPS"}
    lines = problems(env, **values)
    assert any(
        line.startswith("SHOP_EU__SHOPIFY_SHOP: shop 'eu' is not in SHOPS (not set)") for line in lines
    )


@pytest.mark.parametrize("value", ["eu,EU", "eu,,se", "eu-1"])
def test_malformed_shops_is_named(env: pytest.MonkeyPatch, value: str) -> None:
    lines = problems(env, **{**ACCOUNT, "SHOPS": value})
    assert lines[0].startswith("SHOPS: ")


def test_settings_that_make_no_sense_across_shops_are_refused(env: pytest.MonkeyPatch) -> None:
    lines = problems(
        env,
        **ACCOUNT,
        SYNC_PRODUCT_PRIORITY="shopify",
        SYNC_DEFAULT_PRODUCT_GROUP="7",
        SHOP_SE__SYNC_ORDER_NUMBER="shopify",
    )
    assert any(
        line.startswith("SYNC_PRODUCT_PRIORITY: shopify on shops eu, se: two masters") for line in lines
    )
    assert any(line.startswith("SYNC_ORDER_NUMBER: shopify on shop(s) se:") for line in lines)


def test_one_master_shop_is_allowed(env: pytest.MonkeyPatch) -> None:
    given(env, **ACCOUNT, SHOP_EU__SYNC_PRODUCT_PRIORITY="shopify", SHOP_EU__SYNC_DEFAULT_PRODUCT_GROUP="7")
    eu, se = (s.settings for s in load_account().shops)
    assert (eu.sync_product_priority, se.sync_product_priority) == ("shopify", "rackbeat")


def test_the_same_shop_twice_is_refused(env: pytest.MonkeyPatch) -> None:
    lines = problems(env, **{**ACCOUNT, "SHOP_SE__SHOPIFY_SHOP": "EU-shop.myshopify.com"})
    assert any(
        line.startswith("SHOP_SE__SHOPIFY_SHOP: eu-shop.myshopify.com is shop eu already") for line in lines
    )


def test_per_shop_tokens_from_credentials_and_dotenv(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "eu_shopify_access_token").write_text("shpat_from_credential\n")
    (creds / "rackbeat_api_token").write_text("rb-from-credential\n")
    values = {k: v for k, v in ACCOUNT.items() if "TOKEN" not in k}
    (tmp_path / ".env").write_text("SHOP_SE__SHOPIFY_ACCESS_TOKEN=shpat_from_dotenv\n")
    given(env, **values, CREDENTIALS_DIRECTORY=str(creds))
    eu, se = (s.settings for s in load_account().shops)
    assert eu.shopify_access_token is not None
    assert se.shopify_access_token is not None
    assert eu.shopify_access_token.get_secret_value() == "shpat_from_credential"
    assert se.shopify_access_token.get_secret_value() == "shpat_from_dotenv"
    assert eu.rackbeat_api_token.get_secret_value() == "rb-from-credential"


def test_db_only_commands_need_each_shops_domain_only(env: pytest.MonkeyPatch) -> None:
    given(
        env,
        SHOPS="eu,se",
        SHOP_EU__SHOPIFY_SHOP="eu-shop.myshopify.com",
        SHOP_SE__SHOPIFY_SHOP="se-shop.myshopify.com",
    )
    account = load_state_account()
    assert [s.settings.shop for s in account.shops] == ["eu-shop.myshopify.com", "se-shop.myshopify.com"]


def test_check_offline_names_every_shop_and_unknown_shop_exits_78(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    given(env, **ACCOUNT)
    assert main(["check", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "configuration OK for eu (eu-shop.myshopify.com)" in out
    assert "configuration OK for se (se-shop.myshopify.com)" in out
    assert main(["check", "--offline", "--shop", "se"]) == 0
    assert "eu-shop" not in capsys.readouterr().out
    assert main(["check", "--offline", "--shop", "us"]) == 78
    assert "--shop us: no such shop" in capsys.readouterr().err
