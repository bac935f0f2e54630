"""The ``run`` command's process loads neither the simulators nor graphql-core (memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_process import REPO, clean_env

#: every module the ``run`` path wires (the flows, the bulk read, health, the runner)
RUN_PATH = (
    "daemon.__main__",
    "daemon.app",
    "daemon.services",
    "daemon.runner",
    "daemon.health",
    "daemon.bulk",
    "daemon.index",
    "daemon.flows.orders",
    "daemon.flows.stock",
    "daemon.flows.products",
    "daemon.flows.fulfilments",
)


@pytest.mark.timeout(60)
def test_the_run_path_imports_no_simulator_and_no_graphql_core() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {RUN_PATH!r}:\n"
        "    importlib.import_module(name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'graphql' "
        "or m.startswith('daemon.sim'))))\n"
    )
    done = subprocess.run(  # noqa: S603  # this interpreter, fixed arguments
        [sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
    # the check can fail: the demo does load them
    code_demo = code.replace(f"{RUN_PATH!r}", repr(("daemon.demo",)))
    demo = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code_demo],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "daemon.sim.shopify" in demo.stdout
