"""Kept answers, beside the ledger: the whole text of an answer cut to the size limit
(``bridge://results/<call id>``) and the replies of jobs (collected with ``job_result``
from any connection, after a restart too). One file per call, named by its id; a client
reads only the answers of its own calls (``visible_to``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .ledger import Ledger
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
        body = {"text": reply.text, "is_error": reply.is_error, "structured": reply.structured}
        self._write(job_id, ".json", json.dumps(body))

    def reply(self, job_id: str) -> Reply | None:
        """A job's kept reply, or None."""
        text = self._read(job_id, ".json")
        if text is None:
            return None
        body = json.loads(text)
        return Reply(body["text"], body["structured"], bool(body["is_error"]))

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
