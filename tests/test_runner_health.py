"""The scheduler's manners (log on state change, back off, stop cleanly) and the health endpoint."""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from structlog.testing import capture_logs

from daemon.errors import AuthError, TransportError
from daemon.health import HealthApp, flow_status
from daemon.logs import configure_logging, register_secret
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.retry import backoff_delay
from daemon.runner import FlowState, Runner
from daemon.shopify import ShopifyClient
from daemon.shutdown import RETRY_GRACE, Shutdown
from daemon.store import Store
from daemon.webserver import ASGIApp, Limits, handler_app, serve

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
    metrics = Metrics()
    app = HealthApp(await failed_runner(store, metrics), store, metrics, "test")
    async with served(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
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
        exposition = await client.get("/metrics")
        assert exposition.headers["content-type"].startswith("text/plain; version=")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(exposition.text)
            for s in family.samples
        }
        assert (
            samples[
                ("rackbeat_shopify_errors_total", (("flow", "stock"), ("kind", "transport"), ("shop", "")))
            ]
            == 4.0
        )
        assert any(name.startswith(("process_", "python_")) for name, _ in samples)
        assert (await client.get("/nope")).status_code == 404
        assert (await client.post("/healthz")).status_code == 405
        assert (await client.post("/metrics")).status_code == 405


async def test_a_secret_that_reaches_a_metric_label_is_scrubbed(store: Store) -> None:
    secret = "shpat_label_leak_7f3e91"
    register_secret(secret)
    metrics = Metrics()
    metrics.count("orders", f"parked_{secret}")  # as if an API's words became a label
    app = HealthApp(await failed_runner(store, metrics), store, metrics, "test")
    async with served(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        exposition = await client.get("/metrics", headers={"accept-encoding": "gzip"})
    assert secret not in exposition.text
    assert 'event="parked_***"' in exposition.text
    assert int(exposition.headers["content-length"]) == len(exposition.content)


@asynccontextmanager
async def served(app: ASGIApp, limits: Limits | None = None) -> AsyncIterator[str]:
    """``app`` on a free loopback port, as the daemon serves it; yields ``http://host:port``."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(functools.partial(serve, app, limits=limits or Limits()), "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()


async def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="ok\n")


def client_port(response: httpx.Response) -> int:
    """The client's end of the connection that carried ``response``."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


async def failed_runner(store: Store, metrics: Metrics) -> Runner:
    """A runner whose one flow (stock) has failed four cycles in a row."""
    shutdown = Shutdown()
    flow = ScriptedFlow("stock", [TransportError("connection refused")] * 4, shutdown)
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
    return runner


async def test_head_answers_the_headers_of_get_without_a_body(store: Store) -> None:
    metrics = Metrics()
    app = HealthApp(await failed_runner(store, metrics), store, metrics, "test")
    async with served(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        with anyio.fail_after(10):
            for path, status, content_type in [
                ("/livez", 200, "text/plain"),
                ("/readyz", 200, "text/plain"),
                ("/healthz", 503, "application/health+json"),
                ("/metrics", 200, "text/plain"),
            ]:
                head = await client.head(path)
                get = await client.get(path)
                assert (head.status_code, get.status_code) == (status, status), path
                assert head.content == b""
                assert head.headers["content-type"].startswith(content_type), path
                assert head.headers["content-type"] == get.headers["content-type"]
                assert int(head.headers["content-length"]) > 0
                assert int(get.headers["content-length"]) == len(get.content)
                # the connection survives a HEAD: the GET after it rode the same one
                assert client_port(get) == client_port(head)
            assert (await client.head("/livez")).headers["content-length"] == "3"  # "ok\n"


async def test_one_connection_serves_request_after_request() -> None:
    texts, ports = [], set()
    async with served(handler_app(ok)) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        with anyio.fail_after(10):
            for _ in range(5):
                answer = await client.get("/livez")
                texts.append(answer.text)
                ports.add(client_port(answer))
    assert texts == ["ok\n"] * 5
    assert len(ports) == 1, "each request opened a new connection"


async def test_a_client_that_trickles_its_request_head_is_dropped_and_others_are_served() -> None:
    limits = Limits(head_timeout=0.5)
    head = b"GET /livez HTTP/1.1\r\nhost: x\r\n" + b"x-drip: " + b"a" * 200 + b"\r\n\r\n"
    async with served(handler_app(ok), limits) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        port = httpx.URL(base).port
        assert port is not None
        silent = await anyio.connect_tcp("127.0.0.1", port)
        drip = await anyio.connect_tcp("127.0.0.1", port)
        started = anyio.current_time()
        served_meanwhile: list[str] = []
        with anyio.fail_after(5):
            # one byte every 20 ms: each read is quick, the whole head would take 5 s
            for byte in head:
                try:
                    await drip.send(bytes([byte]))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    break
                if not served_meanwhile:
                    served_meanwhile.append((await client.get("/livez")).text)
                with anyio.move_on_after(0.02):
                    try:
                        assert await drip.receive() == b"", "the server answered a head it never got"
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
            dropped_after = anyio.current_time() - started
            # the client that said nothing at all is gone by now too
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await silent.receive()
        await drip.aclose()
        await silent.aclose()
    assert served_meanwhile == ["ok\n"]
    assert 0.4 < dropped_after < 2.0, f"a dripping client held its connection for {dropped_after:.1f}s"


async def test_requests_beyond_the_cap_get_503_while_the_others_go_on() -> None:
    release = anyio.Event()
    in_progress = 0
    both_in = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_progress
        if request.url.path == "/slow":
            in_progress += 1
            if in_progress == 2:
                both_in.set()
            await release.wait()
        return httpx.Response(200, text="ok\n")

    answers: list[int] = []
    async with served(handler_app(slow), Limits(max_requests=2)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client, anyio.create_task_group() as tg:

            async def get_slow() -> None:
                answers.append((await client.get("/slow")).status_code)

            with anyio.fail_after(10):
                tg.start_soon(get_slow)
                tg.start_soon(get_slow)
                await both_in.wait()
                busy = await client.get("/fast")
                assert busy.status_code == 503
                release.set()
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            with anyio.fail_after(10):
                assert (await client.get("/fast")).status_code == 200
    assert answers == [200, 200]


async def test_oversized_requests_are_refused() -> None:
    limits = Limits(max_header_bytes=1024, max_body_bytes=64)
    async with served(handler_app(ok), limits) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        with anyio.fail_after(10):
            assert (await client.get("/livez", headers={"x-pad": "a" * 4096})).status_code == 431
            assert (await client.post("/livez", content=b"x" * 65)).status_code == 413
            assert (await client.post("/livez", content=b"x" * 64)).status_code == 200


async def test_a_client_that_stalls_its_body_gets_408_within_the_read_timeout() -> None:
    async with served(handler_app(ok), Limits(read_timeout=0.5)) as base:
        port = httpx.URL(base).port
        assert port is not None
        stalled = await anyio.connect_tcp("127.0.0.1", port)
        await stalled.send(b"POST /livez HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        started = anyio.current_time()
        with anyio.fail_after(5):
            reply = await stalled.receive()
        answered_after = anyio.current_time() - started
        await stalled.aclose()
    assert reply.startswith(b"HTTP/1.1 408")
    assert 0.4 < answered_after < 2.0


async def test_cancelling_the_server_stops_it_at_once_and_frees_the_port() -> None:
    async with anyio.create_task_group() as outer:
        port = await outer.start(
            functools.partial(serve, handler_app(ok), limits=Limits(head_timeout=30)), "127.0.0.1", 0
        )
        async with httpx.AsyncClient(timeout=5) as client:
            # a kept-alive connection and one that never says anything do not hold the stop up
            assert (await client.get(f"http://127.0.0.1:{port}/livez")).text == "ok\n"
            silent = await anyio.connect_tcp("127.0.0.1", port)
            started = anyio.current_time()
            outer.cancel_scope.cancel()
    stopped_after = anyio.current_time() - started
    with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
        await silent.receive()
    await silent.aclose()
    assert stopped_after < 1.0, f"stopping took {stopped_after:.1f}s"
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/livez")


async def test_a_port_already_taken_fails_before_serving() -> None:
    async with served(handler_app(ok)) as base:
        port = httpx.URL(base).port
        assert port is not None
        async with anyio.create_task_group() as tg:
            with pytest.raises(OSError, match="in use"):
                await tg.start(serve, handler_app(ok), "127.0.0.1", port)


def test_the_readme_states_the_health_listeners_limits() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    limits = Limits()
    stated = " ".join(readme.split("## Health and metrics", 1)[1].split("## ", 1)[0].split())
    assert f"must arrive within {limits.head_timeout:g} s" in stated
    assert f"fit in {limits.max_header_bytes // 1024} KiB" in stated
    assert f"at most {limits.max_requests} requests are handled at once" in stated


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
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://h") as client:
                health = await client.get("/healthz")
                metrics_text = (await client.get("/metrics")).content
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
