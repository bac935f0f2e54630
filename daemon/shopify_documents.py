"""Every GraphQL document the daemon sends to the Shopify Admin API (version 2026-10).

The documents are plain strings so that a test can validate each one against Shopify's
published schema (``tests/test_shopify_documents.py``) and the simulator's schema.
:data:`ALL_DOCUMENTS` lists them by name.

Query cost
----------
Shopify prices a query before running it: scalars and enums cost 0, objects 1, and a
connection 2 plus ``first`` times the cost of one node, so nested connections multiply.
A query may ask for at most 1,000 points (``MAX_COST_EXCEEDED``). The page sizes below
are chosen so that every document stays well below that with the ``first`` the client
sends; the documents test recomputes the estimate from the schema. Shopify charges the
*actual* cost afterwards (an order with two line items pays for two, not ten), so
generous inner page sizes cost little in practice but they do count against the
maximum.

Nested connections are kept small and paged separately: an order's first
:data:`ORDER_INLINE_LINE_ITEMS` line items come with the order, the rest with
:data:`ORDER_LINE_ITEMS`; a product's variants likewise with :data:`PRODUCT_VARIANTS`;
an order's fulfillment orders, their line items and its fulfilments likewise with
:data:`ORDER_FULFILLMENT_ORDERS`, :data:`FULFILLMENT_ORDER_LINE_ITEMS` and
:data:`ORDER_FULFILLMENTS`.
"""

from __future__ import annotations

import json

#: orders per page of ORDERS_UPDATED_SINCE (≈ 830 requested points a page)
ORDERS_PAGE_SIZE = 5
#: line items fetched together with each order; more are paged with ORDER_LINE_ITEMS
ORDER_INLINE_LINE_ITEMS = 10
#: line items per page of ORDER_LINE_ITEMS (≈ 810 points)
ORDER_LINE_ITEMS_PAGE_SIZE = 90
#: shipping lines fetched with each order (one per delivery group; an order with more is
#: parked rather than imported with part of its shipping charge)
ORDER_SHIPPING_LINES = 10
#: ids and times per page of ORDER_STAMPS and PRODUCT_STAMPS (≈ 250 points requested,
#: 2 plus one a node charged)
STAMPS_PAGE_SIZE = 250
#: products per page of PRODUCTS_UPDATED_SINCE (≈ 830 points)
PRODUCTS_PAGE_SIZE = 8
#: variants fetched together with each product; more are paged with PRODUCT_VARIANTS
PRODUCT_INLINE_VARIANTS = 20
#: variants per page of PRODUCT_VARIANTS (≈ 500 points)
PRODUCT_VARIANTS_PAGE_SIZE = 100
#: variants per page of VARIANTS_PAGE (≈ 750 points)
VARIANTS_PAGE_SIZE = 250
#: locations per page of LOCATIONS
LOCATIONS_PAGE_SIZE = 250
#: candidates fetched by VARIANTS_BY_SKU; more than one exact match is a duplicate SKU
VARIANTS_BY_SKU_LIMIT = 10
#: Shopify caps array inputs (``ids``, ``quantities``, ``variants``) at 250 items
MAX_INPUT_ITEMS = 250
#: fulfillment orders fetched with ORDER_FULFILMENT (one per location the order ships from)
ORDER_INLINE_FULFILLMENT_ORDERS = 5
#: line items fetched with each of those fulfillment orders
FULFILLMENT_ORDER_INLINE_LINE_ITEMS = 20
#: fulfilments fetched with ORDER_FULFILMENT; an order with this many is read again
#: with ORDER_FULFILLMENTS (``Order.fulfillments`` is a list, it has no cursor to page on)
ORDER_INLINE_FULFILLMENTS = 20
#: fulfillment orders per page of ORDER_FULFILLMENT_ORDERS (≈ 680 points)
ORDER_FULFILLMENT_ORDERS_PAGE_SIZE = 15
#: line items per page of FULFILLMENT_ORDER_LINE_ITEMS (≈ 500 points)
FULFILLMENT_ORDER_LINE_ITEMS_PAGE_SIZE = 250
#: the most fulfilments ORDER_FULFILLMENTS reads (Shopify's cap on ``first``)
ORDER_FULFILLMENTS_LIMIT = 250

# --- shared selections ----------------------------------------------------------------
# Plain text pasted into several documents rather than GraphQL fragments: the
# selection is identical and there is no fragment machinery to keep in step.

_MONEY = "shopMoney { amount }"

_TAX_LINES = f"taxLines {{ rate priceSet {{ {_MONEY} }} }}"

_ADDRESS = "name address1 address2 zip city countryCodeV2 phone"

#: A line's price is its original total less every discount allocated to it (line- and
#: order-level): exact to the cent, where the unit prices after discounts are rounded.
_LINE_ITEM = f"""
        id
        sku
        name
        quantity
        currentQuantity
        originalTotalSet {{ {_MONEY} }}
        discountAllocations {{ allocatedAmountSet {{ {_MONEY} }} }}
        {_TAX_LINES}"""

_VARIANT = """
        id
        title
        sku
        barcode
        price
        inventoryItem {
          id
          tracked
          unitCost { amount }
          measurement { weight { unit value } }
        }"""

_PAGE_INFO = "pageInfo { hasNextPage endCursor }"

# --- locations --------------------------------------------------------------------------

LOCATIONS = f"""
query Locations($first: Int!, $after: String) {{
  locations(first: $first, after: $after) {{
    {_PAGE_INFO}
    nodes {{ id name isActive fulfillsOnlineOrders }}
  }}
}}
"""

#: ``location`` without an id returns the shop's primary location (``Location.isPrimary``
#: and ``Shop.primaryLocation`` are deprecated in 2026-10; this is the supported way).
PRIMARY_LOCATION = """
query PrimaryLocation {
  location { id name isActive fulfillsOnlineOrders }
}
"""

# --- orders ------------------------------------------------------------------------------

#: ``$query`` is a search filter such as ``updated_at:>='2026-11-01T10:00:00Z'``.
#: An order's fields as the orders flow maps them (a node of ORDERS_UPDATED_SINCE and
#: ORDERS_BY_IDS; its first line items inline, the rest paged with ORDER_LINE_ITEMS).
_ORDER = f"""
      id
      name
      number
      email
      phone
      createdAt
      updatedAt
      cancelledAt
      cancelReason
      test
      taxesIncluded
      currencyCode
      displayFinancialStatus
      displayFulfillmentStatus
      customer {{ id email firstName lastName phone }}
      billingAddress {{ {_ADDRESS} }}
      shippingAddress {{ {_ADDRESS} }}
      shippingLines(first: {ORDER_SHIPPING_LINES}) {{
        {_PAGE_INFO}
        nodes {{
          title
          isRemoved
          currentDiscountedPriceSet {{ {_MONEY} }}
          {_TAX_LINES}
        }}
      }}
      lineItems(first: {ORDER_INLINE_LINE_ITEMS}) {{
        {_PAGE_INFO}
        nodes {{{_LINE_ITEM}
        }}
      }}
      totalPriceSet {{ {_MONEY} }}
      currentTotalPriceSet {{ {_MONEY} }}
      totalTaxSet {{ {_MONEY} }}
      totalShippingPriceSet {{ {_MONEY} }}
"""

ORDERS_UPDATED_SINCE = f"""
query OrdersUpdatedSince($first: Int!, $after: String, $query: String) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    {_PAGE_INFO}
    nodes {{{_ORDER}    }}
  }}
}}
"""

#: Orders by id (up to ORDERS_PAGE_SIZE at a time), shaped like ORDERS_UPDATED_SINCE's: a
#: lookup, not a search, so it sees a write at once. Null for an id Shopify no longer has.
ORDERS_BY_IDS = f"""
query OrdersByIds($ids: [ID!]!) {{
  nodes(ids: $ids) {{
    ... on Order {{{_ORDER}    }}
  }}
}}
"""

#: Which orders changed since a moment, and when: ids and times only (a node costs one
#: point, so STAMPS_PAGE_SIZE of them cost what two full orders do). The incremental read's
#: cheap pass (daemon.incremental); the changed ones are then read with ORDERS_BY_IDS.
ORDER_STAMPS = f"""
query OrderStamps($first: Int!, $after: String, $query: String) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    {_PAGE_INFO}
    nodes {{ id updatedAt }}
  }}
}}
"""

#: The rest of one order's line items, after the inline first page.
ORDER_LINE_ITEMS = f"""
query OrderLineItems($id: ID!, $first: Int!, $after: String) {{
  order(id: $id) {{
    id
    lineItems(first: $first, after: $after) {{
      {_PAGE_INFO}
      nodes {{{_LINE_ITEM}
      }}
    }}
  }}
}}
"""

# --- fulfilment -------------------------------------------------------------------------------

_FULFILLMENT_ORDER_LINE = "id totalQuantity remainingQuantity lineItem { id sku }"

_FULFILLMENT_ORDER = f"""
        id
        status
        assignedLocation {{ location {{ id }} }}
        lineItems(first: {FULFILLMENT_ORDER_INLINE_LINE_ITEMS}) {{
          {_PAGE_INFO}
          nodes {{ {_FULFILLMENT_ORDER_LINE} }}
        }}"""

_FULFILLMENT = "id status createdAt trackingInfo(first: 1) { company number url }"

#: One order's fulfillment orders (what is left to ship, and where from) and its
#: fulfilments (what was shipped, with tracking). A lookup by id: it sees a write at once.
ORDER_FULFILMENT = f"""
query OrderFulfilment($id: ID!) {{
  order(id: $id) {{
    id
    name
    cancelledAt
    displayFulfillmentStatus
    fulfillmentOrders(first: {ORDER_INLINE_FULFILLMENT_ORDERS}) {{
      {_PAGE_INFO}
      nodes {{{_FULFILLMENT_ORDER}
      }}
    }}
    fulfillments(first: {ORDER_INLINE_FULFILLMENTS}) {{ {_FULFILLMENT} }}
  }}
}}
"""

#: The rest of one order's fulfillment orders, after the inline first page.
ORDER_FULFILLMENT_ORDERS = f"""
query OrderFulfillmentOrders($id: ID!, $first: Int!, $after: String) {{
  order(id: $id) {{
    id
    fulfillmentOrders(first: $first, after: $after) {{
      {_PAGE_INFO}
      nodes {{{_FULFILLMENT_ORDER}
      }}
    }}
  }}
}}
"""

#: The rest of one fulfillment order's line items, after the inline first page.
FULFILLMENT_ORDER_LINE_ITEMS = f"""
query FulfillmentOrderLineItems($id: ID!, $first: Int!, $after: String) {{
  fulfillmentOrder(id: $id) {{
    id
    lineItems(first: $first, after: $after) {{
      {_PAGE_INFO}
      nodes {{ {_FULFILLMENT_ORDER_LINE} }}
    }}
  }}
}}
"""

#: Every fulfilment of an order with more than ORDER_INLINE_FULFILLMENTS of them.
ORDER_FULFILLMENTS = f"""
query OrderFulfillments($id: ID!) {{
  order(id: $id) {{
    id
    fulfillments(first: {ORDER_FULFILLMENTS_LIMIT}) {{ {_FULFILLMENT} }}
  }}
}}
"""

#: Not replay-safe: ``fulfillmentCreate`` takes no ``@idempotent`` key, so a resend after a
#: lost answer would ship twice. ``$fulfillment.lineItemsByFulfillmentOrder`` lists
#: ``{fulfillmentOrderId, fulfillmentOrderLineItems: [{id, quantity}]}``; a fulfillment
#: order without line items is fulfilled in full.
FULFILLMENT_CREATE = f"""
mutation FulfillmentCreate($fulfillment: FulfillmentInput!) {{
  fulfillmentCreate(fulfillment: $fulfillment) {{
    fulfillment {{ {_FULFILLMENT} }}
    userErrors {{ field message }}
  }}
}}
"""

#: Sets a fulfilment's tracking to absolute values: safe to resend.
FULFILLMENT_TRACKING_UPDATE = f"""
mutation FulfillmentTrackingUpdate(
  $fulfillmentId: ID!
  $trackingInfoInput: FulfillmentTrackingInput!
  $notifyCustomer: Boolean
) {{
  fulfillmentTrackingInfoUpdate(
    fulfillmentId: $fulfillmentId
    trackingInfoInput: $trackingInfoInput
    notifyCustomer: $notifyCustomer
  ) {{
    fulfillment {{ {_FULFILLMENT} }}
    userErrors {{ field message }}
  }}
}}
"""

# --- products and variants ------------------------------------------------------------------

#: A product's fields as the index and the products flow read them (its first variants
#: inline, the rest paged with PRODUCT_VARIANTS).
_PRODUCT = f"""
      id
      title
      descriptionHtml
      productType
      status
      updatedAt
      variants(first: {PRODUCT_INLINE_VARIANTS}) {{
        {_PAGE_INFO}
        nodes {{{_VARIANT}
        }}
      }}
"""

PRODUCTS_UPDATED_SINCE = f"""
query ProductsUpdatedSince($first: Int!, $after: String, $query: String) {{
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    {_PAGE_INFO}
    nodes {{{_PRODUCT}    }}
  }}
}}
"""

#: Products by id (up to PRODUCTS_PAGE_SIZE at a time), shaped like PRODUCTS_UPDATED_SINCE's.
PRODUCTS_BY_IDS = f"""
query ProductsByIds($ids: [ID!]!) {{
  nodes(ids: $ids) {{
    ... on Product {{{_PRODUCT}    }}
  }}
}}
"""

#: Which products changed since a moment, and when (the cheap pass, as ORDER_STAMPS).
PRODUCT_STAMPS = f"""
query ProductStamps($first: Int!, $after: String, $query: String) {{
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    {_PAGE_INFO}
    nodes {{ id updatedAt }}
  }}
}}
"""

#: The rest of one product's variants, after the inline first page.
PRODUCT_VARIANTS = f"""
query ProductVariants($id: ID!, $first: Int!, $after: String) {{
  product(id: $id) {{
    id
    variants(first: $first, after: $after) {{
      {_PAGE_INFO}
      nodes {{{_VARIANT}
      }}
    }}
  }}
}}
"""

#: One variant's product with all its variants, by variant id. A lookup by id, not a
#: search, so it sees a write at once (the products flow reads before and after writing).
PRODUCT_BY_VARIANT = f"""
query ProductByVariant($id: ID!) {{
  productVariant(id: $id) {{
    id
    product {{
      id
      title
      descriptionHtml
      productType
      status
      updatedAt
      variants(first: {PRODUCT_INLINE_VARIANTS}) {{
        {_PAGE_INFO}
        nodes {{{_VARIANT}
        }}
      }}
    }}
  }}
}}
"""

#: Every variant of the shop, for building the SKU index.
VARIANTS_PAGE = f"""
query VariantsPage($first: Int!, $after: String) {{
  productVariants(first: $first, after: $after) {{
    {_PAGE_INFO}
    nodes {{
      id
      sku
      product {{ id updatedAt }}
      inventoryItem {{ id tracked }}
    }}
  }}
}}
"""

#: How many variants the shop has, for the index build's progress (``limit: null``: exact).
VARIANTS_COUNT = """
query VariantsCount {
  productVariantsCount(limit: null) { count precision }
}
"""

#: ``$query`` is ``sku:'ABC-1'``; the search is an index lookup, so callers compare the
#: returned ``sku`` exactly before trusting a hit.
VARIANTS_BY_SKU = f"""
query VariantsBySku($query: String!) {{
  productVariants(first: {VARIANTS_BY_SKU_LIMIT}, query: $query) {{
    nodes {{
      id
      sku
      barcode
      price
      product {{ id updatedAt }}
      inventoryItem {{ id tracked }}
    }}
  }}
}}
"""

# --- inventory ---------------------------------------------------------------------------------

#: Up to 250 inventory item ids; ``inventoryLevel`` is null where the item is not stocked.
INVENTORY_LEVELS = """
query InventoryLevels($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      sku
      inventoryLevel(locationId: $locationId) {
        quantities(names: ["available", "on_hand"]) { name quantity }
      }
    }
  }
}
"""

#: Since 2026-04 inventory mutations must carry ``@idempotent`` and every quantity a
#: ``changeFromQuantity`` (an integer: compare-and-swap; null: opt out).
SET_STOCK = """
mutation SetStock($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup {
      id
      changes { name delta quantityAfterChange item { id } location { id } }
    }
    userErrors { code field message }
  }
}
"""

# --- product writes -----------------------------------------------------------------------------

#: Creates a product with its single initial variant; the variant and inventory item
#: ids come back so the caller can set price, SKU and stock next.
PRODUCT_CREATE = """
mutation ProductCreate($product: ProductCreateInput!) {
  productCreate(product: $product) {
    product {
      id
      updatedAt
      variants(first: 1) { nodes { id inventoryItem { id } } }
    }
    userErrors { field message }
  }
}
"""

#: ``$product`` carries the product's ``id``.
PRODUCT_UPDATE = """
mutation ProductUpdate($product: ProductUpdateInput!) {
  productUpdate(product: $product) {
    product { id updatedAt }
    userErrors { field message }
  }
}
"""

#: Price, barcode and inventory item (sku, tracked, cost, measurement) of existing variants.
VARIANTS_BULK_UPDATE = """
mutation VariantsBulkUpdate($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    product { id updatedAt }
    productVariants { id sku barcode price inventoryItem { id tracked } }
    userErrors { code field message }
  }
}
"""

# --- bulk queries --------------------------------------------------------------------------------

#: Starts a bulk query: ``$query`` is the text of one of :data:`BULK_QUERIES`. Shopify runs
#: it in the background and writes the result as JSONL, one line per connection node;
#: ``groupObjects: false`` (nested rows carry ``__parentId``; grouping is slower).
BULK_RUN_QUERY = """
mutation BulkRunQuery($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: false) {
    bulkOperation { id status createdAt }
    userErrors { code field message }
  }
}
"""

#: One bulk operation by id (null when Shopify no longer knows it).
BULK_OPERATION = """
query BulkOperation($id: ID!) {
  bulkOperation(id: $id) {
    id
    status
    errorCode
    objectCount
    rootObjectCount
    fileSize
    url
    createdAt
    completedAt
  }
}
"""

#: The location id in :data:`BULK_VARIANTS_AT_LOCATION`, replaced by :func:`bulk_variants_query`
#: (a bulk query is sent as text and takes no variables).
BULK_LOCATION_PLACEHOLDER = "gid://shopify/Location/0"

# The bulk queries below are sent as the text of BULK_RUN_QUERY's ``$query``: anonymous,
# without variables, and their connections take no ``first`` (Shopify reads them whole).

#: Every variant for the SKU index: one JSONL line per variant (no nested connection).
BULK_VARIANTS = """
query {
  productVariants {
    edges { node { id sku product { id updatedAt } inventoryItem { id } } }
  }
}
"""

#: The same with Shopify's available quantity at one location (``inventoryLevel`` is a
#: single object, so still one line per variant; null where the item is not stocked there).
BULK_VARIANTS_AT_LOCATION = f"""
query {{
  productVariants {{
    edges {{
      node {{
        id
        sku
        product {{ id updatedAt }}
        inventoryItem {{
          id
          inventoryLevel(locationId: "{BULK_LOCATION_PLACEHOLDER}") {{
            quantities(names: ["available"]) {{ name quantity }}
          }}
        }}
      }}
    }}
  }}
}}
"""


def bulk_variants_query(location_id: str | None) -> str:
    """The bulk query of the SKU index, with the available quantities at ``location_id``
    (a ``gid://shopify/Location/…``) when one is given."""
    if location_id is None:
        return BULK_VARIANTS
    return BULK_VARIANTS_AT_LOCATION.replace(json.dumps(BULK_LOCATION_PLACEHOLDER), json.dumps(location_id))


#: ``check --live``: the app's scopes, the API versions Shopify supports and the stock
#: location (``$locationId`` null: the primary one), in one cheap query; its
#: ``extensions.cost.throttleStatus`` tells the plan's bucket size and restore rate.
LIVE_CHECK = """
query LiveCheck($locationId: ID) {
  currentAppInstallation { accessScopes { handle } }
  publicApiVersions { handle supported }
  location(id: $locationId) { id name isActive }
}
"""


ALL_DOCUMENTS: dict[str, str] = {
    "BULK_RUN_QUERY": BULK_RUN_QUERY,
    "BULK_OPERATION": BULK_OPERATION,
    "BULK_VARIANTS": BULK_VARIANTS,
    "BULK_VARIANTS_AT_LOCATION": BULK_VARIANTS_AT_LOCATION,
    "VARIANTS_COUNT": VARIANTS_COUNT,
    "LOCATIONS": LOCATIONS,
    "PRIMARY_LOCATION": PRIMARY_LOCATION,
    "ORDERS_UPDATED_SINCE": ORDERS_UPDATED_SINCE,
    "ORDERS_BY_IDS": ORDERS_BY_IDS,
    "ORDER_STAMPS": ORDER_STAMPS,
    "ORDER_LINE_ITEMS": ORDER_LINE_ITEMS,
    "ORDER_FULFILMENT": ORDER_FULFILMENT,
    "ORDER_FULFILLMENT_ORDERS": ORDER_FULFILLMENT_ORDERS,
    "FULFILLMENT_ORDER_LINE_ITEMS": FULFILLMENT_ORDER_LINE_ITEMS,
    "ORDER_FULFILLMENTS": ORDER_FULFILLMENTS,
    "FULFILLMENT_CREATE": FULFILLMENT_CREATE,
    "FULFILLMENT_TRACKING_UPDATE": FULFILLMENT_TRACKING_UPDATE,
    "PRODUCTS_UPDATED_SINCE": PRODUCTS_UPDATED_SINCE,
    "PRODUCTS_BY_IDS": PRODUCTS_BY_IDS,
    "PRODUCT_STAMPS": PRODUCT_STAMPS,
    "PRODUCT_VARIANTS": PRODUCT_VARIANTS,
    "PRODUCT_BY_VARIANT": PRODUCT_BY_VARIANT,
    "VARIANTS_PAGE": VARIANTS_PAGE,
    "VARIANTS_BY_SKU": VARIANTS_BY_SKU,
    "INVENTORY_LEVELS": INVENTORY_LEVELS,
    "SET_STOCK": SET_STOCK,
    "PRODUCT_CREATE": PRODUCT_CREATE,
    "PRODUCT_UPDATE": PRODUCT_UPDATE,
    "VARIANTS_BULK_UPDATE": VARIANTS_BULK_UPDATE,
    "LIVE_CHECK": LIVE_CHECK,
}
"""Every document the daemon sends, by constant name."""

#: Documents sent as the text of a bulk query, not on their own: anonymous, and their
#: connections take no ``first`` (no single-query cost limit applies to a bulk query).
BULK_QUERIES: tuple[str, ...] = ("BULK_VARIANTS", "BULK_VARIANTS_AT_LOCATION")

#: Documents that change inventory; each must carry ``@idempotent(key:)``.
INVENTORY_MUTATIONS: tuple[str, ...] = ("SET_STOCK",)

#: The most ids each ``nodes(ids:)`` document is sent with, for the cost estimate in the tests.
ID_BATCHES: dict[str, int] = {
    "INVENTORY_LEVELS": MAX_INPUT_ITEMS,
    "ORDERS_BY_IDS": ORDERS_PAGE_SIZE,
    "PRODUCTS_BY_IDS": PRODUCTS_PAGE_SIZE,
}

#: The requested cost of one id of the ``nodes(ids:)`` documents the flows read records with
#: (tests/test_shopify_documents.py recomputes it from the schema): what the client expects
#: such a request to cost before Shopify has priced one, so that the first one after a
#: start waits for its price rather than meeting a low bucket unawares.
POINTS_PER_ID: dict[str, int] = {ORDERS_BY_IDS: 166, PRODUCTS_BY_IDS: 103}

#: The ``first`` each paged document is sent with, for the cost estimate in the tests.
PAGE_SIZES: dict[str, int] = {
    "LOCATIONS": LOCATIONS_PAGE_SIZE,
    "ORDERS_UPDATED_SINCE": ORDERS_PAGE_SIZE,
    "ORDER_LINE_ITEMS": ORDER_LINE_ITEMS_PAGE_SIZE,
    "ORDER_FULFILLMENT_ORDERS": ORDER_FULFILLMENT_ORDERS_PAGE_SIZE,
    "FULFILLMENT_ORDER_LINE_ITEMS": FULFILLMENT_ORDER_LINE_ITEMS_PAGE_SIZE,
    "PRODUCTS_UPDATED_SINCE": PRODUCTS_PAGE_SIZE,
    "ORDER_STAMPS": STAMPS_PAGE_SIZE,
    "PRODUCT_STAMPS": STAMPS_PAGE_SIZE,
    "PRODUCT_VARIANTS": PRODUCT_VARIANTS_PAGE_SIZE,
    "VARIANTS_PAGE": VARIANTS_PAGE_SIZE,
}
