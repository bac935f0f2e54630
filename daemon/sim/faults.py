"""Fault knobs shared by the simulators.

A :class:`Faults` decides, per request, whether the simulator should answer with a
server error, a throttle, a truncated body, or normally, and how long to wait first.
Both simulators use the same knobs so a test or the demo can turn up the same kind
of trouble on either side with one object. Draws come from a seeded
:class:`random.Random`, so a failing run can be replayed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["error", "throttle", "truncate"]


@dataclass
class Faults:
    """Fractions of requests that go wrong, and in which way.

    ``error_rate``, ``throttle_rate`` and ``truncate_rate`` are probabilities in
    ``[0, 1]``; together they should not exceed 1 (any excess simply makes the later
    kinds rarer). ``delay`` is added to every response, in seconds.
    """

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    truncate_rate: float = 0.0
    delay: float = 0.0
    seed: int | None = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "truncate_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, got {self.delay!r}")
        self._rng = random.Random(self.seed)

    @property
    def active(self) -> bool:
        """True when any fault can be drawn (lets callers skip the draw entirely)."""
        return bool(self.error_rate or self.throttle_rate or self.truncate_rate)

    def draw(self) -> Fault | None:
        """Decide the fate of one request: ``"error"``, ``"throttle"``, ``"truncate"`` or None."""
        if not self.active:
            # no draw at all, so turning faults on later does not shift earlier sequences
            return None
        roll = self._rng.random()
        if roll < self.error_rate:
            return "error"
        roll -= self.error_rate
        if roll < self.throttle_rate:
            return "throttle"
        roll -= self.throttle_rate
        if roll < self.truncate_rate:
            return "truncate"
        return None

    def reseed(self, seed: int | None) -> None:
        """Restart the draw sequence from ``seed``."""
        self.seed = seed
        self._rng = random.Random(seed)


def truncate_body(body: bytes) -> bytes:
    """Cut a response body in half, as a dropped connection mid-transfer would."""
    return body[: len(body) // 2]
