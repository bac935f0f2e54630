"""The health endpoint: ``/livez``, ``/readyz``, ``/healthz`` and ``/metrics``.

- ``/livez``: the scheduler is alive (its heartbeat is recent).
- ``/readyz``: the state DB answers and the configuration was valid (503 otherwise).
- ``/healthz``: ``application/health+json`` with ``status`` pass|warn|fail (fail → 503)
  and per-flow checks: lag, last success, parked records, last error.
- ``/metrics``: Prometheus text format (prometheus_client's own ASGI app).

``GET`` and ``HEAD`` only. Nothing secret is ever in a response: flows' errors are our
own messages, which name settings and records, never tokens; what an API echoed back
into one is scrubbed by the runner, and every body leaving this app is scrubbed once
more (the metrics' labels included).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from prometheus_client import make_asgi_app

from daemon.logs import scrub
from daemon.metrics import Metrics
from daemon.runner import FlowState, Runner, utc_from_timestamp
from daemon.store import Store
from daemon.webserver import ASGIApp, Message, Receive, Scope, Send, handler_app

#: a flow that has failed this many cycles in a row is "fail", before that "warn"
FAIL_AFTER = 3
_ORDER = {"pass": 0, "warn": 1, "fail": 2}


def lag_limit(poll_seconds: float) -> float:
    """Seconds without a completed cycle before ``/healthz`` warns (a few missed polls; a
    cycle still running counts: a full reconcile or a first build may take minutes)."""
    return max(3 * poll_seconds, 120.0) + poll_seconds


def flow_status(state: FlowState, poll_seconds: float, now: float | None = None) -> str:
    """pass, warn or fail for one flow."""
    now = time.time() if now is None else now
    if state.status == "disabled":
        return "pass"
    if state.status == "fatal" or state.failures >= FAIL_AFTER or state.held is not None:
        return "fail"
    if state.failures or state.parked:
        return "warn"
    if _in_progress(state, poll_seconds, now) is not None or state.lag(now) > lag_limit(poll_seconds):
        return "warn"
    return "pass"


def _in_progress(state: FlowState, poll_seconds: float, now: float) -> str | None:
    """What the cycle now running looks like, when it is worth a warning: its client is
    backing off after failed requests (the API is failing right now), or it has run past
    :func:`lag_limit` without finishing."""
    if state.retrying_since is not None and state.retrying_until is not None and now < state.retrying_until:
        return f"retrying: requests failing since {now - state.retrying_since:.0f}s ago; backing off"
    if state.attempting_since is not None and now - state.attempting_since > lag_limit(poll_seconds):
        return f"cycle running for {now - state.attempting_since:.0f}s without finishing"
    return None


def health_document(runner: Runner, version: str) -> dict[str, Any]:
    """The ``/healthz`` body (draft-inadarei-api-health-check)."""
    now = time.time()
    checks: dict[str, list[dict[str, Any]]] = {}
    overall = "pass"
    for state in runner.states.values():
        status = flow_status(state, runner.poll_seconds, now)
        if _ORDER[status] > _ORDER[overall]:
            overall = status
        entry: dict[str, Any] = {
            "componentId": state.name,
            "shop": state.shop,
            "componentType": "flow",
            "status": status,
            "state": state.status,
            "observedValue": round(state.lag(now), 3),
            "observedUnit": "s",
            "lastSuccess": utc_from_timestamp(state.last_success),
            "parked": state.parked,
            "time": utc_from_timestamp(state.last_attempt),
        }
        if state.last_error and state.status in ("failing", "fatal"):
            entry["output"] = f"{state.last_error_kind}: {state.last_error}"
        elif state.held is not None:
            entry["output"] = f"held: {state.held}"
        elif (progress := _in_progress(state, runner.poll_seconds, now)) is not None:
            entry["output"] = progress
        checks[f"{state.key}:lag"] = [entry]
    return {"status": overall, "version": version, "serviceId": "rackbeat-shopify", "checks": checks}


class HealthApp:
    """The health listener's ASGI app; serve it with :func:`daemon.webserver.serve`.

    ``/metrics`` is prometheus_client's own ASGI app over the daemon's registry; the other
    paths are answered by :meth:`handle`. Every response body is scrubbed of registered
    secrets on its way out (:func:`daemon.logs.scrub`), whatever produced it.
    """

    def __init__(self, runner: Runner, store: Store, metrics: Metrics, version: str = "0") -> None:
        self.runner = runner
        self.store = store
        self.metrics = metrics
        self.version = version
        #: the scheduler counts as dead when its heartbeat is older than this
        self.liveness_window = 30.0
        # uncompressed: the body is scrubbed on its way out (and the listener is loopback)
        self._exposition: ASGIApp = make_asgi_app(metrics.registry, disable_compression=True)
        self._pages = handler_app(self.handle)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (ASGI)."""
        if scope["type"] != "http":
            return
        send = _scrubbing(send)
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            now = time.time()
            for state in self.runner.states.values():
                self.metrics.lag.labels(shop=state.shop, flow=state.name).set(state.lag(now))
            await self._exposition(scope, receive, send)
        else:
            await self._pages(scope, receive, send)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer ``/livez``, ``/readyz`` and ``/healthz`` (404 elsewhere, 405 but for GET and HEAD)."""
        if request.method not in ("GET", "HEAD"):
            return httpx.Response(405, text="method not allowed\n", headers={"allow": "GET, HEAD"})
        path = request.url.path
        if path == "/livez":
            alive = time.monotonic() - self.runner.heartbeat < self.liveness_window
            return httpx.Response(200 if alive else 503, text="ok\n" if alive else "scheduler stalled\n")
        if path == "/readyz":
            try:
                await self.store.fetchval("SELECT 1")
            except Exception as exc:
                return httpx.Response(503, text=f"state DB unavailable: {type(exc).__name__}\n")
            return httpx.Response(200, text="ok\n")
        if path == "/healthz":
            doc = health_document(self.runner, self.version)
            return httpx.Response(
                503 if doc["status"] == "fail" else 200,
                content=json.dumps(doc, indent=1).encode(),
                headers={"content-type": "application/health+json"},
            )
        return httpx.Response(404, text="not found; try /livez /readyz /healthz /metrics\n")


def _scrubbing(send: Send) -> Send:
    """``send`` with the response body scrubbed of secrets (and its length set to match).

    The body is held until it is complete: health and metrics answers are small.
    """
    start: Message | None = None
    body = bytearray()

    async def scrubbed(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        text = scrub(body.decode("utf-8", errors="surrogateescape")).encode("utf-8", errors="surrogateescape")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(text)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": text})

    return scrubbed
