"""Command line: ``rackbeat-shopify run | check | status | parked | retry | reconcile | merge-state | demo``.

Thin on purpose: parse the arguments, call into the package, turn the outcome into
an exit status (see the README's table):

- 0 success; 1 runtime failure; 2 usage error
- 69 (EX_UNAVAILABLE) an API could not be reached by ``check``
- 77 (EX_NOPERM) an API refused our credentials
- 78 (EX_CONFIG) a setting is wrong or missing; ``check --live``: a load-bearing fact is refuted
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from daemon import __version__
from daemon.config import Account, load_account, load_db_settings, load_state_account
from daemon.errors import AuthError, ConfigError, FatalError, RetriableError
from daemon.logs import configure_logging, scrub

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_NOPERM = 77
EX_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rackbeat-shopify",
        description="Keeps a Shopify shop and a Rackbeat account in sync. Settings come from the environment "
        "(and .env); see .env.example.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser(
        "run", help="run the daemon (what systemd starts)", description="Run every flow until SIGTERM."
    )
    check = sub.add_parser(
        "check",
        help="validate the settings, and reach both APIs",
        description="Validate the settings; without --offline also authenticate against both APIs and verify "
        "that the configured Rackbeat numbers (S3, S5, S8, S10, S11, S15) exist. With --live instead, prove "
        "each Rackbeat assumption and each Shopify scope on the live accounts, read-only.",
    )
    mode = check.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="only validate the settings")
    mode.add_argument(
        "--live",
        action="store_true",
        help="read-only: prove each Rackbeat assumption and each Shopify scope on the real accounts "
        "(exit 78 when a load-bearing one is refuted)",
    )
    check.add_argument("--json", action="store_true", help="with --live: machine-readable output")
    status = sub.add_parser("status", help="cursors, lag and parked records from the state DB")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    parked = sub.add_parser("parked", help="list parked records with reason and advice")
    parked.add_argument("--json", action="store_true", help="machine-readable output")
    retry = sub.add_parser("retry", help="retry parked records now")
    for command in (check, status, parked, retry):
        _shop_option(command)
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("key", nargs="?", help="the parked record's key (see `parked`)")
    target.add_argument("--all", action="store_true", help="every parked record")
    reconcile = sub.add_parser(
        "reconcile",
        help="compare both sides in full, and fix what the daemon owns",
        description="Compare Shopify and Rackbeat in full: SKUs on one side only, duplicate SKUs, stock and "
        "product field differences, recent Shopify orders missing in Rackbeat. Without --dry-run, fix what "
        "the settings make the daemon own (stock with S12, products in S13's direction, missing orders).",
    )
    reconcile.add_argument("--dry-run", action="store_true", help="report only; write nothing to either API")
    reconcile.add_argument("--json", action="store_true", help="machine-readable output")
    reconcile.add_argument("--days", type=float, default=7.0, help="orders window in days (default 7)")
    _shop_option(reconcile)
    merge = sub.add_parser(
        "merge-state",
        help="copy another instance's state file into SYNC_DB (one instance per account)",
        description="Copy every row of every table of the state file PATH (the SYNC_DB of another instance, "
        "e.g. a shop's own before one instance served the whole Rackbeat account) into SYNC_DB, in one "
        "transaction: the shops keep their cursors, ledgers and parked records, and nothing is imported or "
        "pushed again. Stop the daemons of both files first: the merge is refused while another process has "
        "either file open, when a shop of PATH already has state in SYNC_DB, and when PATH holds none. PATH "
        "is migrated to this release's schema and otherwise left as it was; SYNC_DB is created (mode 0600) "
        "when missing. Needs only SYNC_DB.",
    )
    merge.add_argument("path", type=Path, metavar="PATH", help="the state file to copy from (its sync.db)")
    demo = sub.add_parser(
        "demo",
        help="the daemon against built-in simulators of both APIs (two shops), with a live summary",
        description="Start two simulated Shopify shops and a simulated Rackbeat on loopback with a sample "
        "catalogue, run one daemon for both shops against them and make activity happen. Needs no settings; "
        "ignores the environment and .env.",
    )
    demo.add_argument("--seconds", type=float, default=None, help="stop after N seconds (default: Ctrl-C)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the activity (default 7)")
    demo.add_argument(
        "--db",
        type=Path,
        default=None,
        help="create the state DB here and keep it, with the daemon's log beside it (default: a temp dir)",
    )
    demo.add_argument(
        "--health-port",
        type=int,
        default=8787,
        help="port of the health endpoint (default 8787, or any free port when taken; 0: any)",
    )
    return parser


def _shop_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--shop",
        metavar="ALIAS",
        default=None,
        help="only this shop (an alias of SHOPS, or its domain); default all",
    )


#: commands that only read (or mark) the state DB: they need SYNC_DB and each SHOPIFY_SHOP only
DB_ONLY = frozenset({"status", "parked", "retry"})


def _load(command: str) -> Account:
    """The settings ``command`` needs, of every shop; ConfigError with one line per problem."""
    if command not in DB_ONLY:
        return load_account()
    return load_state_account()


def _settings(command: str, out: TextIO) -> Account | None:
    try:
        return _load(command)
    except ConfigError as exc:
        print("configuration error:", file=out)
        for line in str(exc).splitlines():
            print(f"  {line}", file=out)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check" and args.json and not args.live:
        parser.error("check: --json goes with --live")
    err = sys.stderr
    if args.command == "demo":
        from daemon.demo import run_demo  # noqa: PLC0415  # only the demo needs the simulators

        try:
            return anyio.run(
                lambda: run_demo(
                    seconds=args.seconds, seed_value=args.seed, db=args.db, health_port=args.health_port
                )
            )
        except KeyboardInterrupt:
            return EX_OK
    if args.command == "merge-state":
        return _merge_state(args.path, err)
    account = _settings(args.command, err)
    if account is None:
        return EX_CONFIG
    if args.command != "run":
        # log lines on stderr: stdout carries the command's answer (JSON with --json);
        # `run` configures its own logging (stdout, the journal's)
        configure_logging(account.settings.log_level, account.settings.log_format, stream=err)
    try:
        return anyio.run(_dispatch, args, account)
    except KeyboardInterrupt:
        return EX_OK
    except ConfigError as exc:
        print(f"configuration error: {scrub(str(exc))}", file=err)
        return EX_CONFIG
    except AuthError as exc:
        print(f"authentication failed: {scrub(str(exc))}", file=err)
        return EX_NOPERM
    except FatalError as exc:
        print(f"error: {scrub(str(exc))}", file=err)
        return EX_FAILURE
    except RetriableError as exc:
        print(f"unreachable: {scrub(str(exc))}", file=err)
        return EX_UNAVAILABLE


def _merge_state(path: Path, err: TextIO) -> int:
    """``merge-state PATH``: needs ``SYNC_DB`` only (the shops' settings, when they load, only
    name the shops the account serves)."""
    try:
        db = load_db_settings()
    except ConfigError as exc:
        print("configuration error:", file=err)
        for line in str(exc).splitlines():
            print(f"  {line}", file=err)
        return EX_CONFIG
    configure_logging(db.log_level, db.log_format, stream=err)
    try:
        known: list[str] | None = [shop.settings.shop for shop in load_state_account().shops]
    except ConfigError:
        known = None
    from daemon import app  # noqa: PLC0415  # keeps --help light

    try:
        return anyio.run(lambda: app.merge_state(path, db.sync_db, out=sys.stdout, known=known))
    except FatalError as exc:
        for line in scrub(str(exc)).splitlines():
            print(f"error: {line}", file=err)
        return EX_FAILURE


async def _dispatch(args: argparse.Namespace, account: Account) -> int:
    from daemon import app  # noqa: PLC0415  # keeps `check --offline` and --help light

    out = sys.stdout
    command: str = args.command
    if command == "run":
        await app.run_daemon(account)
        return EX_OK
    shops = account.select(args.shop)
    if command == "check":
        if args.live:
            from daemon.live_check import check_live  # noqa: PLC0415  # only --live needs it

            return await check_live(account, shops, out=out, as_json=args.json)
        return await app.check(account, offline=args.offline, out=out, shops=shops)
    if command == "status":
        return await app.status(account, as_json=args.json, out=out, shops=shops)
    if command == "parked":
        return await app.list_parked(account, as_json=args.json, out=out, shops=shops)
    if command == "reconcile":
        return await app.reconcile(
            account, dry_run=args.dry_run, as_json=args.json, days=args.days, out=out, shops=shops
        )
    if command == "retry":
        return await app.retry(account, key=args.key, out=out, shops=shops)
    print(f"unknown command {command}", file=sys.stderr)
    return EX_USAGE


if __name__ == "__main__":
    sys.exit(main())
