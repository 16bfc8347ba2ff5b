"""Kept answers: the whole text of an answer cut to the size limit
(``bridge://results/<call id>``) and the replies of jobs (collected with ``job_result``
from any connection, after a restart too).

Beside a SQLite ledger they are files, one per call, named by its id (``AnswerStore``). In
a PostgreSQL ledger they are rows of its ``answers`` table (``LedgerAnswers``), so any
bridge sharing the database serves any job's answer. ``kept_answers`` picks one. A client
reads only the answers of its own calls (``visible_to``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from .ledger import Ledger, storable
from .outcomes import Reply

RESULTS_URI = "bridge://results/"
"""Prefix of the resource holding a whole answer that was cut to the size limit."""


def visible_to(ledger: Ledger, call_id: str, client: str | None) -> bool:
    """Whether ``client`` may read the call's job or kept answer: the owner (None) reads
    every one, a client only its own (blocking: run it in a thread)."""
    if client is None:
        return True
    row = ledger.get(call_id)
    return row is not None and row["client"] == client


class Answers(Protocol):
    """Where answers are kept; every method blocks (run it in a thread) and a failed write
    raises ``OSError``."""

    def keep_text(self, call_id: str, text: str) -> str: ...

    def full_text(self, call_id: str) -> str | None: ...

    def keep_reply(self, job_id: str, reply: Reply) -> None: ...

    def reply(self, job_id: str) -> Reply | None: ...


def kept_answers(ledger: Ledger, directory: Path) -> Answers:
    """The ledger's table when it keeps answers (PostgreSQL), else files in ``directory``."""
    return LedgerAnswers(ledger) if ledger.keeps_answers else AnswerStore(directory)


class LedgerAnswers:
    """Kept answers as rows of the ledger's ``answers`` table (kind ``text`` or ``reply``);
    a lost database connection raises ``ConnectionError``, an ``OSError``."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def keep_text(self, call_id: str, text: str) -> str:
        self._keep(call_id, "text", text)
        return RESULTS_URI + call_id

    def full_text(self, call_id: str) -> str | None:
        return self._kept(call_id, "text")

    def keep_reply(self, job_id: str, reply: Reply) -> None:
        self._keep(job_id, "reply", _reply_json(reply))

    def reply(self, job_id: str) -> Reply | None:
        text = self._kept(job_id, "reply")
        return None if text is None else _reply_of(text)

    def _keep(self, call_id: str, kind: str, body: str) -> None:
        self._ledger.write(
            "INSERT INTO answers (call_id, kind, body) VALUES (?, ?, ?) ON CONFLICT "
            "(call_id, kind) DO UPDATE SET body = excluded.body", (call_id, kind, storable(body)))

    def _kept(self, call_id: str, kind: str) -> str | None:
        rows = self._ledger.rows("SELECT body FROM answers WHERE call_id = ? AND kind = ?",
                                 (call_id, kind))
        return str(rows[0]["body"]) if rows else None


class AnswerStore:
    """A folder of kept answers; every method does blocking file I/O (run it in a thread)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def keep_text(self, call_id: str, text: str) -> str:
        """Keep the whole answer of a cut call; returns the URI that serves it."""
        self._write(call_id, ".txt", text)
        return RESULTS_URI + call_id

    def full_text(self, call_id: str) -> str | None:
        """The whole answer kept for a cut call, or None."""
        return self._read(call_id, ".txt")

    def keep_reply(self, job_id: str, reply: Reply) -> None:
        self._write(job_id, ".json", _reply_json(reply))

    def reply(self, job_id: str) -> Reply | None:
        """A job's kept reply, or None."""
        text = self._read(job_id, ".json")
        return None if text is None else _reply_of(text)

    def _write(self, call_id: str, suffix: str, text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{call_id}{suffix}"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError:
            # A part written to a full disk would only starve the ledger: remove it.
            path.unlink(missing_ok=True)
            raise

    def _read(self, call_id: str, suffix: str) -> str | None:
        if not call_id.isalnum():  # ids are hex; anything else could name another path
            return None
        path = self.directory / f"{call_id}{suffix}"
        return path.read_text(encoding="utf-8") if path.is_file() else None


def _reply_json(reply: Reply) -> str:
    return json.dumps({"text": reply.text, "is_error": reply.is_error,
                       "structured": reply.structured, "meta": reply.meta})


def _reply_of(text: str) -> Reply:
    body = json.loads(text)
    return Reply(body["text"], body["structured"], bool(body["is_error"]), body.get("meta"))
