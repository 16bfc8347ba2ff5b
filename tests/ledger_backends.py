"""The ledger's two databases, for tests that run on both: a fresh SQLite file, or a fresh
schema of the PostgreSQL server ``CLAUDE_MCP_BRIDGE_TEST_POSTGRES_URL`` names (start a
throwaway one with ``eval "$(bash .ci/start-postgres)"``). Without a reachable server the
PostgreSQL cases skip, saying why."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import quote

import pytest

from claude_mcp_bridge.ledger import Ledger

POSTGRES_URL_VAR = "CLAUDE_MCP_BRIDGE_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgres")


@cache
def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run, or None."""
    url = os.environ.get(POSTGRES_URL_VAR, "").strip()
    if not url:
        return (f"no PostgreSQL server: set {POSTGRES_URL_VAR} (eval \"$(bash "
                ".ci/start-postgres)\" starts a throwaway one)")
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install -e '.[dev]'"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"the PostgreSQL server at {POSTGRES_URL_VAR} is not reachable: {exc}"
    return None


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose connections use a new, empty schema (dropped afterwards)."""
    if (why := postgres_unavailable()) is not None:
        pytest.skip(why)
    import psycopg

    base = os.environ[POSTGRES_URL_VAR].strip()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def ledger_target(backend: str, tmp_path: Path) -> Iterator[str]:
    """What ``Ledger.open`` opens for ``backend``, as the string a child process gets."""
    if backend == "postgres":
        with postgres_schema() as url:
            yield url
    else:
        yield str(tmp_path / "data" / "ledger.sqlite3")


def on_postgres(ledger: Ledger) -> bool:
    return ledger.where.startswith(("postgresql://", "postgres://"))


def expire_leases(ledger: Ledger) -> None:
    """Let every other bridge's lease run out now (PostgreSQL; SQLite has no leases)."""
    if on_postgres(ledger):
        ledger.write("UPDATE bridges SET lease_until = now() - interval '1 second' "
                     "WHERE owner <> ?", (_me(),))


def hold_lease(ledger: Ledger, owner: str) -> None:
    """A live lease for ``owner``, as its bridge on another host would keep (PostgreSQL)."""
    if on_postgres(ledger):
        ledger.write("INSERT INTO bridges (owner, host, renewed_at, lease_until) VALUES "
                     "(?, ?, now(), now() + interval '1 hour')", (owner, owner.rsplit(":", 2)[0]))


def _me() -> str:
    from claude_mcp_bridge.processes import owner

    return owner(os.getpid())
