"""The one retry policy both API clients use, and how a flow settles an ambiguous write.

A client sends a request through :meth:`Retrying.run` with an ``attempt``: a coroutine
that sends once and either returns, or raises what went wrong in the vocabulary below.
The policy decides what happens next:

* :class:`AttemptFailed` (a 5xx, a timeout, a reset or refused connection, an unreadable
  body) is retried after a full-jitter exponential backoff (:meth:`RetryPolicy.backoff`),
  at most ``max_attempts`` sends, then its error is raised (a
  :class:`~daemon.errors.RetriableError`). The attempt says whether the request was
  possibly ``delivered``: a request that may have arrived is only sent again when it is
  *replay-safe* (a read, an update setting absolute values, an ``@idempotent`` mutation);
  a non-idempotent write raises :class:`~daemon.errors.AmbiguousWrite` at once, and the
  flow finds out with a read whether it landed (:func:`settle_write`).
* :class:`~daemon.errors.ThrottledError` is waited out — ``retry_after`` seconds when the
  server said so (:func:`retry_after` reads the header), else the same backoff — and the
  request sent again. Throttling is expected during a long sync, so it does not use up
  the failure budget; a separate bound (``max_throttle_waits`` in a row) stops a client
  that is never let through, and a wait longer than ``max_inline_throttle_wait`` is not
  slept through inside one call: ThrottledError is raised with ``retry_after``.
* :class:`SendAgain` sends again at once, counting nothing (Shopify renews a revoked
  token this way; the attempt bounds it).
* Anything else (auth, validation, not found, fatal) is raised as it is.

The runner's backoff between cycles of a failing flow is here too
(:func:`backoff_delay`): one module decides every wait after a failure.

What differs between the clients stays in them: Rackbeat's request budget (a 429 pauses
every caller, the wait happens in the budget: ``hold``) and Shopify's cost throttle (the
bucket arithmetic decides ``retry_after``; the wait is a plain sleep: ``wait``).

The clock, sleep and jitter are injected: ``backoff_sleep`` is the wait before a retry
(the daemon passes :meth:`daemon.shutdown.Shutdown.backoff`, which marks the flow as
retrying for ``/healthz`` and ends on stop) and ``random`` the jitter in [0, 1).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import structlog

from daemon.errors import AmbiguousWrite, RetriableError, ThrottledError

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "MAX_CYCLE_BACKOFF",
    "MAX_INLINE_THROTTLE_WAIT",
    "SETTLE_ROUNDS",
    "AttemptFailed",
    "RetryPolicy",
    "Retrying",
    "SendAgain",
    "backoff_delay",
    "retry_after",
    "settle_write",
]

log = structlog.get_logger("daemon.retry")

_T = TypeVar("_T")

#: backoff before retry n is uniform in [0, min(cap, base × 2^(n-1))] ("full jitter")
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
#: a longer throttle wait is not slept through inside one call (ThrottledError instead)
MAX_INLINE_THROTTLE_WAIT = 120.0
#: sends of one ambiguous write, each followed by one read-back, before it counts as failed
SETTLE_ROUNDS = 3
#: the longest wait between cycles of a failing flow (the runner's backoff)
MAX_CYCLE_BACKOFF = 900.0


class AttemptFailed(Exception):
    """One send failed in a way worth retrying.

    ``error`` is what the caller sees when the retries run out; ``delivered`` says whether
    the server may have acted on the request (False only when it certainly never left:
    connection refused, connect timeout, no connection from the pool).
    """

    def __init__(self, error: RetriableError, *, delivered: bool, cause: BaseException | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.delivered = delivered
        self.cause = cause


class SendAgain(Exception):  # a signal to the loop, not an error
    """Send again at once without counting a failure (bounded by the attempt itself)."""


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None when absent, negative,
    not finite, or an HTTP date (the backoff, or the client's own throttle arithmetic,
    decides then)."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """The numbers of the policy; see the module docstring."""

    #: sends of one request, first one included, before a failure is raised
    max_attempts: int = 6
    #: throttled answers in a row for one request before ThrottledError is raised
    max_throttle_waits: int = 20
    #: see :data:`MAX_INLINE_THROTTLE_WAIT`
    max_inline_throttle_wait: float = MAX_INLINE_THROTTLE_WAIT
    backoff_base: float = BACKOFF_BASE_SECONDS
    backoff_cap: float = BACKOFF_CAP_SECONDS

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_throttle_waits < 1:
            raise ValueError("max_attempts and max_throttle_waits must be at least 1")

    def backoff(self, failures: int, random: Callable[[], float]) -> float:
        """Full-jitter exponential backoff before retry number ``failures`` (1, 2 …)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (failures - 1))
        return random() * ceiling


def backoff_delay(failures: int, base: float, rand: Callable[[], float] = random.random) -> float:
    """The runner's wait before a failing flow's cycle number ``failures + 1``: exponential
    from ``base`` (the poll interval), capped at :data:`MAX_CYCLE_BACKOFF`, with jitter in
    its upper half (a failing flow never comes round sooner than half its backoff)."""
    exp = min(MAX_CYCLE_BACKOFF, max(1.0, base) * math.pow(2, max(0, failures - 1)))
    return exp * (0.5 + rand() / 2)


async def _no_wait(seconds: float) -> None:
    return None


class Retrying:
    """Runs one client's attempts under a :class:`RetryPolicy` and counts what happened.

    ``service`` prefixes the log events (``rackbeat.retry``, ``shopify.throttled`` …).
    ``hold(seconds)`` hears every throttle wait, including one too long to sleep through
    (Rackbeat pauses all callers so); ``wait(seconds)`` is the wait before resending a
    throttled request (none by default: ``hold`` made the client wait elsewhere).
    Counters (only ever increased): ``retries`` re-sends after a failure, ``throttled``
    throttled answers.
    """

    def __init__(
        self,
        service: str,
        policy: RetryPolicy,
        *,
        backoff_sleep: Callable[[float], Awaitable[None]],
        random: Callable[[], float],
        wait: Callable[[float], Awaitable[None]] = _no_wait,
        hold: Callable[[float], None] | None = None,
    ) -> None:
        self.service = service
        self.policy = policy
        self._backoff_sleep = backoff_sleep
        self._random = random
        self._wait = wait
        self._hold = hold
        self.retries = 0
        self.throttled = 0

    def backoff(self, failures: int) -> float:
        """The policy's backoff before retry ``failures``, with this client's jitter."""
        return self.policy.backoff(failures, self._random)

    async def pause(self, failures: int) -> None:
        """Count a retry and wait the backoff before retry ``failures``: for a caller that
        sends again on its own grounds (Shopify's "same idempotency key still running")."""
        self.retries += 1
        await self._backoff_sleep(self.backoff(failures))

    async def run(self, what: str, attempt: Callable[[], Awaitable[_T]], *, replay_safe: bool) -> _T:
        """Run ``attempt`` until it returns, retrying failures and waiting out throttling.

        ``what`` names the request in logs and errors. ``replay_safe`` says whether a
        request that may have arrived can be sent again; when it cannot,
        :class:`~daemon.errors.AmbiguousWrite` is raised instead.
        """
        policy = self.policy
        failures = 0
        throttles = 0
        while True:
            try:
                return await attempt()
            except SendAgain:
                continue
            except ThrottledError as exc:
                throttles += 1
                self.throttled += 1
                wait = exc.retry_after if exc.retry_after is not None else self.backoff(throttles)
                if self._hold is not None:
                    self._hold(wait)
                if wait > policy.max_inline_throttle_wait or throttles >= policy.max_throttle_waits:
                    raise ThrottledError(str(exc), retry_after=wait) from None
                log.debug(f"{self.service}.throttled", request=what, attempt=throttles, wait=round(wait, 2))
                await self._wait(wait)
            except AttemptFailed as failed:
                failures += 1
                if failed.delivered and not replay_safe:
                    raise AmbiguousWrite(what, failed.error) from failed.cause
                if failures >= policy.max_attempts:
                    raise failed.error from failed.cause
                self.retries += 1
                delay = self.backoff(failures)
                log.debug(
                    f"{self.service}.retry",
                    request=what,
                    error=str(failed.error),
                    kind=failed.error.kind,
                    attempt=failures,
                    retry_in=round(delay, 2),
                )
                await self._backoff_sleep(delay)


async def settle_write(
    write: Callable[[], Awaitable[_T]],
    read_back: Callable[[], Awaitable[_T | None]],
    *,
    what: str,
    rounds: int = SETTLE_ROUNDS,
) -> _T:
    """Run a non-idempotent ``write`` exactly once in effect, even when answers get lost.

    When the write raises :class:`~daemon.errors.AmbiguousWrite` (it may or may not have
    been applied), ``read_back`` looks for its effect: what it returns (the created record,
    an order found by its reference …) is the write's result; None means it did not land,
    and the write is sent again. At most ``rounds`` writes, each followed by one read;
    then the last AmbiguousWrite is raised (a retriable error: the caller fails as for
    any outage). An error of the read itself (the API really is down; the client has
    already retried the read) propagates.

    ``read_back`` must be conclusive: None has to mean "not applied", never "not visible
    yet" (a search index that lags cannot serve here).
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    for round_ in range(1, rounds + 1):
        try:
            return await write()
        except AmbiguousWrite as exc:
            found = await read_back()
            log.info(
                "write.ambiguous",
                request=what,
                error=str(exc.error),
                attempt=round_,
                outcome="applied" if found is not None else "not_applied",
            )
            if found is not None:
                return found
            if round_ == rounds:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
