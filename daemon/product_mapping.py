"""Pure functions for the guide's two product tables: no I/O, no clock.

Two small records name what each table carries, in the terms of the side written to:

:class:`ShopifyFields`
    Rackbeat → Shopify (S13 = rackbeat): title, SKU, description, product type, price,
    barcode, and whether the product is archived (a barred Rackbeat product).
:class:`RackbeatFields`
    Shopify → Rackbeat (S13 = shopify): name, number, description, sales price, cost
    price, weight and weight unit.

Each side's record can be mapped into the *other* side's terms (:func:`shopify_fields`
maps a Rackbeat product, :func:`rackbeat_fields` a Shopify variant) and read in its own
terms (:func:`current_shopify_fields`, :func:`current_rackbeat_fields`); the flow writes
only where the two differ (:func:`shopify_changes`, :func:`rackbeat_changes`).

Fingerprints
------------
:func:`rackbeat_fingerprint` hashes what a Rackbeat product maps to, and
:func:`shopify_fingerprint` what a Shopify variant maps to. The SKU index keeps the last
synced fingerprint of each side; a record whose fingerprint is unchanged is skipped. After
a write the flow stores the fingerprints of *both* sides as they now are, so the write,
read back on the other side (after an S13 switch, or through a cursor overlap), matches
and is not synced back. Both sides are needed because the tables are not inverses: S14
makes a Rackbeat price of 100.00 a Shopify price of 125.00, which mapped back would be a
sales price of 125.00. A fingerprint also carries a short hash per field
(:func:`changed_fields`), so that a changed record writes only the fields that changed
since the last sync — for the same reason: a Shopify cost edit must not carry the 125.00
along. Marks after the hashes record what the daemon did to the status
(:data:`ARCHIVED_MARK`, :data:`HELD_MARK`); :func:`same_content` ignores them.

Descriptions are HTML in Shopify and plain text in Rackbeat. They are compared as
normalised plain text (:func:`html_to_text`, :func:`normalise_text`), so formatting a
merchant added in Shopify survives as long as the words match, and written to Shopify as
escaped paragraphs (:func:`text_to_html`), which map back to the same text.

Money is :class:`~decimal.Decimal`; Shopify prices are rounded half-up to 0.01.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from decimal import Decimal
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from daemon.errors import MalformedResponse, RecordError
from daemon.mapping import cents, money
from daemon.rackbeat import Product, product_body, weight_unit

if TYPE_CHECKING:
    from daemon.config import Settings

ACTIVE = "ACTIVE"
DRAFT = "DRAFT"
ARCHIVED = "ARCHIVED"

#: joins a multi-variant product's title and a variant's title into a Rackbeat name
NAME_SEPARATOR = " – "
#: bump when a mapping changes, so that every stored fingerprint is stale at once
FINGERPRINT_VERSION = 1
#: appended to a Rackbeat fingerprint whose product the daemon archived in Shopify, so that
#: un-barring can restore it without ever un-archiving a product the merchant archived
ARCHIVED_MARK = "+archived"
#: appended (last) to a Rackbeat fingerprint whose product the daemon created and keeps a
#: draft because it has no sales price yet, so that a price can activate it without ever
#: activating a draft the merchant made
HELD_MARK = "+held"


# --- text ------------------------------------------------------------------------------------

#: tags that end a paragraph
_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    }
)
#: tags whose content is not text
_HIDDEN = frozenset({"script", "style", "template", "noscript", "head", "title"})
_PARAGRAPH = "\n\n"


class _TextExtractor(HTMLParser):
    """Collects text: paragraphs become blank lines, ``<br>`` a newline, list items ``- ``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in _BLOCKS:
            self.parts.append(_PARAGRAPH)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append(_PARAGRAPH)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            # whitespace in HTML source is layout, not text
            self.parts.append(re.sub(r"\s+", " ", data))


def normalise_text(text: str) -> str:
    """Plain text in the one form both sides are compared in: line ends ``\\n``, runs of
    blanks one space, lines trimmed, at most one blank line in a row, no blank edges."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    joined = "\n".join(re.sub(r"\s+", " ", line).strip() for line in lines)
    return re.sub(r"\n{3,}", _PARAGRAPH, joined).strip()


def html_to_text(markup: str) -> str:
    """Shopify's ``descriptionHtml`` as plain text for Rackbeat: paragraphs separated by a
    blank line, ``<br>`` a line break, list items as ``- item`` lines, entities decoded,
    scripts and styles dropped, whitespace collapsed."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return normalise_text("".join(parser.parts))


def text_to_html(text: str) -> str:
    """Plain text as Shopify ``descriptionHtml``: ``<p>`` per paragraph, ``<br>`` per line
    break, everything else escaped. :func:`html_to_text` gives the normalised text back."""
    paragraphs = [p for p in normalise_text(text).split(_PARAGRAPH) if p]
    return "".join(
        "<p>" + "<br>".join(html.escape(line, quote=False) for line in p.split("\n")) + "</p>"
        for p in paragraphs
    )


# --- prices ----------------------------------------------------------------------------------


def shop_price(sales_price: Decimal, *, exclude_vat: bool, vat_rate: Decimal) -> Decimal:
    """The Shopify price of a Rackbeat sales price: × (1 + ``vat_rate``/100) when S14 says
    Rackbeat's prices exclude VAT, as it is otherwise; rounded half-up to 0.01."""
    gross = sales_price * (1 + vat_rate / 100) if exclude_vat else sales_price
    return cents(gross)


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductRules:
    """The settings the product mapping follows."""

    #: S14: Rackbeat's sales prices exclude VAT, so Shopify's get it added
    prices_exclude_vat: bool = True
    #: SYNC_VAT_RATE, in percent
    vat_rate: Decimal = Decimal(25)
    #: SYNC_ARCHIVE_BARRED
    archive_barred: bool = True
    #: SYNC_NEW_PRODUCT_STATUS as Shopify's enum (ACTIVE or DRAFT)
    new_status: str = ACTIVE
    #: S11: the group of products created in Rackbeat
    default_group: str | None = None
    #: S15: never published to Shopify, never overwritten from it
    shipping_product: str = "frakt"

    @classmethod
    def from_settings(cls, settings: Settings) -> ProductRules:
        """The rules of these settings."""
        return cls(
            prices_exclude_vat=settings.sync_prices_exclude_vat,
            vat_rate=settings.sync_vat_rate,
            archive_barred=settings.sync_archive_barred,
            new_status=settings.sync_new_product_status.value.upper(),
            default_group=settings.sync_default_product_group,
            shipping_product=settings.sync_shipping_product,
        )


# --- Shopify's side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopifyVariant:
    """One Shopify variant with its product's fields, as read."""

    product_id: str
    variant_id: str
    inventory_item_id: str | None
    sku: str | None
    product_title: str
    variant_title: str
    #: how many variants the product has
    variant_count: int
    description_html: str
    product_type: str
    status: str
    price: Decimal | None
    barcode: str | None
    cost: Decimal | None
    weight: Decimal | None
    #: Shopify's ``WeightUnit`` (``KILOGRAMS`` …)
    weight_unit: str | None
    tracked: bool | None
    updated_at: str | None = None

    @property
    def multi(self) -> bool:
        """True for a variant of a product with several variants."""
        return self.variant_count > 1

    @property
    def archived(self) -> bool:
        """True when the product is archived."""
        return self.status == ARCHIVED

    @property
    def name(self) -> str:
        """How Shopify names the variant: the title, or "title – variant title" when the
        product has several variants."""
        if self.multi:
            return f"{self.product_title}{NAME_SEPARATOR}{self.variant_title}"
        return self.product_title


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value).strip() else None


def shopify_variants(product: Mapping[str, Any]) -> list[ShopifyVariant]:
    """Every variant of a product shaped like ``PRODUCTS_UPDATED_SINCE``'s nodes.

    Raises MalformedResponse for a product or variant without id or with a price that is
    not a number.
    """
    product_id = product.get("id")
    if not isinstance(product_id, str):
        raise MalformedResponse("a product without id")
    connection = product.get("variants")
    nodes = connection.get("nodes") if isinstance(connection, Mapping) else None
    if not isinstance(nodes, list):
        raise MalformedResponse(f"product {product_id} without variants")
    result: list[ShopifyVariant] = []
    for node in nodes:
        variant_id = node.get("id") if isinstance(node, Mapping) else None
        if not isinstance(variant_id, str):
            raise MalformedResponse(f"product {product_id}: a variant without id")
        item = node.get("inventoryItem") or {}
        cost = (item.get("unitCost") or {}).get("amount")
        weight = (item.get("measurement") or {}).get("weight") or {}
        price = node.get("price")
        what = f"variant {variant_id}"
        result.append(
            ShopifyVariant(
                product_id=product_id,
                variant_id=variant_id,
                inventory_item_id=_text(item.get("id")),
                sku=_text(node.get("sku")),
                product_title=str(product.get("title") or "").strip(),
                variant_title=str(node.get("title") or "").strip(),
                variant_count=len(nodes),
                description_html=str(product.get("descriptionHtml") or ""),
                product_type=str(product.get("productType") or "").strip(),
                status=str(product.get("status") or ACTIVE),
                price=None if price is None else money(price, f"{what} price"),
                barcode=_text(node.get("barcode")),
                cost=None if cost is None else money(cost, f"{what} cost"),
                weight=None if weight.get("value") is None else money(weight["value"], f"{what} weight"),
                weight_unit=_text(weight.get("unit")),
                tracked=item.get("tracked") if isinstance(item.get("tracked"), bool) else None,
                updated_at=_text(product.get("updatedAt")),
            )
        )
    return result


# --- the Rackbeat → Shopify table -----------------------------------------------------------------


@dataclass(frozen=True)
class ShopifyFields:
    """The guide's Rackbeat → Shopify table, in Shopify's terms."""

    sku: str
    title: str
    #: plain text, normalised; written as :func:`text_to_html`
    description: str
    product_type: str
    #: None: unknown, left alone
    price: Decimal | None
    barcode: str | None
    #: None: status not managed (SYNC_ARCHIVE_BARRED off)
    archived: bool | None


def shopify_fields(product: Product, group_name: str | None, rules: ProductRules) -> ShopifyFields:
    """What a Rackbeat product maps to in Shopify. Raises RecordError (MALFORMED) for a
    product without name: Shopify refuses a product without title."""
    name = (product.name or "").strip()
    if not name:
        raise RecordError(f"Rackbeat product {product.number!r} has no name", reason="MALFORMED")
    return ShopifyFields(
        sku=product.number,
        title=name,
        description=normalise_text(product.description or ""),
        product_type=(group_name or "").strip(),
        price=None
        if product.sales_price is None
        else shop_price(product.sales_price, exclude_vat=rules.prices_exclude_vat, vat_rate=rules.vat_rate),
        barcode=(product.barcode or "").strip() or None,
        archived=bool(product.is_barred) if rules.archive_barred else None,
    )


def current_shopify_fields(variant: ShopifyVariant, rules: ProductRules) -> ShopifyFields:
    """What Shopify holds now, in the same terms as :func:`shopify_fields`."""
    return ShopifyFields(
        sku=variant.sku or "",
        title=variant.product_title,
        description=html_to_text(variant.description_html),
        product_type=variant.product_type,
        price=None if variant.price is None else cents(variant.price),
        barcode=variant.barcode,
        archived=variant.archived if rules.archive_barred else None,
    )


@dataclass(frozen=True)
class ShopifyChanges:
    """What to send to Shopify: ``ProductUpdateInput`` and ``ProductVariantsBulkInput``
    fields (without ids) for the fields that differ."""

    product: dict[str, Any] = field(default_factory=dict)
    variant: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.product or self.variant)

    @property
    def names(self) -> list[str]:
        """The input fields changed, for logs."""
        return sorted({*self.product, *self.variant})


def priced(target: ShopifyFields) -> bool:
    """True when the Rackbeat product has a sales price to sell at (missing or zero: not)."""
    return target.price is not None and target.price > 0


def shopify_changes(
    current: ShopifyVariant,
    target: ShopifyFields,
    rules: ProductRules,
    *,
    archived_by_daemon: bool,
    held_by_daemon: bool = False,
    only: Collection[str] | None = None,
) -> ShopifyChanges:
    """The writes that bring ``current`` to ``target``.

    Product-level fields (title, description, type, status) are left alone on a product
    with several variants: each variant is its own Rackbeat product, and none of them owns
    the product. Status: a barred product is archived; an archived one is restored to
    ``rules.new_status`` when it is no longer barred, but only if the daemon archived it
    (``archived_by_daemon``) — a product the merchant archived stays archived. A product
    without a sales price is never made active: it is restored as a draft, and a draft the
    daemon created and held back for the price (``held_by_daemon``) is activated once a
    price arrives, if ``rules.new_status`` is active. Unknown values (no price, no
    barcode) leave Shopify's alone. ``only`` (names of :class:`ShopifyFields`) limits the
    writes to the fields that changed in Rackbeat since the last sync; None: every field.
    """

    def owed(name: str) -> bool:
        return only is None or name in only

    product: dict[str, Any] = {}
    if not current.multi:
        if owed("title") and current.product_title != target.title:
            product["title"] = target.title
        if owed("description") and html_to_text(current.description_html) != target.description:
            product["descriptionHtml"] = text_to_html(target.description)
        if owed("product_type") and current.product_type != target.product_type:
            product["productType"] = target.product_type
        if owed("archived"):
            if target.archived is True and not current.archived:
                product["status"] = ARCHIVED
            elif target.archived is False and current.archived and archived_by_daemon:
                product["status"] = rules.new_status if priced(target) else DRAFT
        if (
            owed("price")
            and held_by_daemon
            and current.status == DRAFT
            and priced(target)
            and rules.new_status == ACTIVE
            and not target.archived
        ):
            product["status"] = ACTIVE
    variant: dict[str, Any] = {}
    if owed("price") and target.price is not None and current.price != target.price:
        variant["price"] = str(target.price)
    if owed("barcode") and target.barcode is not None and current.barcode != target.barcode:
        variant["barcode"] = target.barcode
    return ShopifyChanges(product, variant)


def applied(current: ShopifyVariant, changes: ShopifyChanges) -> ShopifyVariant:
    """``current`` after ``changes`` were written (what a read would now return)."""
    p, v = changes.product, changes.variant
    item = v.get("inventoryItem") or {}
    return replace(
        current,
        product_title=p.get("title", current.product_title),
        description_html=p.get("descriptionHtml", current.description_html),
        product_type=p.get("productType", current.product_type),
        status=p.get("status", current.status),
        price=Decimal(v["price"]) if "price" in v else current.price,
        barcode=v.get("barcode", current.barcode),
        sku=item.get("sku", current.sku),
        tracked=item.get("tracked", current.tracked),
    )


# --- the Shopify → Rackbeat table -----------------------------------------------------------------


@dataclass(frozen=True)
class RackbeatFields:
    """The guide's Shopify → Rackbeat table, in Rackbeat's terms. None: unknown, left alone."""

    number: str
    name: str
    #: plain text, normalised
    description: str
    sales_price: Decimal | None
    cost_price: Decimal | None
    weight: Decimal | None
    #: Rackbeat's unit (:func:`daemon.rackbeat.weight_unit`)
    weight_unit: str | None


def rackbeat_fields(variant: ShopifyVariant) -> RackbeatFields:
    """What a Shopify variant maps to in Rackbeat; S14 does not apply (prices as they are).
    Raises RecordError (NO_SKU) for a variant without SKU."""
    if not variant.sku:
        raise RecordError(
            f"Shopify product {variant.product_title!r} variant {variant.variant_title!r} has no SKU",
            reason="NO_SKU",
        )
    unit = weight_unit(variant.weight_unit)
    return RackbeatFields(
        number=variant.sku,
        name=variant.name.strip(),
        description=html_to_text(variant.description_html),
        sales_price=variant.price,
        cost_price=variant.cost,
        # a weight whose unit Rackbeat has no name for is left out, unit and all
        weight=variant.weight if unit is not None else None,
        weight_unit=unit if variant.weight is not None else None,
    )


def current_rackbeat_fields(product: Product) -> RackbeatFields:
    """What Rackbeat holds now, in the same terms as :func:`rackbeat_fields`."""
    return RackbeatFields(
        number=product.number,
        name=(product.name or "").strip(),
        description=normalise_text(product.description or ""),
        sales_price=product.sales_price,
        cost_price=product.cost_price,
        weight=product.weight,
        weight_unit=product.weight_unit,
    )


def rackbeat_changes(
    current: Product, target: RackbeatFields, *, only: Collection[str] | None = None
) -> dict[str, Any]:
    """:func:`daemon.rackbeat.product_body` arguments for the fields that differ (the number
    never changes; unknown values in ``target`` are left alone). ``only`` (names of
    :class:`RackbeatFields`) limits them to the fields that changed in Shopify since the
    last sync: a cost edited in Shopify must not also copy a price that differs only by
    S14's VAT; None: every field."""
    have = current_rackbeat_fields(current)
    changes: dict[str, Any] = {}
    if (only is None or "name" in only) and have.name != target.name:
        changes["name"] = target.name
    if (only is None or "description" in only) and have.description != target.description:
        changes["description"] = target.description
    for key in ("sales_price", "cost_price", "weight", "weight_unit"):
        wanted = getattr(target, key)
        if (only is None or key in only) and wanted is not None and getattr(have, key) != wanted:
            changes[key] = wanted
    return changes


def rackbeat_update_body(current: Product, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The ``PUT`` body of :func:`rackbeat_changes`: :func:`~daemon.rackbeat.product_body`,
    with a changed weight sent inside the whole current ``physical`` object (dimensions and
    all), in case Rackbeat replaces nested objects rather than merging them."""
    body: dict[str, Any] = product_body(**changes)
    physical = body.get("physical")
    have = current.raw.get("physical")
    if isinstance(physical, Mapping) and isinstance(have, Mapping):
        body["physical"] = {**have, **physical}
    return body


def new_rackbeat_product(target: RackbeatFields, rules: ProductRules) -> dict[str, Any]:
    """:func:`daemon.rackbeat.product_body` arguments for a new product, in S11's group."""
    body: dict[str, Any] = {
        "number": target.number,
        "name": target.name,
        "description": target.description,
        "group": rules.default_group,
    }
    for key in ("sales_price", "cost_price", "weight", "weight_unit"):
        body[key] = getattr(target, key)
    return body


# --- fingerprints ------------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        # 125, 125.0 and 125.00 are one price
        return format(value.normalize(), "f") if value else "0"
    return value


#: separates a fingerprint's whole-record hash from its per-field hashes
_PART = "."


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _digest(kind: str, fields: ShopifyFields | RackbeatFields, **extra: Any) -> str:
    """``<hash of the record>.<hash of each field, by field name>``: the first part says
    whether anything changed, the others which fields did (:func:`changed_fields`)."""
    data = {key: _canonical(value) for key, value in asdict(fields).items()} | extra
    parts = [_hash([kind, name, data[name]])[:12] for name in sorted(data)]
    return _PART.join([_hash([FINGERPRINT_VERSION, kind, data]), *parts])


def _content(fingerprint: str) -> str:
    return fingerprint.removesuffix(HELD_MARK).removesuffix(ARCHIVED_MARK).split(_PART)[0]


def same_content(stored: str | None, fingerprint: str) -> bool:
    """True when a stored fingerprint hashes the same record as ``fingerprint``; the marks
    of what the daemon did to the status are history, not content, and a fingerprint
    stored before per-field hashes were kept still matches."""
    return stored is not None and _content(stored) == _content(fingerprint)


#: the field names behind a fingerprint's per-field hashes, in their order
_FIELD_NAMES = {
    "rackbeat": sorted(f.name for f in dataclass_fields(ShopifyFields)),
    "shopify": sorted([*(f.name for f in dataclass_fields(RackbeatFields)), "archived"]),
}


def changed_fields(stored: str | None, fingerprint: str, *, kind: str) -> frozenset[str] | None:
    """The fields whose values differ between a stored fingerprint and ``fingerprint``, of
    ``kind`` "rackbeat" (:func:`rackbeat_fingerprint`: names of :class:`ShopifyFields`) or
    "shopify" (:func:`shopify_fingerprint`: names of :class:`RackbeatFields`); None when
    that is unknown (nothing stored, or stored before per-field hashes were kept): then
    every field counts as changed."""
    if stored is None:
        return None
    names = _FIELD_NAMES[kind]
    old = stored.removesuffix(HELD_MARK).removesuffix(ARCHIVED_MARK).split(_PART)[1:]
    new = fingerprint.removesuffix(HELD_MARK).removesuffix(ARCHIVED_MARK).split(_PART)[1:]
    if not len(old) == len(new) == len(names):
        return None
    return frozenset(name for name, a, b in zip(names, old, new, strict=True) if a != b)


def rackbeat_fingerprint(mapped: ShopifyFields) -> str:
    """The fingerprint of a Rackbeat product: a hash of what it maps to in Shopify, marked
    :data:`ARCHIVED_MARK` when that means archiving the Shopify product."""
    return _digest("rackbeat", mapped) + (ARCHIVED_MARK if mapped.archived else "")


def shopify_fingerprint(mapped: RackbeatFields, *, archived: bool) -> str:
    """The fingerprint of a Shopify variant: a hash of what it maps to in Rackbeat and of
    whether its product is archived (archived products are not created in Rackbeat, so
    un-archiving must count as a change)."""
    return _digest("shopify", mapped, archived=archived)


def archived_by_daemon(fingerprint: str | None) -> bool:
    """True when the stored Rackbeat fingerprint says the daemon archived the product."""
    return fingerprint is not None and fingerprint.removesuffix(HELD_MARK).endswith(ARCHIVED_MARK)


def held_by_daemon(fingerprint: str | None) -> bool:
    """True when the stored Rackbeat fingerprint says the daemon created the product and
    keeps it a draft until it has a sales price (:data:`HELD_MARK`)."""
    return fingerprint is not None and fingerprint.endswith(HELD_MARK)


def held_mark(target: ShopifyFields, after: ShopifyVariant, *, by_daemon: bool) -> str:
    """:data:`HELD_MARK` when the daemon (``by_daemon``) keeps ``after`` a draft for lack of a
    sales price, else nothing: appended to the fingerprint the flow stores."""
    return HELD_MARK if by_daemon and after.status == DRAFT and not priced(target) else ""


# --- differences -----------------------------------------------------------------------------------


#: fields shown to the cent in differences
_MONEY_FIELDS = frozenset({"price", "sales_price", "cost_price"})


def _shown(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return str(cents(value)) if name in _MONEY_FIELDS else _canonical(value)
    return str(value)


def shopify_differences(
    current: ShopifyFields, target: ShopifyFields, *, multi: bool
) -> list[tuple[str, str | None, str | None]]:
    """(field, Shopify's value, Rackbeat's mapped value) where S13 = rackbeat would write.
    Product-level fields are not compared for a variant of a multi-variant product."""
    names = ["price", "barcode"] if multi else ["title", "description", "product_type", "price", "barcode"]
    if not multi and target.archived is not None:
        names.append("archived")
    rows: list[tuple[str, str | None, str | None]] = []
    for name in names:
        have, want = getattr(current, name), getattr(target, name)
        if name in ("price", "barcode") and want is None:
            continue  # unknown in Rackbeat: Shopify's is left alone
        if name == "archived" and not want:
            continue  # only archiving is owed; un-archiving depends on who archived it
        if have != want:
            rows.append((name, _shown(name, have), _shown(name, want)))
    return rows


def rackbeat_differences(
    current: RackbeatFields, target: RackbeatFields
) -> list[tuple[str, str | None, str | None]]:
    """(field, Shopify's mapped value, Rackbeat's value) where S13 = shopify would write."""
    rows: list[tuple[str, str | None, str | None]] = []
    for name in ("name", "description", "sales_price", "cost_price", "weight", "weight_unit"):
        have, want = getattr(current, name), getattr(target, name)
        if want is None and name != "description":
            continue  # unknown in Shopify: left alone
        if have != want:
            rows.append((name, _shown(name, want), _shown(name, have)))
    return rows
