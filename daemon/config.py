"""Every setting of the daemon, read from the environment.

One pydantic-settings model, :class:`Settings`. Field names are the environment
variable names in lower case, so an error about ``sync_order_status`` is an error
about ``SYNC_ORDER_STATUS``. The guide's settings S1–S15
(``shared/reference/seed-guide-en.md``) are marked in each field's description.

Sources, strongest first: the process environment, a ``.env`` file in the working
directory (development), and files in ``$CREDENTIALS_DIRECTORY`` named after the
variable (systemd ``LoadCredential=``; lower- or upper-case file names), or after the
variable behind :data:`CREDENTIALS_ID` and ``_``: the unit loads the account's whole
credentials directory as ``LoadCredential=rackbeat-shopify:<directory>``, and systemd
names each file's credential ``rackbeat-shopify_<file name>``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from daemon.errors import ConfigError


class OrderStatus(StrEnum):
    """S1: the state a Shopify order reaches in Rackbeat."""

    DRAFT = "draft"
    BOOKED = "booked"
    READY_TO_SHIP = "ready_to_ship"


class OrderTrigger(StrEnum):
    """When a Shopify order is transferred to Rackbeat (``SYNC_ORDER_TRIGGER``)."""

    CREATED = "created"
    PAID = "paid"
    FULFILLED = "fulfilled"


class UnprovenReferencePolicy(StrEnum):
    """What ``run`` does while Rackbeat's order search by ``your_reference`` is refuted
    (``SYNC_ORDERS_UNPROVEN_REFERENCE``; see :class:`daemon.live_check.ReferenceGate`)."""

    REFUSE = "refuse"
    WARN = "warn"


class OrderNumbering(StrEnum):
    """S2: who numbers the Rackbeat order."""

    RACKBEAT = "rackbeat"
    SHOPIFY = "shopify"


class VatZone(StrEnum):
    """S6: VAT zone of customers created from Shopify orders."""

    DOMESTIC = "domestic"
    EU = "eu"
    ABROAD = "abroad"


class ProductPriority(StrEnum):
    """S13: where products are created and maintained."""

    RACKBEAT = "rackbeat"
    SHOPIFY = "shopify"
    DISABLED = "disabled"


class StockFigure(StrEnum):
    """Which Rackbeat quantity is sent to Shopify as ``available``."""

    AVAILABLE = "available"
    IN_STOCK = "in_stock"


class NewProductStatus(StrEnum):
    """Status of products the daemon creates in Shopify."""

    ACTIVE = "active"
    DRAFT = "draft"


class LogFormat(StrEnum):
    """How log lines are written."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


_SHOP_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
_VERSION_RE = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")


def _default_db() -> Path:
    state = os.environ.get("STATE_DIRECTORY")
    # systemd may pass several directories separated by ':'; the first is ours
    return Path(state.split(":")[0]) / "sync.db" if state else Path("sync.db")


class _FromEnvironment(BaseSettings):
    """Settings read from the environment, a ``.env`` file and, for tokens,
    ``$CREDENTIALS_DIRECTORY`` (systemd's ``LoadCredential=``), in that order of precedence."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _CredentialsSource(settings_cls))


class Settings(_FromEnvironment):
    """The daemon's configuration. See ``.env.example`` for every variable."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        # an empty VAR= means "not set" (the shape of .env.example), not an empty value
        env_ignore_empty=True,
    )

    # --- connection -------------------------------------------------------------
    rackbeat_api_url: str = Field("https://app.rackbeat.com/api", description="Rackbeat API base URL.")
    rackbeat_api_token: SecretStr = Field(description="Rackbeat API key (Bearer token).")
    rackbeat_contact_name: str = Field(
        "rackbeat-shopify", description="Sent to Rackbeat as Consumer-Name (who runs this)."
    )
    rackbeat_contact_email: str = Field(
        "", description="Sent to Rackbeat as Consumer-Contact; Rackbeat asks for it."
    )
    rackbeat_requests_per_minute: int = Field(
        300, ge=1, le=10_000, description="Request budget shared by all flows."
    )
    shopify_shop: str = Field(description="The shop's domain, name.myshopify.com.")
    shopify_access_token: SecretStr | None = Field(
        None, description="Admin API access token (shpat_…), or use client id + secret."
    )
    shopify_client_id: str | None = Field(None, description="Client id for the client-credentials grant.")
    shopify_client_secret: SecretStr | None = Field(
        None, description="Client secret for the client-credentials grant."
    )
    shopify_api_version: str = Field("2026-10", description="Admin API version (YYYY-MM).")
    shopify_admin_url: str = Field("", description="Admin base URL; default https://{SHOPIFY_SHOP}/admin.")
    shopify_location_id: str | None = Field(
        None, description="Shopify location receiving stock; default the shop's primary location."
    )

    # --- runtime ------------------------------------------------------------------
    sync_db: Path = Field(default_factory=_default_db, description="SQLite state file.")
    sync_poll_seconds: float = Field(60.0, gt=0, le=86_400, description="Seconds between polls.")
    health_listen: str = Field("127.0.0.1:8787", description="host:port of the health endpoint.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    log_format: LogFormat = Field(LogFormat.AUTO, description="auto, json or console.")

    # --- the guide's settings -----------------------------------------------------
    sync_orders: bool = Field(True, description="Import Shopify orders into Rackbeat.")
    sync_order_status: OrderStatus = Field(OrderStatus.READY_TO_SHIP, description="S1 order status.")
    sync_order_number: OrderNumbering = Field(OrderNumbering.RACKBEAT, description="S2 order number.")
    sync_payment_terms: str | None = Field(None, description="S3 payment terms number.")
    sync_language: str = Field("en", description="S4 language (not used yet).")
    sync_customer_group: str | None = Field(None, description="S5 customer group number.")
    sync_vat_zone: VatZone = Field(VatZone.DOMESTIC, description="S6 VAT zone of new customers.")
    sync_currency: str = Field("SEK", description="S7 currency of new customers (ISO 4217).")
    sync_employee: str | None = Field(None, description="S8 employee number on orders.")
    sync_send_order_confirmation: bool = Field(False, description="S9 e-mail the order confirmation.")
    sync_locations: str = Field("all", description="S10 'all' or Rackbeat location numbers, comma-separated.")
    sync_default_product_group: str | None = Field(None, description="S11 product group number.")
    sync_stock: bool = Field(True, description="S12 sync stock Rackbeat → Shopify.")
    sync_product_priority: ProductPriority = Field(ProductPriority.RACKBEAT, description="S13 sync priority.")
    sync_prices_exclude_vat: bool = Field(True, description="S14 Rackbeat prices exclude VAT.")
    sync_vat_rate: Decimal = Field(Decimal("25"), ge=0, le=100, description="S14 VAT rate in percent.")
    sync_shipping_product: str = Field("frakt", min_length=1, description="S15 shipping product number.")

    # --- beyond the guide -----------------------------------------------------------
    sync_stock_figure: StockFigure = Field(StockFigure.AVAILABLE, description="available or in_stock.")
    sync_allow_negative_stock: bool = Field(False, description="Send negative quantities as they are.")
    sync_reconcile_seconds: float = Field(3600.0, gt=0, description="Seconds between full stock reconciles.")
    sync_fallback_customer: str | None = Field(None, description="Customer number for orders without e-mail.")
    sync_orders_since: datetime | None = Field(
        None,
        description="Import orders created since this ISO date (set before the first start); empty means orders created from the first start on.",
    )
    sync_import_test_orders: bool = Field(False, description="Also import Shopify test orders.")
    sync_order_trigger: OrderTrigger = Field(
        OrderTrigger.CREATED,
        description="Transfer an order when it is created, paid (or authorised), or fulfilled in Shopify.",
    )
    sync_orders_unproven_reference: UnprovenReferencePolicy = Field(
        UnprovenReferencePolicy.REFUSE,
        description="While Rackbeat's order search by your_reference is refuted (check --live): refuse (hold orders, health fails) or warn (import; a crash may then duplicate an order).",
    )
    sync_fulfilments: bool = Field(
        True, description="Fulfil Shopify orders, with tracking, when Rackbeat ships them."
    )
    sync_fulfilment_notify_customer: bool = Field(
        True, description="Shopify e-mails the customer the shipping confirmation for those fulfilments."
    )
    sync_new_product_status: NewProductStatus = Field(NewProductStatus.ACTIVE, description="active or draft.")
    sync_archive_barred: bool = Field(True, description="Archive barred Rackbeat products in Shopify.")

    # --- validators -----------------------------------------------------------------
    @field_validator("shopify_shop")
    @classmethod
    def _shop(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHOP_RE.match(value):
            raise ValueError("must be the shop's domain, like name.myshopify.com")
        return value

    @field_validator("shopify_api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION_RE.match(value):
            raise ValueError("must be a quarterly version like 2026-10")
        return value

    @field_validator("rackbeat_api_url", "shopify_admin_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("shopify_location_id")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.isdigit():
            return f"gid://shopify/Location/{value}"
        if not re.match(r"^gid://shopify/Location/\d+$", value):
            raise ValueError("must be a location id, like 12345 or gid://shopify/Location/12345")
        return value

    @field_validator("health_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("sync_locations")
    @classmethod
    def _locations(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == "all":
            return "all"
        parts = [p.strip() for p in value.split(",")]
        if not parts or any(not p for p in parts):
            raise ValueError("must be 'all' or Rackbeat location numbers separated by commas")
        return ",".join(parts)

    @field_validator("sync_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().upper()
        if not re.match(r"^[A-Z]{3}$", value):
            raise ValueError("must be a three-letter ISO 4217 code, like SEK")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of: debug, info, warning, error")
        return value

    @field_validator("sync_orders_since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", value.strip()):
            return datetime.combine(date.fromisoformat(value.strip()), datetime.min.time(), UTC)
        return value

    @field_validator("sync_orders_since")
    @classmethod
    def _since_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator(
        "sync_payment_terms",
        "sync_customer_group",
        "sync_employee",
        "sync_default_product_group",
        "sync_fallback_customer",
        "shopify_client_id",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="wrap")
    @classmethod
    def _requirements(cls, data: Any, handler: Any) -> Self:
        # Checked on the raw values too, so that one run names every problem at once,
        # not the field errors first and the missing combinations on the next start.
        raw = {str(k).lower(): v for k, v in data.items()} if isinstance(data, dict) else {}
        problems = _missing_combinations(raw)
        try:
            settings: Self = handler(data)
        except ValidationError as exc:
            lines = [_describe(error) for error in exc.errors(include_url=False)]
            raise ConfigError("\n".join(lines + problems)) from None
        if problems:
            raise ConfigError("\n".join(problems))
        if not settings.shopify_admin_url:
            settings.shopify_admin_url = f"https://{settings.shopify_shop}/admin"
        return settings

    # --- derived values ---------------------------------------------------------------
    @property
    def shop(self) -> str:
        """The key every state row is stored under."""
        return self.shopify_shop

    @property
    def location_numbers(self) -> tuple[str, ...] | None:
        """S10 as a tuple of Rackbeat location numbers, or None for all."""
        return None if self.sync_locations == "all" else tuple(self.sync_locations.split(","))

    @property
    def graphql_url(self) -> str:
        """The Admin GraphQL endpoint."""
        return f"{self.shopify_admin_url}/api/{self.shopify_api_version}/graphql.json"

    @property
    def token_url(self) -> str:
        """The client-credentials grant endpoint."""
        return f"{self.shopify_admin_url}/oauth/access_token"

    @property
    def health_address(self) -> tuple[str, int]:
        """HEALTH_LISTEN as (host, port)."""
        return parse_listen(self.health_listen)


class IsolatedSettings(Settings):
    """Settings from the values given only: no environment, no ``.env``, no credentials
    directory. The demo and the benchmarks build theirs this way, so that nothing of the
    machine they run on leaks in."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> IsolatedSettings:
        """Settings from exactly ``values`` (field names as keys)."""
        return cls(**dict(values))


#: the ID of the unit's ``LoadCredential=`` of the account's credentials directory: systemd
#: passes each file in it as ``rackbeat-shopify_<file name>`` (a ``-`` no alias can contain)
CREDENTIALS_ID = "rackbeat-shopify"


def credential(directory: str | os.PathLike[str], *names: str) -> str | None:
    """The first non-blank credential of ``$CREDENTIALS_DIRECTORY`` named one of ``names``:
    under the name itself (a credential of its own), else under :data:`CREDENTIALS_ID` ``_``
    name (a file of the loaded credentials directory). A blank one (systemd's
    ``SetCredential=`` fallback) means "not given here"."""
    for prefix in ("", f"{CREDENTIALS_ID}_"):
        for name in names:
            path = Path(directory) / f"{prefix}{name}"
            if path.is_file():
                value = path.read_text(encoding="utf-8").strip()
                if value:
                    return value
    return None


class _CredentialsSource(PydanticBaseSettingsSource):
    """Reads ``$CREDENTIALS_DIRECTORY/<variable>`` (systemd ``LoadCredential=``; see
    :func:`credential`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return None, field_name, False
        return credential(directory, field_name, field_name.upper()), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def _is_off(value: Any) -> bool:
    return str(value).strip().lower() in {"0", "false", "no", "off", "f", "n"}


def _missing_combinations(raw: dict[str, Any]) -> list[str]:
    """Settings that are required only together with others, checked on raw values."""
    problems: list[str] = []

    def given(name: str) -> bool:
        value = raw.get(name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return value is not None and str(value).strip() != ""

    if not given("shopify_access_token") and not (
        given("shopify_client_id") and given("shopify_client_secret")
    ):
        problems.append(
            "SHOPIFY_ACCESS_TOKEN: missing; set it, or both SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET"
        )
    if not _is_off(raw.get("sync_orders", True)):
        for name, what in (
            ("sync_payment_terms", "S3 payment terms"),
            ("sync_employee", "S8 employee"),
            ("sync_customer_group", "S5 customer group"),
        ):
            if not given(name):
                problems.append(
                    f"{name.upper()}: missing; the Rackbeat number of the {what}, "
                    "required while SYNC_ORDERS is on"
                )
    if str(raw.get("sync_product_priority", "")).strip().lower() == "shopify" and not given(
        "sync_default_product_group"
    ):
        problems.append(
            "SYNC_DEFAULT_PRODUCT_GROUP: missing; the S11 Rackbeat product group number, "
            "required when SYNC_PRODUCT_PRIORITY=shopify"
        )
    return problems


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8787`` for IPv6); raise ValueError when malformed."""
    match = re.match(r"^\[([0-9a-fA-F:]+)\]:(\d+)$", value) or re.match(r"^([^:\s]+):(\d+)$", value)
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError("must be host:port, like 127.0.0.1:8787")
    return match.group(1), int(match.group(2))


def _describe(error: Any) -> str:
    loc = error.get("loc") or ()
    variable = str(loc[0]).upper() if loc else "configuration"
    kind = error.get("type", "")
    given = error.get("input")
    if kind == "missing":
        return f"{variable}: missing; required"
    ctx = error.get("ctx") or {}
    if kind == "enum" and "expected" in ctx:
        allowed = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"{variable}: {given!r} is not allowed; allowed: {allowed}"
    if kind in ("bool_parsing", "bool_type"):
        # pydantic's own list (also yes/no, on/off, 1/0, any case); these two are the ones to write
        return f"{variable}: {given!r} is not a boolean; allowed: true, false (or yes/no, on/off, 1/0)"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    shown = "" if "token" in variable.lower() or "secret" in variable.lower() else f" (got {given!r})"
    return f"{variable}: {message}{shown}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise :class:`ConfigError` with one line per problem."""
    return Settings(**overrides)


# --- several shops on one Rackbeat account ----------------------------------------------------

#: settings of the Rackbeat account and of the process: set once, never per shop
ACCOUNT_VARIABLES = frozenset(
    {
        "rackbeat_api_url",
        "rackbeat_api_token",
        "rackbeat_contact_name",
        "rackbeat_contact_email",
        "rackbeat_requests_per_minute",
        "sync_db",
        "sync_poll_seconds",
        "health_listen",
        "log_level",
        "log_format",
    }
)
_ALIAS_RE = re.compile(r"^[a-z0-9_]+$")
_PREFIXED_RE = re.compile(r"^SHOP_([A-Z0-9_]+?)__([A-Z0-9_]+)$")


def default_alias(domain: str) -> str:
    """The alias of the one shop of a daemon without ``SHOPS``: the shop's handle."""
    return re.sub(r"[^a-z0-9_]", "_", domain.split(".", maxsplit=1)[0].lower()) or "shop"


def shop_variable(alias: str, variable: str) -> str:
    """The per-shop name of ``variable`` (``SHOP_EU__SHOPIFY_SHOP``)."""
    return f"SHOP_{alias.upper()}__{variable.upper()}"


@dataclass(frozen=True)
class Shop:
    """One Shopify shop of the account: its alias (``SHOPS``; the ``shop`` label of health and
    metrics, ``--shop``) and its settings (the account-scoped ones are the same in every shop)."""

    alias: str
    settings: Settings


@dataclass(frozen=True)
class Account:
    """Every shop one process serves, on one Rackbeat account (``SHOPS``; one shop without it)."""

    shops: tuple[Shop, ...]

    @classmethod
    def single(cls, settings: Settings, alias: str | None = None) -> Account:
        """The account of one shop (``alias`` defaults to the shop's handle)."""
        return cls((Shop(alias or default_alias(settings.shop), settings),))

    @property
    def settings(self) -> Settings:
        """The account-scoped settings (Rackbeat, state DB, poll interval, health, logs)."""
        return self.shops[0].settings

    @property
    def several(self) -> bool:
        """More than one shop: flow names in health and logs carry the alias."""
        return len(self.shops) > 1

    def select(self, alias: str | None) -> tuple[Shop, ...]:
        """The shops ``--shop`` names (alias or domain); every shop for None."""
        if alias is None:
            return self.shops
        found = tuple(s for s in self.shops if alias.strip().lower() in (s.alias, s.settings.shop))
        if not found:
            known = ", ".join(s.alias for s in self.shops)
            raise ConfigError(f"--shop {alias}: no such shop; the shops are: {known}")
        return found


def check_account(shops: Iterable[Shop]) -> list[str]:
    """Settings that make no sense across the shops of one account, one line each."""
    shops = list(shops)
    problems: list[str] = []
    owners: dict[str, str] = {}
    for shop in shops:
        owner = owners.setdefault(shop.settings.shop, shop.alias)
        if owner != shop.alias:
            problems.append(
                f"{shop_variable(shop.alias, 'shopify_shop')}: {shop.settings.shop} is shop {owner} already; "
                "list each shop once"
            )
    if len(shops) < 2:
        return problems
    masters = [s.alias for s in shops if s.settings.sync_product_priority is ProductPriority.SHOPIFY]
    if len(masters) > 1:
        problems.append(
            f"SYNC_PRODUCT_PRIORITY: shopify on shops {', '.join(masters)}: two masters for one Rackbeat "
            "catalogue; let one shop create products at most (rackbeat or disabled on the others)"
        )
    numbered = [
        s.alias
        for s in shops
        if s.settings.sync_orders and s.settings.sync_order_number is OrderNumbering.SHOPIFY
    ]
    if numbered:
        problems.append(
            f"SYNC_ORDER_NUMBER: shopify on shop(s) {', '.join(numbered)}: with several shops their order "
            "numbers clash in Rackbeat (the guide's warning for S2); use rackbeat"
        )
    return problems


def _dotenv() -> dict[str, str | None]:
    """The variables of ``.env`` in the working directory (none when there is no file)."""
    return dict(dotenv_values(".env")) if Path(".env").is_file() else {}


def _aliases(dotenv: Mapping[str, str | None]) -> list[str] | None:
    """``SHOPS`` from the environment, else from ``.env``, as a list of aliases (None when
    not set)."""
    raw = os.environ.get("SHOPS")
    if raw is None:
        raw = dotenv.get("SHOPS")
    if raw is None or not raw.strip():
        return None
    aliases = [a.strip().lower() for a in raw.split(",")]
    bad = [a for a in aliases if not _ALIAS_RE.match(a)]
    if bad:
        raise ConfigError(
            f"SHOPS: {', '.join(repr(a) for a in bad)} is not an alias; aliases are lower-case letters, "
            "digits and _ separated by commas, like SHOPS=eu,se"
        )
    twice = sorted({a for a in aliases if aliases.count(a) > 1})
    if twice:
        raise ConfigError(f"SHOPS: {', '.join(twice)} listed twice")
    return aliases


def _prefixed(
    aliases: list[str], dotenv: Mapping[str, str | None]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``SHOP_<ALIAS>__<VARIABLE>`` values by alias (field name → value), from the environment,
    ``.env`` and ``$CREDENTIALS_DIRECTORY`` (``<alias>_<variable>``, see :func:`credential`) in that order; and the
    problems (an alias not in ``SHOPS``, no such setting, an account-scoped one)."""
    found: dict[str, dict[str, Any]] = {a: {} for a in aliases}
    problems: list[str] = []
    fields = Settings.model_fields

    def take(name: str, value: Any) -> None:
        match = _PREFIXED_RE.match(name.upper())
        if match is None:
            return
        alias, field = match.group(1).lower(), match.group(2).lower()
        variable = shop_variable(alias, field)
        if alias not in found:
            listed = ", ".join(aliases) if aliases else "not set"
            problems.append(f"{variable}: shop {alias!r} is not in SHOPS ({listed})")
        elif field not in fields:
            problems.append(f"{variable}: {field.upper()} is not a setting (see .env.example)")
        elif field in ACCOUNT_VARIABLES:
            problems.append(
                f"{variable}: {field.upper()} belongs to the Rackbeat account and the process, not to one "
                f"shop; set {field.upper()} once"
            )
        elif value is not None and str(value).strip():
            found[alias].setdefault(field, str(value).strip())

    for name, value in os.environ.items():
        take(name, value)
    for name, dotenv_value in dotenv.items():
        take(name, dotenv_value)
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        for alias in aliases:
            for field in fields:
                if field in ACCOUNT_VARIABLES:
                    continue
                loaded = credential(directory, f"{alias}_{field}", shop_variable(alias, field))
                if loaded is not None:
                    take(shop_variable(alias, field), loaded)
    return found, problems


def _for_shop(alias: str, given: Mapping[str, Any], lines: Iterable[str]) -> list[str]:
    """Problem lines of one shop's settings, naming the shop and, where it was given per shop,
    the per-shop variable."""
    named: list[str] = []
    for line in lines:
        variable, sep, rest = line.partition(":")
        if sep and variable.lower() in given:
            named.append(f"{shop_variable(alias, variable)}:{rest}")
        else:
            named.append(f"shop {alias}: {line}")
    return named


def _load_account(build: Callable[[Mapping[str, Any]], Settings], *, check: bool = True) -> Account:
    dotenv = _dotenv()
    aliases = _aliases(dotenv)
    prefixed, problems = _prefixed(aliases or [], dotenv)
    if aliases is None:
        if problems:
            raise ConfigError("\n".join(problems))
        return Account.single(build({}))
    shops: list[Shop] = []
    for alias in aliases:
        try:
            shops.append(Shop(alias, build(prefixed[alias])))
        except ConfigError as exc:
            problems.extend(_for_shop(alias, prefixed[alias], str(exc).splitlines()))
    if not problems and check:
        problems = check_account(shops)
    if problems:
        raise ConfigError("\n".join(problems))
    return Account(tuple(shops))


def load_account() -> Account:
    """Every shop's settings (``SHOPS`` with ``SHOP_<ALIAS>__<VARIABLE>``, or the one shop of
    the unprefixed variables), or :class:`ConfigError` with one line per problem, each naming
    the shop and the variable."""
    return _load_account(lambda overrides: Settings(**dict(overrides)))


class DbSettings(_FromEnvironment):
    """The settings of a command that works on the state file alone (``merge-state``): the
    state DB and logging, from the same sources as :class:`Settings`; nothing of any shop."""

    model_config = Settings.model_config

    sync_db: Path = Field(default_factory=_default_db, description="SQLite state file.")
    log_level: str = "info"
    log_format: LogFormat = LogFormat.AUTO

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        return Settings._level(value)


class StateSettings(DbSettings):
    """The settings of the DB-only commands, from the same sources as :class:`Settings`
    (environment, ``.env``, ``$CREDENTIALS_DIRECTORY``): an operator can read the state of
    an instance without its API tokens, and a mistake in an unrelated setting does not hide it."""

    shopify_shop: str = Field(description="The shop's domain; it keys every row of the state DB.")

    @field_validator("shopify_shop")
    @classmethod
    def _shop(cls, value: str) -> str:
        return Settings._shop(value)

    def as_settings(self) -> Settings:
        """A :class:`Settings` carrying these values only (the DB commands read no others)."""
        return Settings.model_construct(
            shopify_shop=self.shopify_shop,
            sync_db=self.sync_db,
            log_level=self.log_level,
            log_format=self.log_format,
        )


def _state_settings(overrides: Mapping[str, Any]) -> Settings:
    try:
        return StateSettings(**dict(overrides)).as_settings()
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(e) for e in exc.errors(include_url=False))) from None


def load_db_settings() -> DbSettings:
    """``SYNC_DB`` and the logging settings (:class:`DbSettings`); :class:`ConfigError` with one
    line per problem."""
    try:
        return DbSettings()
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(e) for e in exc.errors(include_url=False))) from None


def load_state_account() -> Account:
    """Every shop's DB-only settings (:class:`StateSettings`), as :func:`load_account` reads them."""
    return _load_account(_state_settings, check=False)


def now_utc() -> datetime:
    """Wall-clock time in UTC (for cursors and timestamps)."""
    return datetime.now(UTC)
