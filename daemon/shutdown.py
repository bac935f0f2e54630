"""The daemon's stop signal, and the clients' wait between attempts.

Small on purpose: the flows and the API clients need it, and none of them should
import the scheduler (:mod:`daemon.runner`) to get it.

The API clients wait between attempts through :meth:`Shutdown.backoff`: a flow whose
client is backing off shows as retrying (``warn`` on ``/healthz``) at once, and a stop
ends that wait and the cycle it belongs to without waiting out the grace period —
the failed request is not in flight any more, and its page was never committed.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

import anyio

#: a client's retry counts as "failing right now" this long after its backoff wait ends
#: (the retried request is then on its way; when it succeeds, the warning lapses)
RETRY_GRACE = 5.0


class RetryMarks(Protocol):
    """What a backoff records on the running cycle's flow (the runner's ``FlowState``)."""

    retrying_since: float | None
    retrying_until: float | None


@dataclass
class RunningCycle:
    """The flow cycle a task is running: set by the runner around each cycle."""

    state: RetryMarks
    scope: anyio.CancelScope
    #: what the flow said of this cycle (:func:`note_cycle`), for the runner's ``flow.cycle`` line
    counts: dict[str, int | bool] = field(default_factory=dict)
    #: why the flow holds its work back although the cycle succeeded (:func:`note_held`)
    held: str | None = None


#: the cycle the current task runs (None outside the runner's flow loops)
current_cycle: ContextVar[RunningCycle | None] = ContextVar("current_cycle", default=None)


def note_cycle(**counts: int | bool) -> None:
    """Add a flow's own figures (``pushed=12, waiting=0, full=True``) to the one
    ``flow.cycle`` line the runner writes for the cycle now running; nothing outside one."""
    cycle = current_cycle.get()
    if cycle is not None:
        cycle.counts.update(counts)


def note_held(reason: str) -> None:
    """The cycle now running succeeded but the flow holds its work back for ``reason``
    (orders while Rackbeat's reference search is refuted): ``/healthz`` fails with it,
    while flows waiting on this one's cycles go on. Nothing outside a cycle."""
    cycle = current_cycle.get()
    if cycle is not None:
        cycle.held = reason


class Shutdown:
    """Set once when the daemon should stop; flows check it between pages."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def request(self) -> None:
        """Ask everything to stop after the work in flight."""
        self.event.set()

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self.event.is_set()

    async def backoff(self, seconds: float) -> None:
        """The API clients' wait before retrying a failed request.

        Inside a flow cycle it marks the flow as retrying (for ``/healthz``) and, when a
        stop is requested before the wait is over, cancels that cycle: nothing is in
        flight during a backoff, and the page being worked on was not committed.
        Outside a cycle a stop just ends the wait early.
        """
        cycle = current_cycle.get()
        if cycle is not None:
            now = time.time()
            if cycle.state.retrying_since is None:
                cycle.state.retrying_since = now
            cycle.state.retrying_until = now + seconds + RETRY_GRACE
        with anyio.move_on_after(seconds):
            await self.event.wait()
        if self.requested and cycle is not None:
            cycle.scope.cancel()
            await anyio.lowlevel.checkpoint()  # raises the cancellation here
