"""The systemd notify protocol as systemd sees it: datagrams on ``$NOTIFY_SOCKET``.

The test plays systemd: it binds a unix datagram socket, starts ``python -m daemon run``
with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` pointing at it, and reads what arrives.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.test_process import running_daemon, unreachable_env, unused_port

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract unix sockets are Linux's"),
]

#: half of it is the daemon's ping interval
WATCHDOG_USEC = 1_000_000


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in the abstract namespace (no path length limit, no file)."""
    name = f"rackbeat-shopify-test-{os.getpid()}-{os.urandom(4).hex()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


async def receive(sock: socket.socket) -> list[str]:
    """The next datagram, as its ``KEY=value`` lines."""
    while True:
        try:
            return sock.recv(4096).decode().splitlines()
        except BlockingIOError:
            await anyio.wait_readable(sock)


async def until(sock: socket.socket, wanted: str, seen: list[str]) -> list[str]:
    """Read datagrams until one has a line starting with ``wanted``; return that one."""
    while True:
        lines = await receive(sock)
        seen.extend(lines)
        if any(line.startswith(wanted) for line in lines):
            return lines


async def test_ready_watchdog_status_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, address = notify_socket
    env = unreachable_env(tmp_path, unused_port())
    env.update({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    seen: list[str] = []
    async with running_daemon(tmp_path, env, "notify") as daemon, httpx.AsyncClient(timeout=5) as client:
        with anyio.fail_after(20):
            ready = await until(sock, "READY=1", seen)
        # READY=1 comes once the health listener is up: it answers straight away
        assert (await daemon.get(client, "/livez")).status_code == 200
        assert any(line.startswith("STATUS=") for line in ready)
        assert "STOPPING=1" not in seen

        # the scheduler feeds the watchdog, well within WATCHDOG_USEC each time
        with anyio.fail_after(5):
            await until(sock, "WATCHDOG=1", seen)
            started = anyio.current_time()
            await until(sock, "WATCHDOG=1", seen)
        assert anyio.current_time() - started < WATCHDOG_USEC / 1_000_000

        daemon.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            stopping = await until(sock, "STOPPING=1", seen)
            assert await daemon.process.wait() == 0
    assert any(line.startswith("STATUS=") for line in stopping)
    # READY=1 once, before anything else of the run
    assert seen.count("READY=1") == 1
    assert seen.index("READY=1") < seen.index("STOPPING=1")
