"""The ledger's file: opening it, naming what is wrong with it, and its schema (one
migration step per version, applied in order).

The schema version is ``PRAGMA user_version``. Version 1: ``calls``, one row per call.
Version 2 adds ``test_results``: one row per run of an agent-test case, with the
definition's content hash. Version 3 adds the call's child (``child_pid`` and
``child_created``, its creation time), so recovery after a crash can end a child that
outlived its bridge without ever signalling a reused pid, and the cost the child reported
(``reported_usd``) before the call was settled, so recovery charges that, not the cap.
Version 4 adds ``client``: the ``[clients.<name>]`` entry that made the call (NULL for the
owner's calls), the key its budgets are summed by and jobs and kept answers are fenced by.
Version 5 adds ``wall_ms``, the call's wall time from its start to its answer, beside
``duration_ms``, which is now the CLI's own ``duration_ms`` (it leaves out the bridge's
queue and the CLI's start-up).
Version 6 adds ``decisions``: one row per permission prompt a call's child made, with
who decided (policy, definition, person, time limit, fallback) and what.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from .errors import LedgerError

BUSY_TIMEOUT_S = 10.0
LEDGER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
"""What a failed ledger write raises, on either database: a PostgreSQL store turns a lost
connection into ``ConnectionError``, an ``OSError``."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE calls (
            id TEXT PRIMARY KEY,
            tool TEXT NOT NULL,
            kind TEXT NOT NULL,
            definition_path TEXT NOT NULL,
            definition_sha256 TEXT NOT NULL,
            caller TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT NOT NULL,
            reserved_usd REAL,
            cost_usd REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cache_creation_input_tokens INTEGER,
            cache_read_input_tokens INTEGER,
            num_turns INTEGER,
            session_id TEXT,
            error TEXT,
            prompt_chars INTEGER NOT NULL,
            prompt_sha256 TEXT NOT NULL,
            prompt TEXT,
            duration_ms INTEGER,
            owner TEXT NOT NULL
        )""",
        "CREATE INDEX calls_started_at ON calls (started_at)",
        "CREATE INDEX calls_tool_started_at ON calls (tool, started_at)",
        "CREATE INDEX calls_outcome ON calls (outcome)",
    ),
    (
        # One row per run of one agent-test case (``claude-mcp-bridge test``); ``run_id``
        # groups the rows of one invocation, ``call_id`` points at the agent's call row.
        """CREATE TABLE test_results (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            definition_path TEXT NOT NULL,
            definition_sha256 TEXT NOT NULL,
            test_file TEXT NOT NULL,
            case_name TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            failed_check TEXT,
            message TEXT,
            judge_score REAL,
            cost_usd REAL,
            judge_cost_usd REAL,
            duration_ms INTEGER,
            num_turns INTEGER,
            call_id TEXT
        )""",
        "CREATE INDEX test_results_definition ON test_results (kind, name, recorded_at)",
        "CREATE INDEX test_results_run ON test_results (run_id)",
    ),
    (
        "ALTER TABLE calls ADD COLUMN child_pid INTEGER",
        "ALTER TABLE calls ADD COLUMN child_created REAL",
        "ALTER TABLE calls ADD COLUMN reported_usd REAL",
        # a resumed session is checked against the tool that started it
        "CREATE INDEX calls_session_id ON calls (session_id)",
    ),
    (
        "ALTER TABLE calls ADD COLUMN client TEXT",
        "CREATE INDEX calls_client_started_at ON calls (client, started_at)",
    ),
    ("ALTER TABLE calls ADD COLUMN wall_ms INTEGER",),
    (
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            call_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            decided_at TEXT NOT NULL,
            tool_name TEXT NOT NULL,
            summary TEXT NOT NULL,
            decider TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT,
            question_id TEXT
        )""",
        "CREATE INDEX decisions_tool ON decisions (tool, decided_at)",
        "CREATE INDEX decisions_call ON decisions (call_id)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to date inside the caller's transaction."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise LedgerError(path, (
            f"the ledger has schema version {version}, newer than this bridge knows "
            f"({SCHEMA_VERSION}); upgrade claude-mcp-bridge or point it at another file"))
    for step in _MIGRATIONS[version:]:
        for statement in step:
            db.execute(statement)
    # PRAGMA takes no parameters; SCHEMA_VERSION is our own int.
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def connect(path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection in WAL mode that waits up to ``busy_timeout_s`` for the database."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                                     check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise ledger_error(path, exc) from exc
    connection.row_factory = sqlite3.Row
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        connection.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits,
        # a crash of the process loses nothing. Saves about a millisecond per call.
        connection.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        connection.close()
        raise ledger_error(path, exc) from exc
    return connection


def ledger_error(path: Path, exc: BaseException) -> LedgerError:
    """A LedgerError that names the cause a person can act on."""
    text = str(exc).lower()
    where = "[ledger] path or CLAUDE_MCP_BRIDGE_DATA_DIR"
    if "full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
        return LedgerError(path, f"the disk is full ({exc}); free space on it, or point "
                                 f"{where} at another disk")
    if ("readonly" in text or "read-only" in text or "unable to open" in text
            or isinstance(exc, PermissionError)
            or getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES)):
        return LedgerError(path, f"cannot write there ({exc}); make {path.parent} writable, "
                                 f"or point {where} at a writable folder")
    if "not a database" in text or "malformed" in text:
        return LedgerError(path, f"not a usable SQLite ledger ({exc}); move the file aside "
                                 "(a new ledger is started) or restore it from a backup")
    return LedgerError(path, f"cannot use the ledger ({exc}); check the path and its "
                             "permissions")
