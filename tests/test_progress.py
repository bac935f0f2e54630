"""Progress of long work: a bar on a terminal, a log line now and then otherwise."""

from __future__ import annotations

import io

import pytest
from structlog.testing import capture_logs

from daemon.progress import DRAW_EVERY, LOG_EVERY, Progress


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Terminal(io.StringIO):
    """A stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def test_without_a_terminal_a_line_every_log_interval_with_rate_and_time_left() -> None:
    clock, stream = FakeClock(), io.StringIO()
    with capture_logs() as logs:
        progress = Progress("SKU index build", 1000, stream=stream, clock=clock, shop="s.myshopify.com")
        # 10 records a second for 60 s, reported every second
        for _ in range(60):
            clock.advance(1)
            progress.advance(10)
        progress.finish()
    assert stream.getvalue() == ""  # nothing drawn: journald gets log lines only
    lines = [
        entry for entry in logs if (entry["event"], entry["work"]) == ("progress.update", "SKU index build")
    ]
    assert [entry["done"] for entry in lines] == [100, 200, 300, 400, 500, 600]  # every LOG_EVERY s
    assert LOG_EVERY == 10.0
    first = lines[0]
    assert first["total"] == 1000
    assert first["per_second"] == 10.0
    assert first["seconds_left"] == 90  # 900 left at 10/s
    assert first["shop"] == "s.myshopify.com"
    assert lines[-1]["seconds_left"] == 40
    [done] = [
        entry for entry in logs if (entry["event"], entry["work"]) == ("progress.done", "SKU index build")
    ]
    assert (done["records"], done["seconds"], done["per_second"]) == (600, 60.0, 10.0)


def test_no_line_before_the_interval_has_passed() -> None:
    clock = FakeClock()
    with capture_logs() as logs:
        progress = Progress("stock push", 500, stream=io.StringIO(), clock=clock)
        clock.advance(LOG_EVERY - 0.5)
        progress.advance(250)
        assert logs == []
        clock.advance(0.5)
        progress.advance(1)
    assert [entry["done"] for entry in logs] == [251]


def test_an_unknown_total_logs_no_time_left() -> None:
    clock = FakeClock()
    with capture_logs() as logs:
        progress = Progress("orders catch-up", None, stream=io.StringIO(), clock=clock)
        clock.advance(LOG_EVERY)
        progress.advance(40)
    [line] = logs
    assert (line["done"], line["total"], line["seconds_left"]) == (40, None, None)
    assert line["per_second"] == 4.0


def test_on_a_terminal_a_bar_redrawn_in_place() -> None:
    clock, term = FakeClock(), Terminal()
    with capture_logs() as logs:
        progress = Progress("SKU index build", 200, stream=term, clock=clock)
        clock.advance(DRAW_EVERY / 2)
        progress.advance(10)
        assert term.getvalue() == ""  # not yet: redrawn at most every DRAW_EVERY seconds
        clock.advance(10 - DRAW_EVERY / 2)
        progress.advance(90)  # 100 of 200 after 10 s: 10/s, 10 s left
        drawn = term.getvalue()
        assert drawn.startswith("\r\x1b[K")  # back to the line's start, erased
        assert "SKU index build: [" + "#" * 15 + "." * 15 + "] 100/200 (10/s, 10 s left)" in drawn
        clock.advance(5)
        progress.advance(100)
        assert term.getvalue().endswith("] 200/200 (13/s, 0 s left)")
        assert [e for e in logs if e["event"] == "progress.update"] == []  # no log lines meanwhile
        progress.finish()
    assert term.getvalue().endswith("\r\x1b[K")  # the bar is gone; the done line is logged
    assert [(e["event"], e["work"]) for e in logs] == [("progress.done", "SKU index build")]


@pytest.mark.parametrize(("done", "total", "filled"), [(0, 50, 0), (25, 50, 15), (80, 50, 30)])
def test_the_bar_never_overflows(done: int, total: int, filled: int) -> None:
    clock, term = FakeClock(), Terminal()
    progress = Progress("x", total, stream=term, clock=clock)
    clock.advance(1)
    progress.advance(done)
    bar = term.getvalue().split(": [", 1)[1].split("]", 1)[0]
    assert bar == "#" * filled + "." * (30 - filled)


def test_a_total_learned_from_the_first_page_gives_time_left() -> None:
    clock = FakeClock()
    with capture_logs() as logs:
        progress = Progress("Rackbeat stock scan", None, stream=io.StringIO(), clock=clock)
        clock.advance(1)
        progress.advance(100)  # page 1 says: 50 pages of 100
        progress.expect(5000)
        clock.advance(LOG_EVERY - 1)
        progress.advance(900)
    [line] = logs
    assert (line["done"], line["total"], line["per_second"], line["seconds_left"]) == (1000, 5000, 100.0, 40)
