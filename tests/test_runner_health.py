"""The scheduler's manners (log on state change, back off, stop cleanly) and the health endpoint."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from daemon.errors import AuthError, TransportError
from daemon.health import HealthApp, flow_status
from daemon.httpserver import HTTPServer
from daemon.logs import configure_logging
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.runner import FlowState, Runner, backoff_delay
from daemon.shopify import ShopifyClient
from daemon.shutdown import RETRY_GRACE, Shutdown
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
    assert events.count("flow.failed") == 1
    assert events.count("flow.recovered") == 1
    assert runner.states["orders"].status == "ok"
    # backs off while failing, doubling from the poll interval (jitter: half to all of it) …
    assert 5 <= waits[0] <= 10 <= waits[1] <= 20 <= waits[2] <= 40
    assert waits[2] >= 2 * waits[0]
    # … and polls at the normal interval once healthy
    assert waits[3:] == [10]
    rows = await store.flows(["orders"])
    assert rows[0].last_success is not None


async def test_a_different_error_is_logged_again(store: Store) -> None:
    _, _, logs = await run_scripted(
        store, [TransportError("refused"), AuthError("RACKBEAT_API_TOKEN refused")]
    )
    failed = [e for e in logs if e["event"] == "flow.failed"]
    assert [e["kind"] for e in failed] == ["transport", "auth"]


async def test_unexpected_bug_does_not_stop_the_loop(store: Store) -> None:
    runner, _, logs = await run_scripted(store, [ZeroDivisionError("oops"), 1])
    assert runner.states["orders"].status == "ok"
    assert any(e["event"] == "flow.failed" and e["kind"] == "bug" for e in logs)


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


async def test_health_server_drops_a_client_that_drips_its_request_head() -> None:
    async def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="ok\n")

    server = HTTPServer(ok, read_timeout=0.5)
    head = b"GET /livez HTTP/1.1\r\nhost: x\r\n" + b"x-drip: " + b"a" * 200 + b"\r\n\r\n"
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        drip = await anyio.connect_tcp("127.0.0.1", port)
        started = anyio.current_time()
        reply = b""
        # one byte every 50 ms: each read is quick, the whole head would take 12 s
        with anyio.fail_after(5):
            for byte in head:
                try:
                    await drip.send(bytes([byte]))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    break
                with anyio.move_on_after(0.05):
                    try:
                        reply += await drip.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
        elapsed = anyio.current_time() - started
        await drip.aclose()
        tg.cancel_scope.cancel()
    assert reply.startswith(b"HTTP/1.1 408")
    assert elapsed < 2.0, f"a dripping client held the connection for {elapsed:.1f}s"


async def test_health_server_caps_concurrent_connections() -> None:
    async def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="ok\n")

    server = HTTPServer(ok, read_timeout=30, max_connections=2, busy_timeout=0.2)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/livez"
        with anyio.fail_after(5):
            idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(2)]
            async with httpx.AsyncClient() as client:
                # both slots are held by clients that say nothing: the next one is told so
                busy = await client.get(url)
                assert busy.status_code == 503
                for stream in idle:
                    await stream.aclose()
                while True:  # the server notices the closed ones shortly
                    answer = await client.get(url)
                    if answer.status_code != 503:
                        break
                    await anyio.sleep(0.01)
                assert answer.text == "ok\n"
        tg.cancel_scope.cancel()


async def test_health_server_drops_a_client_that_does_not_read_its_answer() -> None:
    big = b"x" * (32 * 1024 * 1024)  # more than the socket buffers hold: sending it blocks

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=big if request.url.path == "/big" else b"ok\n")

    server = HTTPServer(answer, read_timeout=0.3, max_connections=1, busy_timeout=0.1)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/livez"
        with anyio.fail_after(10):
            stuck = await anyio.connect_tcp("127.0.0.1", port)
            await stuck.send(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")  # and never reads
            async with httpx.AsyncClient() as client:
                while True:  # the only slot is freed once the send times out
                    reply = await client.get(url)
                    if reply.status_code != 503:
                        break
                    await anyio.sleep(0.05)
                assert reply.text == "ok\n"
            await stuck.aclose()
        tg.cancel_scope.cancel()


RACKBEAT_TOKEN = "rb-health-test-token-9d3f1a"
SHOPIFY_TOKEN = "shpat_health_test_token_4e8c2b"


def echoing_apis() -> httpx.MockTransport:
    """Both APIs failing, and careless enough to echo our credentials in what they say."""

    async def handler(request: httpx.Request) -> httpx.Response:
        said = " ".join(f"{k}={v}" for k, v in request.headers.items())
        if "graphql" in request.url.path:
            return httpx.Response(200, json={"errors": [{"message": f"no such field; you sent {said}"}]})
        return httpx.Response(500, text=f"internal error handling {said}")

    return httpx.MockTransport(handler)


class ClientFlow:
    """A flow that calls both real API clients once per cycle."""

    def __init__(self, name: str, shopify: ShopifyClient, rackbeat: RackbeatClient) -> None:
        self.name = name
        self.shopify = shopify
        self.rackbeat = rackbeat

    async def run_once(self) -> int:
        try:
            await self.rackbeat.payment_terms()
        finally:
            await self.shopify.execute("query Shop { shop { id } }")
        return 0


async def test_health_output_is_json_with_no_secrets(store: Store) -> None:
    shutdown = Shutdown()
    async with httpx.AsyncClient(transport=echoing_apis()) as http:
        shopify = ShopifyClient(
            http,
            graphql_url="http://shop/admin/api/2026-10/graphql.json",
            access_token=SecretStr(SHOPIFY_TOKEN),
        )
        rackbeat = RackbeatClient(
            http,
            base_url="http://rackbeat/api",
            token=SecretStr(RACKBEAT_TOKEN),
            contact_email="ops@example.com",
            max_attempts=1,
        )
        flows = [ClientFlow("orders", shopify, rackbeat), ClientFlow("stock", shopify, rackbeat)]
        metrics = Metrics()
        runner = Runner(flows, store=store, metrics=metrics, poll_seconds=1, shutdown=shutdown)
        app = HealthApp(runner, store, metrics, "test")
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            with anyio.fail_after(5):
                while not all(state.failures for state in runner.states.values()):
                    await runner.wait_for_cycle()
            health = await app.handle(httpx.Request("GET", "http://h/healthz"))
            metrics_text = (await app.handle(httpx.Request("GET", "http://h/metrics"))).content
            shutdown.request()
    doc = json.loads(health.content)
    assert doc["status"] == "fail"  # Shopify refusing the document is fatal
    assert {c[0]["componentId"] for c in doc["checks"].values()} == {"orders", "stock"}
    assert all(c[0]["output"] for c in doc["checks"].values())  # the errors are reported …
    for token in (RACKBEAT_TOKEN, SHOPIFY_TOKEN):
        assert token.encode() not in health.content  # … without the credentials in them
        assert token.encode() not in metrics_text
    assert b"rackbeat_shopify_errors_total" in metrics_text


async def test_flow_warns_while_its_client_backs_off_and_stops_at_once(store: Store) -> None:
    shutdown = Shutdown()

    async def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refused)) as http:
        rackbeat = RackbeatClient(
            http,
            base_url="http://rackbeat/api",
            token=SecretStr(RACKBEAT_TOKEN),
            contact_email="ops@example.com",
            backoff_sleep=shutdown.backoff,
            random=lambda: 1.0,  # the full backoff: longer than this test may take
        )

        class Orders:
            name = "orders"

            async def run_once(self) -> int:
                await rackbeat.payment_terms()
                return 0

        metrics = Metrics()
        runner = Runner([Orders()], store=store, metrics=metrics, poll_seconds=60, shutdown=shutdown)
        app = HealthApp(runner, store, metrics, "test")
        stopped = anyio.Event()

        async def run() -> None:
            await runner.run()
            stopped.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(5):
                while True:  # the first attempt is refused at once; the cycle then waits
                    doc = json.loads((await app.handle(httpx.Request("GET", "http://h/healthz"))).content)
                    if doc["status"] != "pass":
                        break
                    await anyio.sleep(0.01)
            assert doc["status"] == "warn"
            [check] = doc["checks"]["orders:lag"]
            assert check["output"].startswith("retrying")
            shutdown.request()
            with anyio.fail_after(1):  # not the backoff, not the stop grace period
                await stopped.wait()
    assert rackbeat.requests == 1


@pytest.mark.parametrize(("running_for", "expected"), [(2.0, "pass"), (200.0, "pass"), (241.0, "warn")])
def test_a_cycle_that_does_not_finish_warns(running_for: float, expected: str) -> None:
    # a full reconcile may take minutes: only past the lag limit (4 polls, at least 3 minutes) it warns
    state = FlowState("orders", started=1000.0, status="ok", last_success=1000.0)
    state.attempting_since = 1000.0
    assert flow_status(state, poll_seconds=60, now=1000.0 + running_for) == expected
    # a short poll interval does not make a minute's cycle a warning
    assert flow_status(state, poll_seconds=0.5, now=1000.0 + 60.0) == "pass"
    assert flow_status(state, poll_seconds=0.5, now=1000.0 + 121.0) == "warn"


def test_a_retry_that_succeeded_stops_warning_after_its_grace() -> None:
    state = FlowState("orders", started=1000.0, status="ok", last_success=1000.0)
    state.attempting_since = state.retrying_since = 1000.0
    state.retrying_until = 1000.0 + 2.0 + RETRY_GRACE  # one backoff of 2 s
    assert flow_status(state, poll_seconds=60, now=1003.0) == "warn"
    # the retried request went through; the cycle goes on with other pages
    assert flow_status(state, poll_seconds=60, now=1000.0 + 2.0 + RETRY_GRACE + 1) == "pass"


async def test_client_log_lines_inside_a_cycle_name_the_flow(store: Store) -> None:
    shutdown = Shutdown()

    class Orders:
        name = "orders"

        async def run_once(self) -> int:
            # the clients log through the standard library, without binding anything
            logging.getLogger("daemon.rackbeat").warning("rackbeat request failed")
            shutdown.request()
            return 0

    out = io.StringIO()
    runner = Runner([Orders()], store=store, metrics=Metrics(), poll_seconds=1, shutdown=shutdown)
    with configured_logging(out, "info"), anyio.fail_after(5):
        await runner.run()
    [line] = [json.loads(line) for line in out.getvalue().splitlines() if "rackbeat request failed" in line]
    assert line["flow"] == "orders"


async def test_debug_logging_does_not_show_sql_parameters(store: Store) -> None:
    out = io.StringIO()
    with configured_logging(out, "debug"):
        await store.fetchval("SELECT ?", ("anna.customer@example.com",))
        logging.getLogger("daemon.test").debug("debug is on")
    assert "debug is on" in out.getvalue()
    assert "anna.customer@example.com" not in out.getvalue()


@contextmanager
def configured_logging(out: io.StringIO, level: str) -> Iterator[None]:
    """The daemon's logging, into ``out``; the test run's own set-up restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    loggers = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "aiosqlite")}
    configure_logging(level, "json", stream=out)
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:], root.level = handlers, root_level
        for name, value in loggers.items():
            logging.getLogger(name).setLevel(value)
