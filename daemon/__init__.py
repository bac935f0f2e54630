"""rackbeat-shopify: keeps a Shopify shop and a Rackbeat account in sync by polling."""

__version__ = "0.1.0"
