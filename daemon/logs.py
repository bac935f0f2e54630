"""Logging setup: structlog, JSON lines for journald, readable output on a terminal.

Secrets never reach a log line: every value registered with :func:`register_secret`
is replaced by ``***`` in every string of every event, whatever the logger that
wrote it (structlog or the standard library, via structlog's formatter).

The structlog way: the level filter is the first processor (a debug call below the
level costs a method call, nothing more), loggers are cached on first use in the
daemon's own process, event names are stable dotted keys (``flow.cycle``,
``order.imported``) and everything else is a field. The runner writes one canonical
``flow.cycle`` line per cycle with its outcome, duration and counts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Scrub ``value`` from every log line from now on (tokens, client secrets)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (for health and the DB)."""
    scrubbed: str = _scrub_value(text)
    return scrubbed


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v) for v in value)
    return value


def scrub_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace registered secrets in every value."""
    if not _secrets:
        return event_dict
    for key, value in list(event_dict.items()):
        if key == "exc_info":
            continue
        event_dict[key] = _scrub_value(value)
    return event_dict


def _scrub_rendered(_: Any, __: str, event: Any) -> Any:
    # the final string (tracebacks included) is scrubbed once more
    return _scrub_value(event)


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *, cache: bool = False
) -> None:
    """Set up structlog and the standard library's logging to write to ``stream``.

    ``cache`` keeps each logger's processor chain after its first use: right for the
    daemon's own process, which configures logging once; wrong wherever it is configured
    again later (tests that capture logs, the demo inside a test run)."""
    stream = stream or sys.stdout
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub_secrets,
    ]
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        # the level filter first: nothing below the level is processed at all
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer, _scrub_rendered],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; that is our metrics' job, not the journal's
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # at DEBUG aiosqlite logs every statement with its parameters: customers' e-mails
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
