"""The scheduler: one loop per flow in an anyio task group, signals, systemd notify.

Each flow loop runs a cycle, then waits ``SYNC_POLL_SECONDS`` (or, after a failure,
an exponential backoff). It logs on state change only — "flow failed" once, then
"flow recovered" once — and keeps ``last_success``/``last_error`` for health and
metrics. SIGTERM or SIGINT asks every loop to stop after the write in flight; what
does not finish within the grace period is cancelled (every write is a transaction,
so a cancelled one leaves nothing half-done).

The API clients wait between attempts through :meth:`Shutdown.backoff`: a flow whose
client is backing off shows as retrying (``warn`` on ``/healthz``) at once, and a stop
ends that wait and the cycle it belongs to without waiting out the grace period —
the failed request is not in flight any more, and its page was never committed.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import anyio
import anyio.abc
import structlog

from daemon import sdnotify
from daemon.errors import FatalError, SyncError
from daemon.logs import scrub
from daemon.metrics import Metrics
from daemon.store import Store

log = structlog.get_logger("daemon.runner")

#: the longest wait between attempts of a failing flow
MAX_BACKOFF = 900.0
#: how long a stopping daemon lets the write in flight finish
STOP_GRACE = 8.0
#: a client's retry counts as "failing right now" this long after its backoff wait ends
#: (the retried request is then on its way; when it succeeds, the warning lapses)
RETRY_GRACE = 5.0


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
        cycle = _current_cycle.get()
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


class Flow(Protocol):
    """One sync flow: read → decide → write → commit, one cycle per call."""

    name: str

    async def run_once(self) -> int:
        """Run one cycle; return how many records were applied."""
        ...


@dataclass
class FlowState:
    """What the runner knows of a flow, for health, metrics and logs."""

    name: str
    started: float = field(default_factory=time.time)
    status: str = "starting"  # starting | ok | failing | fatal | disabled
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    failures: int = 0
    parked: int = 0
    #: when the cycle now running started (None between cycles)
    attempting_since: float | None = None
    #: when a client of the running cycle first backed off after a failed request
    retrying_since: float | None = None
    #: until when that counts as failing right now (the last backoff's end plus a grace)
    retrying_until: float | None = None

    def lag(self, now: float | None = None) -> float:
        """Seconds since the last successful cycle (or since start, before the first)."""
        now = time.time() if now is None else now
        return max(0.0, now - (self.last_success or self.started))


@dataclass
class _Cycle:
    """The flow cycle a task is running, for :meth:`Shutdown.backoff`."""

    state: FlowState
    scope: anyio.CancelScope


_current_cycle: ContextVar[_Cycle | None] = ContextVar("current_cycle", default=None)


async def handle_signals(
    shutdown: Shutdown, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Turn the first SIGTERM/SIGINT into ``STOPPING=1`` and a graceful stop.

    Started (``task_status``) once the handlers are installed, or once it is clear they
    cannot be (not the main thread: the demo). After the first signal the default
    handlers are back, so a second one stops the process at once.
    """
    with contextlib.ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT))
        except (NotImplementedError, ValueError, RuntimeError):  # not the main thread (the demo)
            task_status.started()
            return
        task_status.started()
        async for signum in signals:
            log.info("stopping", signal=signal.Signals(signum).name)
            sdnotify.notify("STOPPING=1", "STATUS=stopping")
            shutdown.request()
            return


def backoff_delay(failures: int, base: float, rand: Callable[[], float] = random.random) -> float:
    """Wait before attempt ``failures + 1``: exponential from ``base``, capped, with jitter."""
    exp = min(MAX_BACKOFF, max(1.0, base) * math.pow(2, max(0, failures - 1)))
    return exp * (0.5 + rand() / 2)


class Runner:
    """Runs the flows until shut down; feeds the systemd watchdog."""

    def __init__(
        self,
        flows: Sequence[Flow],
        *,
        store: Store,
        metrics: Metrics,
        poll_seconds: float,
        shutdown: Shutdown | None = None,
        sleep_until_stop: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Signals are the caller's: :func:`handle_signals` turns them into ``shutdown``."""
        self.flows = list(flows)
        self.store = store
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.shutdown = shutdown or Shutdown()
        self.states = {f.name: FlowState(f.name) for f in self.flows}
        self.heartbeat = time.monotonic()
        self._sleep = sleep_until_stop or self._wait_or_stop
        self._cycle_done = anyio.Event()

    async def _wait_or_stop(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self.shutdown.event.wait()

    async def wait_for_cycle(self) -> None:
        """Return after the next completed cycle of any flow (for tests and the demo)."""
        await self._cycle_done.wait()

    async def run(self) -> None:
        """Run every flow loop until :attr:`shutdown` is requested, then stop gracefully."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._tick)
            loops = anyio.create_task_group()
            async with loops:
                for flow in self.flows:
                    loops.start_soon(self._loop, flow)
                tg.start_soon(self._stop_loops_after_grace, loops)
            tg.cancel_scope.cancel()

    async def _stop_loops_after_grace(self, loops: anyio.abc.TaskGroup) -> None:
        await self.shutdown.event.wait()
        await anyio.sleep(STOP_GRACE)
        log.warning("stop grace period over; cancelling unfinished cycles", grace_seconds=STOP_GRACE)
        loops.cancel_scope.cancel()

    async def _tick(self) -> None:
        # the scheduler's own heartbeat; the watchdog is fed only while it beats
        interval = sdnotify.watchdog_interval()
        # beat twice per ping interval: a sleep that ends a hair early must not skip a ping
        every = min(interval / 2, 1.0) if interval else 1.0
        last_ping = 0.0
        while True:
            self.heartbeat = time.monotonic()
            if interval and self.heartbeat - last_ping >= interval:
                sdnotify.notify("WATCHDOG=1")
                last_ping = self.heartbeat
            await anyio.sleep(every)

    def status_line(self) -> str:
        """One line for systemd's ``STATUS=``."""
        parts = [f"{s.name} {s.status}" for s in self.states.values()]
        return "; ".join(parts)

    async def _loop(self, flow: Flow) -> None:
        # bound in the context, so that the clients' lines inside the cycle carry it too
        with structlog.contextvars.bound_contextvars(flow=flow.name):
            await self._flow_loop(flow)

    async def _flow_loop(self, flow: Flow) -> None:
        state = self.states[flow.name]
        bound = log.bind(flow=flow.name)
        while not self.shutdown.requested:
            state.last_attempt = state.attempting_since = time.time()
            with anyio.CancelScope() as scope:
                token = _current_cycle.set(_Cycle(state, scope))
                try:
                    applied = await flow.run_once()
                except SyncError as exc:
                    self._failed(state, bound, exc, exc.kind, fatal=isinstance(exc, FatalError))
                except Exception as exc:
                    # a bug of ours: keep the other flows going, say it once with the traceback
                    self._failed(state, bound, exc, "bug", fatal=False, traceback=True)
                else:
                    self._succeeded(state, bound, applied)
                finally:
                    _current_cycle.reset(token)
                    state.attempting_since = state.retrying_since = state.retrying_until = None
            if scope.cancelled_caught:
                bound.info("cycle stopped during a retry wait")
                break
            await self._persist(state)
            self._cycle_done.set()
            self._cycle_done = anyio.Event()
            if self.shutdown.requested:
                break
            delay = (
                self.poll_seconds if state.failures == 0 else backoff_delay(state.failures, self.poll_seconds)
            )
            await self._sleep(delay)

    async def _persist(self, state: FlowState) -> None:
        try:
            await self.store.record_outcome(
                state.name, ok=state.failures == 0, error=None if state.failures == 0 else state.last_error
            )
            state.parked = (await self.store.parked_counts()).get(state.name, 0)
            self.metrics.parked.labels(flow=state.name).set(state.parked)
        except Exception:
            log.exception("could not record flow outcome", flow=state.name)

    def _succeeded(self, state: FlowState, bound: structlog.stdlib.BoundLogger, applied: int) -> None:
        previous = state.status
        now = time.time()
        state.status, state.failures, state.last_success = "ok", 0, now
        self.metrics.last_success.labels(flow=state.name).set(now)
        self.metrics.up.labels(flow=state.name).set(1)
        self.metrics.lag.labels(flow=state.name).set(0)
        if applied:
            self.metrics.applied.labels(flow=state.name).inc(applied)
        if previous in ("failing", "fatal"):
            bound.info("flow recovered", after_error=state.last_error)
            sdnotify.notify(f"STATUS={self.status_line()}")
        elif previous == "starting":
            sdnotify.notify(f"STATUS={self.status_line()}")
        if applied:
            bound.info("cycle applied records", applied=applied)

    def _failed(
        self,
        state: FlowState,
        bound: structlog.stdlib.BoundLogger,
        exc: BaseException,
        kind: str,
        *,
        fatal: bool,
        traceback: bool = False,
    ) -> None:
        # an API may echo what it was sent: no token goes on to health, metrics or the DB
        message = scrub(str(exc) or type(exc).__name__)
        changed = state.status not in ("failing", "fatal") or state.last_error_kind != kind
        state.status = "fatal" if fatal else "failing"
        state.failures += 1
        state.last_error, state.last_error_kind = message, kind
        self.metrics.errors.labels(flow=state.name, kind=kind).inc()
        self.metrics.up.labels(flow=state.name).set(0)
        self.metrics.lag.labels(flow=state.name).set(state.lag())
        if changed:
            if traceback:
                bound.exception("flow failed", kind=kind, error=message)
            else:
                bound.error("flow failed", kind=kind, error=message)
            sdnotify.notify(f"STATUS={self.status_line()}")
        else:
            bound.debug("flow still failing", kind=kind, error=message, attempts=state.failures)


def utc_from_timestamp(ts: float | None) -> str | None:
    """An ISO 8601 UTC string for a Unix time (None stays None)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts is not None else None
