"""Everyday software words and the words agent descriptions use for the same thing.

A user says "the pods keep restarting"; the agent says "Kubernetes". A user says "a blind
user can't check out"; the agent says "accessibility". Lexical ranking finds an agent only
through a shared word, so ``find_agent`` adds, at a low weight, the words this table
relates to the task's words (``router.py``). The table is general software vocabulary
written from what the words mean: synonyms, abbreviations, tools -> what they are for,
symptoms -> the discipline that treats them. It knows no particular catalog.

The table is ``vocabulary.txt`` beside this file, a few hundred lines of ``word, word, ...:
related, related, ...``: any word on the left (or phrase, matched as consecutive words)
brings in every word on the right. Both sides are stemmed as the index is, so "pods"
matches "pod" and "tests" adds what "test" adds; a phrase keeps its stop words, so "look
over" matches "look over" and not every "look".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .text import phrase_words, words

_TABLE = Path(__file__).with_name("vocabulary.txt")


@dataclass(frozen=True)
class Vocabulary:
    related: dict[tuple[str, ...], frozenset[str]]
    """Key (one word or a phrase, as ``phrase_words`` gives it) -> the index terms it
    brings in."""
    spelled: dict[str, str]
    """A stem brought in -> the table's word for it, to show ("kubernet" -> "kubernetes")."""


@cache
def vocabulary() -> Vocabulary:
    """The table, stemmed; made the first time a task is ranked."""
    table: dict[tuple[str, ...], set[str]] = {}
    spelled: dict[str, str] = {}
    for line in _TABLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keys, _, related = line.partition(":")
        for word in related.replace(",", " ").split():
            for term in words(word):  # the longest word: "accessibility", not "access"
                if len(word) > len(spelled.get(term, "")):
                    spelled[term] = word
        brought = set(words(related))
        for key in keys.split(","):
            if stems := tuple(phrase_words(key)):
                table.setdefault(stems, set()).update(brought)
    related_ = {key: frozenset(brought - set(key)) for key, brought in table.items()}
    return Vocabulary(related_, spelled)
