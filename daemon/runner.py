"""The scheduler: one loop per flow in an anyio task group, signals, systemd notify.

Every cycle of every flow goes through :meth:`Runner._flow_loop` — scheduled after
``SYNC_POLL_SECONDS`` (or, after a failure, an exponential backoff), or asked for by
another flow through :class:`CycleRequests` (the stock flow asks for an orders cycle so
that recent sales reach the order ledger before it decides). A flow never runs another
flow's cycle itself, so the success/failure bookkeeping, the log-on-change lines ("flow
failed" once, then "flow recovered" once), ``last_success``/``last_error`` and metrics are
always the runner's, booked against the flow that failed.

SIGTERM or SIGINT asks every loop to stop after the write in flight; what does not
finish within the grace period is cancelled (every write is a transaction, so a
cancelled one leaves nothing half-done). The stop signal itself lives in
:mod:`daemon.shutdown`, which the flows and clients import instead of this module.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from daemon.retry import backoff_delay
from daemon.shutdown import RunningCycle, Shutdown, current_cycle
from daemon.store import Store

log = structlog.get_logger("daemon.runner")

#: how long a stopping daemon lets the write in flight finish
STOP_GRACE = 8.0


class CycleRequests(Protocol):
    """How a flow asks for another flow's cycle (the stock flow for an orders catch-up)."""

    async def request_cycle(self, flow: str) -> bool:
        """Have ``flow`` run a cycle that starts after this call; True when it succeeded
        (or ``flow`` is not run at all)."""
        ...


class InlineCycles:
    """:class:`CycleRequests` without a runner (tests, benches, one-off commands): the
    requested cycle runs in the caller's task; its errors reach the caller."""

    def __init__(self, cycles: Mapping[str, Callable[[], Awaitable[object]]]) -> None:
        self.cycles = dict(cycles)

    async def request_cycle(self, flow: str) -> bool:
        """Run ``flow``'s cycle now (nothing when it has none)."""
        cycle = self.cycles.get(flow)
        if cycle is not None:
            await cycle()
        return True


class FlowSchedules:
    """The runner's :class:`CycleRequests`: cycles run by the flow's own loop (debounced).

    :meth:`request_cycle` wakes the flow's loop from its poll wait and returns once a
    cycle that *started after the request* has finished: several requests while one is
    pending share one cycle. A flow that is failing (in its backoff) is not woken — its
    backoff protects an API that is down — and the request answers False at once, as it
    does when the flow is not run at all (then True: there is nothing to wait for) or
    the daemon stops.
    """

    def __init__(self) -> None:
        self._schedules: dict[str, _Schedule] = {}

    def register(self, name: str, state: FlowState) -> _Schedule:
        """The runner's side: make ``name``'s loop answerable to requests."""
        schedule = _Schedule(state)
        self._schedules[name] = schedule
        return schedule

    async def request_cycle(self, flow: str) -> bool:
        """Have ``flow`` run a cycle that starts after this call; True when it succeeded
        (or the flow is not run), False when it failed, is backing off, or the daemon stops."""
        schedule = self._schedules.get(flow)
        if schedule is None:
            return True
        if schedule.state.failures or schedule.stopped:
            return False
        wanted = schedule.started + 1
        schedule.wake.set()
        while schedule.finished < wanted:
            if schedule.stopped:
                return False
            await schedule.changed.wait()
        return schedule.succeeded


@dataclass
class _Schedule:
    """One flow loop's counters, as :class:`FlowSchedules` sees them."""

    state: FlowState
    #: cycles started and finished so far, and whether the last finished one succeeded
    started: int = 0
    finished: int = 0
    succeeded: bool = False
    #: the loop has ended (stop)
    stopped: bool = False
    #: set to end the poll wait early; replaced when a cycle starts
    wake: anyio.Event = field(default_factory=anyio.Event)
    #: set (and replaced) whenever a cycle finishes or the loop ends
    changed: anyio.Event = field(default_factory=anyio.Event)

    def begin(self) -> None:
        self.started += 1
        self.wake = anyio.Event()

    def end(self, *, succeeded: bool | None = None, stopped: bool = False) -> None:
        if succeeded is not None:
            self.finished, self.succeeded = self.started, succeeded
        self.stopped = self.stopped or stopped
        self.changed.set()
        self.changed = anyio.Event()


class Flow(Protocol):
    """One sync flow: read → decide → write → commit, one cycle per call."""

    name: str

    async def run_once(self) -> int:
        """Run one cycle; return how many records were applied."""
        ...


@dataclass(frozen=True)
class ShopFlows:
    """One shop's flows, its alias (the ``shop`` label) and its view of the state DB (where
    the runner books their outcomes)."""

    shop: str
    store: Store
    flows: Sequence[Flow]


def flow_key(shop: str, flow: str, *, several: bool) -> str:
    """How the runner, health and cycle requests name a shop's flow: ``eu/orders`` when the
    process serves several shops, ``orders`` when one."""
    return f"{shop}/{flow}" if several else flow


@dataclass
class FlowState:
    """What the runner knows of a flow, for health, metrics and logs."""

    name: str
    #: the shop's alias and the flow's key (:func:`flow_key`)
    shop: str = ""
    key: str = ""
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
    #: why the last cycle, which succeeded, held the flow's work back (None: it did not)
    held: str | None = None

    def lag(self, now: float | None = None) -> float:
        """Seconds since the last successful cycle (or since start, before the first)."""
        now = time.time() if now is None else now
        return max(0.0, now - (self.last_success or self.started))


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
            log.info("daemon.stopping", signal=signal.Signals(signum).name)
            sdnotify.notify("STOPPING=1", "STATUS=stopping")
            shutdown.request()
            return


class Runner:
    """Runs the flows until shut down; feeds the systemd watchdog."""

    def __init__(
        self,
        flows: Sequence[Flow] = (),
        *,
        store: Store | None = None,
        shops: Sequence[ShopFlows] = (),
        metrics: Metrics,
        poll_seconds: float,
        shutdown: Shutdown | None = None,
        requests: FlowSchedules | None = None,
        sleep_until_stop: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """The flows of one shop (``flows`` and its ``store``) or of several (``shops``).
        Signals are the caller's: :func:`handle_signals` turns them into ``shutdown``.
        ``requests`` is the object the flows were given to ask for each other's cycles."""
        if not shops:
            if store is None:
                raise ValueError("Runner needs the store of its flows")
            shops = [ShopFlows(metrics.shop, store, flows)]
        several = len(shops) > 1
        self.flows = [f for group in shops for f in group.flows]
        self.store = shops[0].store
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.shutdown = shutdown or Shutdown()
        self.states: dict[str, FlowState] = {}
        self._entries: list[tuple[Flow, FlowState, Store]] = []
        for group in shops:
            for flow in group.flows:
                key = flow_key(group.shop, flow.name, several=several)
                state = FlowState(flow.name, shop=group.shop, key=key)
                self.states[key] = state
                self._entries.append((flow, state, group.store))
        self.requests = requests or FlowSchedules()
        self._schedules = {key: self.requests.register(key, state) for key, state in self.states.items()}
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
                for flow, state, store in self._entries:
                    loops.start_soon(self._loop, flow, state, store)
                tg.start_soon(self._stop_loops_after_grace, loops)
            tg.cancel_scope.cancel()

    async def _stop_loops_after_grace(self, loops: anyio.abc.TaskGroup) -> None:
        await self.shutdown.event.wait()
        await anyio.sleep(STOP_GRACE)
        log.warning("daemon.stop_grace_over", grace_seconds=STOP_GRACE)
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
        parts = [f"{key} {'held' if s.held else s.status}" for key, s in self.states.items()]
        return "; ".join(parts)

    async def _loop(self, flow: Flow, state: FlowState, store: Store) -> None:
        # bound in the context, so that the clients' lines inside the cycle carry them too
        with structlog.contextvars.bound_contextvars(flow=flow.name, shop=store.shop):
            schedule = self._schedules[state.key]
            try:
                await self._cycles(flow, state, store, schedule)
            finally:
                schedule.end(stopped=True)

    async def _cycles(self, flow: Flow, state: FlowState, store: Store, schedule: _Schedule) -> None:
        bound = log.bind(flow=flow.name)
        while not self.shutdown.requested:
            schedule.begin()
            state.last_attempt = state.attempting_since = time.time()
            started = time.monotonic()
            applied = 0
            with anyio.CancelScope() as scope:
                cycle = RunningCycle(state, scope)
                token = current_cycle.set(cycle)
                try:
                    applied = await flow.run_once()
                except SyncError as exc:
                    self._failed(state, bound, exc, exc.kind, fatal=isinstance(exc, FatalError))
                except Exception as exc:
                    # a bug of ours: keep the other flows going, say it once with the traceback
                    self._failed(state, bound, exc, "bug", fatal=False, traceback=True)
                else:
                    self._succeeded(state, bound, applied)
                    self._held(state, bound, cycle.held)
                finally:
                    current_cycle.reset(token)
                    state.attempting_since = state.retrying_since = state.retrying_until = None
            if scope.cancelled_caught:
                bound.info("flow.cycle", outcome="stopped", duration_s=round(time.monotonic() - started, 3))
                break
            self._canonical_line(state, bound, applied, time.monotonic() - started, cycle.counts)
            await self._persist(state, store)
            schedule.end(succeeded=state.failures == 0)
            self._cycle_done.set()
            self._cycle_done = anyio.Event()
            if self.shutdown.requested:
                break
            if state.failures:
                await self._sleep(backoff_delay(state.failures, self.poll_seconds))
            else:
                await self._rest(schedule)

    async def _rest(self, schedule: _Schedule) -> None:
        """The poll wait, ended early by a cycle request (one that came during the cycle
        just finished ends it at once)."""
        async with anyio.create_task_group() as tg:

            async def woken() -> None:
                await schedule.wake.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(woken)
            await self._sleep(self.poll_seconds)
            tg.cancel_scope.cancel()

    def _canonical_line(
        self,
        state: FlowState,
        bound: structlog.stdlib.BoundLogger,
        applied: int,
        seconds: float,
        counts: Mapping[str, int | bool],
    ) -> None:
        """One ``flow.cycle`` line per cycle with its outcome, duration, counts and the
        flow's own figures (:func:`daemon.shutdown.note_cycle`): at info when the cycle
        applied something, has a figure to show or failed, at debug when it found nothing
        to do (a quiet shop's journal stays quiet)."""
        fields: dict[str, object] = {"outcome": "ok" if state.failures == 0 else "failed"}
        fields.update(duration_s=round(seconds, 3), applied=applied, parked=state.parked, **counts)
        if state.failures:
            fields.update(kind=state.last_error_kind, failures=state.failures)
        busy = any(v for v in counts.values() if not isinstance(v, bool))
        (bound.info if applied or busy or state.failures else bound.debug)("flow.cycle", **fields)

    async def _persist(self, state: FlowState, store: Store) -> None:
        try:
            await store.record_outcome(
                state.name, ok=state.failures == 0, error=None if state.failures == 0 else state.last_error
            )
            state.parked = (await store.parked_counts()).get(state.name, 0)
            self.metrics.parked.labels(shop=state.shop, flow=state.name).set(state.parked)
        except Exception:
            log.exception("flow.outcome_not_recorded", flow=state.name, shop=store.shop)

    def _succeeded(self, state: FlowState, bound: structlog.stdlib.BoundLogger, applied: int) -> None:
        previous = state.status
        now = time.time()
        state.status, state.failures, state.last_success = "ok", 0, now
        self.metrics.last_success.labels(shop=state.shop, flow=state.name).set(now)
        self.metrics.up.labels(shop=state.shop, flow=state.name).set(1)
        self.metrics.lag.labels(shop=state.shop, flow=state.name).set(0)
        if applied:
            self.metrics.applied.labels(shop=state.shop, flow=state.name).inc(applied)
        if previous in ("failing", "fatal"):
            bound.info("flow.recovered", after_error=state.last_error)
            sdnotify.notify(f"STATUS={self.status_line()}")
        elif previous == "starting":
            sdnotify.notify(f"STATUS={self.status_line()}")

    def _held(self, state: FlowState, bound: structlog.stdlib.BoundLogger, reason: str | None) -> None:
        """Record whether the cycle held its work back; say it when that changes."""
        was, state.held = state.held, reason
        if reason is not None:
            self.metrics.up.labels(shop=state.shop, flow=state.name).set(0)
            if reason != was:
                bound.error("flow.held", reason=reason)
                sdnotify.notify(f"STATUS={self.status_line()}")
        elif was is not None:
            bound.info("flow.released", after=was)
            sdnotify.notify(f"STATUS={self.status_line()}")

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
        self.metrics.errors.labels(shop=state.shop, flow=state.name, kind=kind).inc()
        self.metrics.up.labels(shop=state.shop, flow=state.name).set(0)
        self.metrics.lag.labels(shop=state.shop, flow=state.name).set(state.lag())
        if changed:
            if traceback:
                bound.exception("flow.failed", kind=kind, error=message)
            else:
                bound.error("flow.failed", kind=kind, error=message)
            sdnotify.notify(f"STATUS={self.status_line()}")


def utc_from_timestamp(ts: float | None) -> str | None:
    """An ISO 8601 UTC string for a Unix time (None stays None)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts is not None else None
