"""The scheduler's manners (log on state change, back off, stop cleanly) and the health endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from daemon.errors import AuthError, TransportError
from daemon.health import HealthApp
from daemon.httpserver import HTTPServer
from daemon.metrics import Metrics
from daemon.runner import Runner, Shutdown, backoff_delay
from daemon.store import Store

pytestmark = pytest.mark.anyio


class ScriptedFlow:
    """Raises the scripted errors in turn, then succeeds; stops the daemon after ``cycles``."""

    def __init__(self, name: str, script: list[Exception | int], shutdown: Shutdown) -> None:
        self.name = name
        self.script = list(script)
        self.shutdown = shutdown
        self.calls = 0

    async def run_once(self) -> int:
        self.calls += 1
        step = self.script.pop(0)
        if not self.script:
            self.shutdown.request()
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    yield s
    await s.close()


async def run_scripted(
    store: Store, script: list[Exception | int]
) -> tuple[Runner, list[float], list[MutableMapping[str, Any]]]:
    shutdown = Shutdown()
    waits: list[float] = []

    async def fake_wait(seconds: float) -> None:
        waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    flow = ScriptedFlow("orders", script, shutdown)
    runner = Runner(
        [flow], store=store, metrics=Metrics(), poll_seconds=10, shutdown=shutdown, sleep_until_stop=fake_wait
    )
    with capture_logs() as logs, anyio.fail_after(5):
        await runner.run()
    return runner, waits, logs


async def test_failure_logged_once_and_recovery_once(store: Store) -> None:
    boom = TransportError("connection refused")
    runner, waits, logs = await run_scripted(store, [boom, boom, boom, 3, 0])
    events = [e["event"] for e in logs]
    assert events.count("flow failed") == 1
    assert events.count("flow recovered") == 1
    assert runner.states["orders"].status == "ok"
    # backs off while failing (growing), polls at the normal interval once healthy
    assert waits[0] < waits[2] or waits[2] >= 10
    assert waits[-1] == 10
    rows = await store.flows(["orders"])
    assert rows[0].last_success is not None


async def test_a_different_error_is_logged_again(store: Store) -> None:
    _, _, logs = await run_scripted(
        store, [TransportError("refused"), AuthError("RACKBEAT_API_TOKEN refused")]
    )
    failed = [e for e in logs if e["event"] == "flow failed"]
    assert [e["kind"] for e in failed] == ["transport", "auth"]


async def test_unexpected_bug_does_not_stop_the_loop(store: Store) -> None:
    runner, _, logs = await run_scripted(store, [ZeroDivisionError("oops"), 1])
    assert runner.states["orders"].status == "ok"
    assert any(e["event"] == "flow failed" and e["kind"] == "bug" for e in logs)


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_delay(n, 10, rand=lambda: 1.0) for n in range(1, 12)]
    assert delays[:3] == [10, 20, 40]
    assert max(delays) == 900


async def test_health_endpoints(store: Store) -> None:
    shutdown = Shutdown()
    flow = ScriptedFlow("stock", [TransportError("connection refused")] * 4, shutdown)
    metrics = Metrics()
    runner = Runner(
        [flow],
        store=store,
        metrics=metrics,
        poll_seconds=1,
        shutdown=shutdown,
        sleep_until_stop=lambda s: anyio.lowlevel.checkpoint(),
    )
    with anyio.fail_after(5):
        await runner.run()
    app = HealthApp(runner, store, metrics, "test")
    async with httpx.AsyncClient(transport=httpx.MockTransport(app.handle), base_url="http://h") as client:
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        health = await client.get("/healthz")
        assert health.status_code == 503
        assert health.headers["content-type"] == "application/health+json"
        doc = health.json()
        assert doc["status"] == "fail"
        [check] = doc["checks"]["stock:lag"]
        assert check["status"] == "fail"
        assert "connection refused" in check["output"]
        text = (await client.get("/metrics")).text
        assert 'rackbeat_shopify_errors_total{flow="stock",kind="transport"} 4.0' in text
        assert "process_resident_memory_bytes" in text or "python_info" in text
        assert (await client.get("/nope")).status_code == 404
        assert (await client.post("/healthz")).status_code == 405


async def test_health_server_survives_slow_and_malformed_clients() -> None:
    async def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="ok\n")

    server = HTTPServer(ok, read_timeout=0.3, max_header_bytes=1024, max_body_bytes=64)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        with anyio.fail_after(5):
            # a client that connects and says nothing is dropped after the read timeout
            slow = await anyio.connect_tcp("127.0.0.1", port)
            garbage = await anyio.connect_tcp("127.0.0.1", port)
            await garbage.send(b"\x00\x01 not http\r\n\r\n")
            assert (await garbage.receive()).startswith(b"HTTP/1.1 400")
            huge = await anyio.connect_tcp("127.0.0.1", port)
            await huge.send(b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 4096 + b"\r\n\r\n")
            reply = await huge.receive()
            assert reply.startswith(b"HTTP/1.1 4")
            big_body = await anyio.connect_tcp("127.0.0.1", port)
            await big_body.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
            assert (await big_body.receive()).startswith(b"HTTP/1.1 413")
            # meanwhile a well-behaved client is served
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/livez")).text == "ok\n"
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await slow.receive()
            for s in (slow, garbage, huge, big_body):
                await s.aclose()
        tg.cancel_scope.cancel()


async def test_health_output_is_json_with_no_secrets(store: Store) -> None:
    shutdown = Shutdown()
    flow = ScriptedFlow("orders", [1], shutdown)
    runner = Runner([flow], store=store, metrics=Metrics(), poll_seconds=1, shutdown=shutdown)
    with anyio.fail_after(5):
        await runner.run()
    app = HealthApp(runner, store, Metrics(), "test")
    response = await app.handle(httpx.Request("GET", "http://h/healthz"))
    doc = json.loads(response.content)
    assert doc["status"] == "pass"
    assert doc["checks"]["orders:lag"][0]["lastSuccess"] is not None
