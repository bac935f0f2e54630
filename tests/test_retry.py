"""The one retry policy (daemon.retry), tested once for both clients.

Attempts are scripted outcomes; time is fake (every wait is recorded, nothing sleeps), and
the jitter is pinned unless a test says otherwise, so the waits asserted are exact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from daemon.errors import (
    AmbiguousWrite,
    AuthError,
    MalformedResponse,
    RetriableError,
    ThrottledError,
    TransportError,
)
from daemon.retry import (
    BACKOFF_CAP_SECONDS,
    AttemptFailed,
    Retrying,
    RetryPolicy,
    SendAgain,
    retry_after,
    settle_write,
)

pytestmark = pytest.mark.anyio

Outcome = Exception | str


class Waits:
    """Records the backoff sleeps, throttle waits and holds a Retrying asks for."""

    def __init__(self) -> None:
        self.backoffs: list[float] = []
        self.waits: list[float] = []
        self.holds: list[float] = []

    async def backoff_sleep(self, seconds: float) -> None:
        self.backoffs.append(seconds)

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def hold(self, seconds: float) -> None:
        self.holds.append(seconds)


def retrying(waits: Waits, *, random: float = 1.0, **policy: Any) -> Retrying:
    return Retrying(
        "api",
        RetryPolicy(**policy),
        backoff_sleep=waits.backoff_sleep,
        random=lambda: random,
        wait=waits.wait,
        hold=waits.hold,
    )


def script(*outcomes: Outcome) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """An attempt that raises or returns the next outcome; the list counts the sends."""
    queue = list(outcomes)
    sends = [0]

    async def attempt() -> str:
        sends[0] += 1
        outcome = queue.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return attempt, sends


def failed(*, delivered: bool = True, error: RetriableError | None = None) -> AttemptFailed:
    return AttemptFailed(error or TransportError("HTTP 503"), delivered=delivered)


# --- backoff ---------------------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy()
    assert [policy.backoff(n, lambda: 1.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.backoff(20, lambda: 1.0) == BACKOFF_CAP_SECONDS
    # full jitter: anywhere between nothing and the ceiling
    assert policy.backoff(3, lambda: 0.25) == 0.5
    assert policy.backoff(3, lambda: 0.0) == 0.0


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"max_throttle_waits": 0}])
def test_a_policy_needs_at_least_one_attempt(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(**bad)


# --- failures --------------------------------------------------------------------------------------


async def test_passing_failures_are_retried_after_the_backoff() -> None:
    waits = Waits()
    loop = retrying(waits)
    attempt, sends = script(failed(), failed(delivered=False), "answer")
    assert await loop.run("GET /x", attempt, replay_safe=True) == "answer"
    assert sends == [3]
    assert waits.backoffs == [0.5, 1.0]  # through backoff_sleep (the daemon's ends on stop)
    assert waits.waits == []
    assert loop.retries == 2


async def test_failures_are_bounded_and_raised_as_their_error() -> None:
    waits = Waits()
    loop = retrying(waits, max_attempts=4)
    cause = httpx.ReadError("reset")
    error = MalformedResponse("truncated JSON")
    attempt, sends = script(*(AttemptFailed(error, delivered=True, cause=cause) for _ in range(4)))
    with pytest.raises(MalformedResponse) as caught:
        await loop.run("GET /x", attempt, replay_safe=True)
    assert caught.value is error
    assert caught.value.__cause__ is cause
    assert sends == [4]
    assert waits.backoffs == [0.5, 1.0, 2.0]
    assert loop.retries == 3


async def test_a_write_that_may_have_arrived_is_not_sent_again() -> None:
    waits = Waits()
    loop = retrying(waits)
    error = TransportError("read timeout")
    attempt, sends = script(failed(error=error), "never sent")
    with pytest.raises(AmbiguousWrite) as caught:
        await loop.run("POST /orders/drafts", attempt, replay_safe=False)
    assert sends == [1]
    assert caught.value.error is error
    assert isinstance(caught.value, RetriableError)  # unhandled, it fails like an outage
    assert "POST /orders/drafts" in str(caught.value)
    assert waits.backoffs == []


async def test_a_write_that_never_left_is_sent_again() -> None:
    waits = Waits()
    attempt, sends = script(failed(delivered=False), "created")
    assert await retrying(waits).run("POST /orders/drafts", attempt, replay_safe=False) == "created"
    assert sends == [2]


async def test_other_errors_are_raised_at_once() -> None:
    waits = Waits()
    attempt, sends = script(AuthError("refused"), "never")
    with pytest.raises(AuthError):
        await retrying(waits).run("GET /x", attempt, replay_safe=True)
    assert sends == [1]


async def test_send_again_resends_without_counting_a_failure() -> None:
    waits = Waits()
    loop = retrying(waits, max_attempts=1)
    attempt, sends = script(SendAgain(), "ok")
    assert await loop.run("GET /x", attempt, replay_safe=True) == "ok"
    assert (sends, loop.retries, waits.backoffs) == ([2], 0, [])


async def test_retries_are_logged_as_one_event_with_fields() -> None:
    waits = Waits()
    attempt, _ = script(failed(), "ok")
    with capture_logs() as logs:
        await retrying(waits).run("GET /x", attempt, replay_safe=True)
    assert logs == [
        {
            "event": "api.retry",
            "log_level": "debug",
            "request": "GET /x",
            "error": "HTTP 503",
            "kind": "transport",
            "attempt": 1,
            "retry_in": 0.5,
        }
    ]


# --- throttling ------------------------------------------------------------------------------------


async def test_a_throttle_waits_retry_after_exactly() -> None:
    waits = Waits()
    loop = retrying(waits)
    attempt, sends = script(ThrottledError("429", retry_after=7.0), "ok")
    assert await loop.run("GET /x", attempt, replay_safe=True) == "ok"
    assert (waits.holds, waits.waits, waits.backoffs) == ([7.0], [7.0], [])
    assert (sends, loop.throttled, loop.retries) == ([2], 1, 0)


async def test_a_throttle_without_retry_after_backs_off() -> None:
    waits = Waits()
    attempt, _ = script(*(ThrottledError("429") for _ in range(3)), "ok")
    await retrying(waits).run("GET /x", attempt, replay_safe=True)
    assert waits.waits == [0.5, 1.0, 2.0]


async def test_throttling_does_not_use_up_the_failure_budget() -> None:
    waits = Waits()
    loop = retrying(waits, max_attempts=1)
    attempt, sends = script(*(ThrottledError("THROTTLED", retry_after=1.0) for _ in range(5)), "ok")
    # a write too: a throttled request was not acted on
    assert await loop.run("POST /x", attempt, replay_safe=False) == "ok"
    assert (sends, loop.throttled) == ([6], 5)


async def test_endless_throttling_is_bounded() -> None:
    waits = Waits()
    attempt, sends = script(*(ThrottledError("THROTTLED") for _ in range(3)), "never")
    with pytest.raises(ThrottledError) as caught:
        await retrying(waits, max_throttle_waits=3).run("GET /x", attempt, replay_safe=True)
    assert sends == [3]
    assert caught.value.retry_after == 2.0  # the wait it would have needed next
    assert waits.waits == [0.5, 1.0]


async def test_a_throttle_too_long_to_sleep_through_is_raised_and_still_held() -> None:
    waits = Waits()
    attempt, sends = script(ThrottledError("429", retry_after=600.0), "never")
    with pytest.raises(ThrottledError) as caught:
        await retrying(waits).run("GET /x", attempt, replay_safe=True)
    assert caught.value.retry_after == 600.0
    assert sends == [1]
    assert waits.waits == []  # the runner backs off instead
    assert waits.holds == [600.0]  # the client still pauses its next callers


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        (None, None),
    ],
)
def test_retry_after_is_read_in_seconds_only(header: str | None, seconds: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    assert retry_after(httpx.Response(429, headers=headers)) == seconds


# --- settling an ambiguous write ----------------------------------------------------------------------


def ambiguous() -> AmbiguousWrite:
    return AmbiguousWrite("POST /customers", TransportError("reset"))


def reads(*results: str | Exception | None) -> tuple[Callable[[], Awaitable[str | None]], list[int]]:
    queue = list(results)
    count = [0]

    async def read_back() -> str | None:
        count[0] += 1
        result = queue.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    return read_back, count


async def test_an_ambiguous_write_that_landed_is_adopted_not_repeated() -> None:
    write, writes = script(ambiguous(), "second write")
    read_back, read_count = reads("customer 7")
    with capture_logs() as logs:
        assert await settle_write(write, read_back, what="POST /customers") == "customer 7"
    assert (writes, read_count) == ([1], [1])
    assert [(e["event"], e["outcome"]) for e in logs] == [("write.ambiguous", "applied")]


async def test_an_ambiguous_write_that_did_not_land_is_written_again() -> None:
    write, writes = script(ambiguous(), "customer 8")
    read_back, read_count = reads(None)
    assert await settle_write(write, read_back, what="POST /customers") == "customer 8"
    assert (writes, read_count) == ([2], [1])


async def test_settling_is_bounded() -> None:
    write, writes = script(*(ambiguous() for _ in range(3)), "never")
    read_back, read_count = reads(None, None, None)
    with pytest.raises(AmbiguousWrite):
        await settle_write(write, read_back, what="POST /customers", rounds=3)
    assert (writes, read_count) == ([3], [3])


async def test_a_read_back_that_fails_ends_the_settling() -> None:
    write, writes = script(ambiguous(), "never")
    read_back, _ = reads(TransportError("Rackbeat is down"))
    with pytest.raises(TransportError, match="down"):
        await settle_write(write, read_back, what="POST /customers")
    assert writes == [1]
