"""Fault knobs shared by the simulators.

A :class:`Faults` decides, per request, whether the simulator should answer with a
server error, a throttle, a truncated body, or normally, and how long to wait first.
Both simulators use the same knobs so a test or the demo can turn up the same kind
of trouble on either side with one object. Draws come from a seeded
:class:`random.Random`, so a failing run can be replayed.

Throttling comes in bursts, as it does when another app shares the shop's bucket: a
throttled request is followed by more throttled ones (``throttle_burst`` of them on
average, geometrically distributed), while ``throttle_rate`` stays the long-run fraction
of throttled requests and ``error_rate``/``truncate_rate`` the fraction of *all*
requests. A burst is either of HTTP 429s (``"throttle"``) or of cost throttles
(``"cost_throttle"``: the simulated Shopify drains its bucket and answers ``THROTTLED``
with HTTP 200 and the real ``throttleStatus``); ``cost_throttle_share`` is the fraction of
bursts of the second kind. Rackbeat has no cost bucket and answers both kinds with 429.

:class:`LostAnswers` is the other kind of trouble, aimed rather than drawn: it wraps a
simulator's handler and loses the answers of the requests it picks, after or before the
simulator applied them, so that tests and benches can check that a write whose answer
was lost is settled, never repeated.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:  # the simulators import this module
    from daemon.sim.rackbeat import RackbeatSimulator
    from daemon.sim.shopify import ShopifySimulator

Fault = Literal["error", "throttle", "cost_throttle", "truncate"]

#: the knobs the simulators' control API accepts (``POST /_sim/faults``)
KNOBS = (
    "error_rate",
    "throttle_rate",
    "truncate_rate",
    "delay",
    "throttle_burst",
    "cost_throttle_share",
    "seed",
)


@dataclass
class Faults:
    """Fractions of requests that go wrong, and in which way.

    ``error_rate``, ``throttle_rate`` and ``truncate_rate`` are long-run fractions of
    requests in ``[0, 1]``; when together they cannot be met (their sum close to 1 with
    long bursts) the later kinds simply come rarer. ``delay`` is added to every response,
    in seconds. ``throttle_burst`` (≥ 1) is the mean number of throttled requests in a row;
    ``cost_throttle_share`` in ``[0, 1]`` the fraction of throttle bursts that are cost
    throttles rather than 429s.
    """

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    truncate_rate: float = 0.0
    delay: float = 0.0
    seed: int | None = 0
    throttle_burst: float = 1.0
    cost_throttle_share: float = 0.0
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _burst: Fault | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "truncate_rate", "cost_throttle_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, got {self.delay!r}")
        if self.throttle_burst < 1:
            raise ValueError(f"throttle_burst must be at least 1, got {self.throttle_burst!r}")
        self._rng = random.Random(self.seed)
        # A request outside a burst starts one with probability `start`; each burst adds
        # on average (burst − 1) throttled requests after its first. Solving
        # throttle_rate = start·burst / (1 + start·(burst − 1)) for `start`, and scaling the
        # other kinds by the same (1 + start·(burst − 1)), keeps every rate a fraction of
        # all requests.
        mean = self.throttle_burst
        rate = self.throttle_rate
        self._start = rate / (mean * (1.0 - rate) + rate) if rate < 1.0 else 1.0
        stretch = 1.0 + self._start * (mean - 1.0)
        self._error = self.error_rate * stretch
        self._truncate = self.truncate_rate * stretch
        self._continue = 1.0 - 1.0 / mean

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Faults:
        """Knobs from a JSON object (the control API); unknown keys raise ValueError."""
        unknown = set(payload) - set(KNOBS)
        if unknown:
            raise ValueError(f"unknown fault knobs {sorted(unknown)}; known: {', '.join(KNOBS)}")
        values: dict[str, Any] = {}
        for key, value in payload.items():
            if key == "seed":
                values[key] = None if value is None else int(value)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
            else:
                values[key] = float(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The knobs as a JSON object (what :meth:`from_json` reads)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    @property
    def active(self) -> bool:
        """True when any fault can be drawn (lets callers skip the draw entirely)."""
        return bool(self.error_rate or self.throttle_rate or self.truncate_rate)

    def draw(self) -> Fault | None:
        """Decide the fate of one request: a :data:`Fault` or None."""
        if not self.active:
            # no draw at all, so turning faults on later does not shift earlier sequences
            return None
        if self._burst is not None:
            if self._rng.random() < self._continue:
                return self._burst
            self._burst = None
        roll = self._rng.random()
        if roll < self._error:
            return "error"
        roll -= self._error
        if roll < self._start:
            kind: Fault = "throttle"
            if self.cost_throttle_share and self._rng.random() < self.cost_throttle_share:
                kind = "cost_throttle"
            if self._continue > 0:
                self._burst = kind
            return kind
        roll -= self._start
        if roll < self._truncate:
            return "truncate"
        return None

    def reseed(self, seed: int | None) -> None:
        """Restart the draw sequence from ``seed``."""
        self.seed = seed
        self._rng = random.Random(seed)
        self._burst = None


def truncate_body(body: bytes) -> bytes:
    """Cut a response body in half, as a dropped connection mid-transfer would."""
    return body[: len(body) // 2]


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class LostAnswers:
    """Cuts off the answers of every ``every``-th request that ``match`` picks, in turn:
    a truncated body, a reset connection and a timeout after the write landed (the
    simulator has it, the daemon does not know), and a timeout before it landed (not
    applied at all). Wraps ``handle``; :meth:`on` puts it in front of a simulator."""

    KINDS: tuple[str, ...] = ("truncated", "reset", "timeout", "not applied")

    def __init__(self, handle: Handler, match: Callable[[httpx.Request], bool], every: int = 1) -> None:
        self._handle = handle
        self._match = match
        #: every how many matching requests an answer is lost (0: none any more)
        self.lost_every = every
        self._seen = 0
        #: the kind of each answer cut off, in order
        self.lost: list[str] = []
        #: refuse every request (the API is down)
        self.down = False

    @classmethod
    def on(
        cls,
        sim: RackbeatSimulator | ShopifySimulator,
        match: Callable[[httpx.Request], bool],
        every: int = 1,
    ) -> LostAnswers:
        """Route ``sim``'s requests through a new :class:`LostAnswers` (a harness that calls
        ``sim.handle`` then reaches it)."""
        lossy = cls(sim.handle, match, every)
        sim.handle = lossy  # type: ignore[method-assign]  # the harness routes through it
        return lossy

    def reaching(self) -> list[httpx.Request]:
        """The matching requests that reach the simulator from now on."""
        reached: list[httpx.Request] = []
        inner = self._handle

        async def counting(request: httpx.Request) -> httpx.Response:
            if self._match(request):
                reached.append(request)
            return await inner(request)

        self._handle = counting
        return reached

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("the API is down", request=request)
        if not self._match(request):
            return await self._handle(request)
        self._seen += 1
        if not self.lost_every or (self._seen - 1) % self.lost_every:
            return await self._handle(request)
        kind = self.KINDS[len(self.lost) % len(self.KINDS)]
        self.lost.append(kind)
        if kind == "not applied":
            raise httpx.ReadTimeout("no answer", request=request)
        response = await self._handle(request)
        if kind == "truncated":
            return httpx.Response(
                response.status_code,
                content=truncate_body(response.content),
                headers={"content-type": "application/json"},
            )
        if kind == "reset":
            raise httpx.ReadError("connection reset by peer", request=request)
        raise httpx.ReadTimeout("timed out", request=request)
