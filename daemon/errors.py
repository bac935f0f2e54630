"""Errors, grouped by what the caller should do about them.

Every exception the daemon raises on purpose derives from :class:`SyncError`.
The three branches tell a flow what to do next::

    SyncError
    ├── FatalError              stop the flow, report it failing, do not retry by itself
    │   ├── ConfigError         a setting is wrong or missing (names the variable)
    │   └── AuthError           credentials refused (401/403, token grant failed)
    ├── RetriableError          back off and try the same thing again later
    │   ├── ThrottledError      429 / THROTTLED: wait ``retry_after`` seconds
    │   ├── TransportError      timeout, connection refused, 5xx
    │   ├── MalformedResponse   truncated JSON, an HTML error page, a missing key
    │   ├── AmbiguousWrite      a non-idempotent write may or may not have been applied
    │   │                       (its answer was lost): read back, then write again or adopt
    │   └── WaitingError        another flow's work this one needs failed (its error is its own)
    └── RecordError             this record cannot be applied: park it, go on with the rest
        ├── ValidationError     Rackbeat 422 / Shopify ``userErrors`` (carries the field messages)
        └── NotFoundError       the record asked for does not exist (404)

An :class:`AmbiguousWrite` is retriable so that a caller that does not handle it fails
as for any outage; the flows handle it per record with :func:`daemon.retry.settle_write`.

``GraphQLError`` (top-level ``errors`` of a Shopify response that are neither
throttling nor auth) is a :class:`FatalError`: it means the daemon sent a document
the API does not accept, which no retry will fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class SyncError(Exception):
    """Base of every error the daemon raises on purpose."""

    #: short machine-readable kind, used as a metrics label and a parked reason
    kind: str = "error"


class FatalError(SyncError):
    """Stop the flow and say so; retrying will not help."""

    kind = "fatal"


class ConfigError(FatalError):
    """A setting is wrong or missing."""

    kind = "config"


class AuthError(FatalError):
    """The API refused our credentials."""

    kind = "auth"


class GraphQLError(FatalError):
    """Shopify rejected the document itself (top-level ``errors``)."""

    kind = "graphql"

    def __init__(self, message: str, errors: Sequence[Mapping[str, object]] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


class RetriableError(SyncError):
    """A passing condition: back off and try again."""

    kind = "retriable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: seconds the server asked us to wait, when it said so
        self.retry_after = retry_after


class ThrottledError(RetriableError):
    """Rate limited (HTTP 429 or Shopify's THROTTLED)."""

    kind = "throttled"


class TransportError(RetriableError):
    """Timeout, connection failure or a 5xx answer."""

    kind = "transport"


class MalformedResponse(RetriableError):
    """The body could not be understood (truncated JSON, HTML error page, missing key)."""

    kind = "malformed"


class AmbiguousWrite(RetriableError):
    """A write that must not be replayed (create a customer, a draft, a product; book;
    create a shipment) failed after it may have arrived: a timeout, a reset connection, a
    5xx or a truncated answer. Whether it was applied is unknown until it is read back.

    ``error`` is the failure itself (a TransportError or MalformedResponse).
    """

    kind = "ambiguous"

    def __init__(self, what: str, error: RetriableError) -> None:
        super().__init__(f"{what}: outcome unknown, it may or may not have been applied ({error})")
        self.error = error


class WaitingError(RetriableError):
    """This flow needs another flow's work, which failed; that flow reports its own error."""

    kind = "waiting"


class RecordError(SyncError):
    """One record cannot be applied; park it with ``reason`` and go on."""

    kind = "record"
    #: reason code stored with a parked record
    reason: str = "RECORD_ERROR"

    def __init__(self, message: str, *, reason: str | None = None, subject: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        #: what the reason is about when that can clear on its own (the SKU of UNKNOWN_SKU):
        #: stored with the parked record, so that it wakes when that thing appears
        self.subject = subject


class ValidationError(RecordError):
    """The API rejected a record (Rackbeat 422, Shopify ``userErrors``)."""

    kind = "validation"
    reason = "REJECTED"

    def __init__(
        self,
        message: str,
        *,
        fields: Mapping[str, Sequence[str]] | None = None,
        codes: Sequence[str] = (),
        reason: str | None = None,
        subject: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason, subject=subject)
        #: field name → messages, as the API gave them
        self.fields: dict[str, list[str]] = {k: list(v) for k, v in (fields or {}).items()}
        #: machine codes (Shopify ``userErrors[].code``)
        self.codes = list(codes)

    def __str__(self) -> str:
        base = super().__str__()
        if not self.fields:
            return base
        details = "; ".join(f"{k}: {' '.join(v)}" for k, v in self.fields.items())
        return f"{base} ({details})"


class NotFoundError(RecordError):
    """The record does not exist on the other side."""

    kind = "not_found"
    reason = "NOT_FOUND"
