"""Shopify's published Admin GraphQL schema (2026-10), for validating our documents.

Shopify ships the schema as introspection JSON inside the npm package
``@shopify/dev-mcp`` (ISC licence). We fetch that package with the ordinary npm client,
take out the one file we need with :mod:`tarfile` and keep it in a cache directory
outside the repository (``$RBSH_SCHEMA_CACHE``, else ``~/.cache/rackbeat-shopify/schema``).
The schema is never committed.

Use the ``shopify_schema`` fixture in tests (register this module with
``pytest_plugins``), or :func:`load_admin_schema` elsewhere. When the schema cannot be
obtained the fixture skips on a developer machine but fails when ``$CI`` is set: a CI
run that silently skipped the contract tests would prove nothing.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any, cast

import pytest
from graphql import GraphQLSchema, IntrospectionQuery, build_client_schema

API_VERSION = "2026-10"
NPM_PACKAGE = "@shopify/dev-mcp@1.16.0"
MEMBER = f"package/dist/data/admin_{API_VERSION}.json.gz"
#: npm may have to download the package on a cold cache
NPM_TIMEOUT_SECONDS = 300


class SchemaUnavailable(RuntimeError):
    """The schema could not be fetched or read; the message says why."""


def cache_dir() -> Path:
    """Where the extracted schema file is kept between runs."""
    configured = os.environ.get("RBSH_SCHEMA_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "rackbeat-shopify" / "schema"


def schema_path() -> Path:
    """Return the cached ``admin_2026-10.json.gz``, fetching it with npm on first use."""
    target = cache_dir() / Path(MEMBER).name
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaUnavailable(f"npm is not installed; it is needed to fetch {NPM_PACKAGE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shopify-schema-") as work:
        try:
            # Fixed arguments, no shell: nothing here comes from outside the test suite.
            result = subprocess.run(  # noqa: S603
                [npm, "pack", NPM_PACKAGE, "--silent", "--pack-destination", work],
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SchemaUnavailable(f"npm pack {NPM_PACKAGE} failed: {exc}") from exc
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-500:]
            raise SchemaUnavailable(f"npm pack {NPM_PACKAGE} exited {result.returncode}: {detail}")
        tarballs = sorted(Path(work).glob("*.tgz"))
        if not tarballs:
            raise SchemaUnavailable(f"npm pack {NPM_PACKAGE} produced no tarball")
        _extract_member(tarballs[0], target)
    return target


def _extract_member(tarball: Path, target: Path) -> None:
    """Copy one member out of the package; nothing else is written to disk."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            source = archive.extractfile(MEMBER)
            if source is None:
                raise SchemaUnavailable(f"{MEMBER} in {tarball.name} is not a regular file")
            # Write beside the target and rename, so a crash or a parallel run never
            # leaves a half-written file where the cache expects a complete one.
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as out:
                shutil.copyfileobj(source, out)
            os.replace(out.name, target)
    except KeyError as exc:
        raise SchemaUnavailable(f"{tarball.name} has no {MEMBER}") from exc
    except (OSError, tarfile.TarError) as exc:
        raise SchemaUnavailable(f"cannot read {tarball.name}: {exc}") from exc


def _read_introspection(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        data: Any = json.load(handle)
    if not isinstance(data, dict):
        raise TypeError("introspection JSON is not an object")
    inner = data.get("data", data)
    if not isinstance(inner, dict) or "__schema" not in inner:
        raise ValueError("introspection JSON has no __schema")
    return inner


@functools.cache
def load_admin_schema() -> GraphQLSchema:
    """Shopify's Admin API schema for 2026-10, built once per process.

    Raises :class:`SchemaUnavailable` when npm is missing or the package cannot be read.
    """
    path = schema_path()
    try:
        introspection = _read_introspection(path)
    except (OSError, EOFError, ValueError, TypeError) as exc:
        # A damaged cache file (interrupted copy, disk trouble): fetch it once more.
        path.unlink(missing_ok=True)
        try:
            introspection = _read_introspection(schema_path())
        except (OSError, EOFError, ValueError, TypeError) as again:
            raise SchemaUnavailable(f"cannot read {path}: {again}") from exc
    # assume_valid: the published schema trips one of graphql-core's own schema
    # validity rules; the schema is Shopify's, not ours to fix, and documents are
    # still validated against it in full.
    return build_client_schema(cast(IntrospectionQuery, introspection), assume_valid=True)


def require_admin_schema() -> GraphQLSchema:
    """The schema, or skip the test (fail instead when ``$CI`` is set)."""
    try:
        return load_admin_schema()
    except SchemaUnavailable as exc:
        reason = f"Shopify Admin {API_VERSION} schema unavailable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def shopify_schema() -> GraphQLSchema:
    """Shopify's Admin GraphQL schema (2026-10) as a graphql-core schema."""
    return require_admin_schema()
