"""Router mode: two tools instead of one per definition.

``find_agent`` ranks the published agents and skills for a task description;
``run_agent`` runs one by name. The calling model then pays for two tool
definitions in its context, not fifty.

Ranking is BM25 (Okapi, k1 1.2, b 0.75) over each definition's name (weighted
up), description and tags, on lightly stemmed words without stop words, nudged by
the definition's past success in the ledger. It is lexical: fast (well under a
millisecond per query for hundreds of definitions), explainable (the reason lists
the words that matched) and needs no model or network. A library was considered
(``rank-bm25`` pulls in NumPy for forty lines of arithmetic), and so were embedding
models (hundreds of MB, slow start-up); neither earned its place. Accuracy on the
evaluation set in ``tests/fixtures/`` is reported in the README.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import Catalog, ToolEntry
from .outcomes import Reply

K1 = 1.2
B = 0.75
NAME_WEIGHT = 3.0
"""A word in a definition's name counts as this many words of its description."""
BODY_WEIGHT = 0.3
"""A word of the body (the agent's instructions) counts this much: it adds the
vocabulary a short description leaves out, without drowning it."""
BODY_CHARS = 4000

_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each either else etc every
few for from further had has have having he her here hers him his how i if in into is it its
itself just me more most my need needs no nor not now of off on once only or other our ours out
over own please same she should so some such than that the their theirs them then there these
they this those through to too under until up use used uses using very via want wants was we
were what when where which while who whom why will with would you your yours
agent agents skill skills task tasks help helps something thing things make makes
"""
_STOP = frozenset(_STOP_WORDS.split())


_DOUBLED = re.compile(r"([bdgkmnprt])\1$")


def stem(word: str) -> str:
    """A light suffix stripper: enough to meet "migrations"/"migration",
    "reviewing"/"reviewer"/"review", "debugging"/"debug"; deliberately not Porter."""
    if len(word) <= 4:
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    for suffix in ("ings", "ing", "ers", "er", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return _DOUBLED.sub(r"\1", word[: -len(suffix)])
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]


@dataclass(frozen=True)
class Match:
    tool: str
    name: str
    kind: str
    score: float
    why: str
    description: str


@dataclass(frozen=True)
class _Doc:
    entry: ToolEntry
    terms: dict[str, float]
    length: float
    name_terms: frozenset[str]


class Router:
    """An index of one catalog; rebuilt with the catalog, never mutated."""

    def __init__(self, entries: Iterable[ToolEntry], tags: Mapping[str, list[str]] | None = None):
        self._docs: list[_Doc] = []
        for entry in entries:
            definition = entry.definition
            name_terms = words(definition.name.replace("-", " ").replace("_", " "))
            extra = " ".join((tags or {}).get(entry.name, []))
            terms: dict[str, float] = dict(Counter(words(f"{definition.description} {extra}")))
            for term in name_terms:
                terms[term] = terms.get(term, 0.0) + NAME_WEIGHT
            for term in words(definition.body[:BODY_CHARS]):
                terms[term] = terms.get(term, 0.0) + BODY_WEIGHT
            self._docs.append(_Doc(entry, terms, sum(terms.values()), frozenset(name_terms)))
        count = len(self._docs)
        self._average = sum(d.length for d in self._docs) / count if count else 0.0
        frequency: Counter[str] = Counter()
        for doc in self._docs:
            frequency.update(doc.terms.keys())
        self._idf = {term: math.log(1 + (count - n + 0.5) / (n + 0.5))
                     for term, n in frequency.items()}

    def rank(
        self, task: str, limit: int = 5, history: Mapping[str, tuple[int, int]] | None = None
    ) -> list[Match]:
        """The best ``limit`` definitions for ``task``; ``history`` maps a tool to
        (successful calls, calls) from the ledger."""
        query = Counter(words(task))
        scored: list[tuple[float, _Doc, list[str]]] = []
        for doc in self._docs:
            score, matched = self._score(query, doc)
            if score <= 0:
                continue
            ok, calls = (history or {}).get(doc.entry.name, (0, 0))
            score *= 0.9 + 0.2 * (ok + 1) / (calls + 2)  # 0.9..1.1, 1.0 without history
            scored.append((score, doc, matched))
        scored.sort(key=lambda item: (-item[0], item[1].entry.name))
        return [_match(score, doc, matched, (history or {}).get(doc.entry.name))
                for score, doc, matched in scored[:limit]]

    def _score(self, query: Counter[str], doc: _Doc) -> tuple[float, list[str]]:
        score = 0.0
        matched = []
        norm = K1 * (1 - B + B * doc.length / self._average) if self._average else K1
        for term, wanted in query.items():
            have = doc.terms.get(term, 0)
            if not have:
                continue
            matched.append(term)
            score += self._idf[term] * have * (K1 + 1) / (have + norm) * (1 + math.log(wanted))
        return score, matched


def _match(score: float, doc: _Doc, matched: list[str], history: tuple[int, int] | None) -> Match:
    definition = doc.entry.definition
    in_name = [t for t in matched if t in doc.name_terms]
    why = "matches " + ", ".join(f"{t} (name)" if t in in_name else t for t in matched)
    if history and history[1]:
        ok, calls = history
        why += f"; {calls} past calls, {100 * ok // calls}% succeeded"
    return Match(doc.entry.name, definition.name, definition.kind, round(score, 3), why,
                 definition.description)


def router_for(catalog: Catalog) -> Router:
    tags = {e.name: list((e.tool.meta or {}).get("tags", [])) for e in catalog.entries.values()}
    return Router(catalog.entries.values(), tags)


def find_agent(
    router: Router, arguments: Mapping[str, Any], history: Mapping[str, tuple[int, int]]
) -> Reply:
    """One ``find_agent`` call, its arguments checked: the best matches, with why."""
    task, limit = arguments.get("task"), arguments.get("limit", 5)
    if not isinstance(task, str) or not task.strip():
        return Reply.refused("find_agent", "invalid arguments: task (a non-empty string) is "
                                           "required")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 20:
        return Reply.refused("find_agent", "invalid arguments: limit must be an integer from "
                                           "1 to 20")
    return find_agent_answer(router.rank(task, limit, history), task)


def find_agent_answer(matches: list[Match], task: str) -> Reply:
    if not matches:
        text = (f"no agent or skill matches {task!r}; describe the task with other words, "
                "or list the tools")
        return Reply(text, {"matches": []})
    lines = [f"{i}. {m.name} ({m.kind}, score {m.score:g}): {m.description[:300]}\n   why: {m.why}"
             for i, m in enumerate(matches, 1)]
    text = "Best matches (run one with run_agent and its name):\n" + "\n".join(lines)
    return Reply(text, {"matches": [
        {"name": m.name, "tool": m.tool, "kind": m.kind, "score": m.score, "why": m.why,
         "description": m.description} for m in matches]})


def resolve(catalog: Catalog, name: str) -> ToolEntry | str:
    """The entry a ``run_agent`` name means: a tool name, or a definition name (an agent
    before a skill of the same name); else why not."""
    entry = catalog.get(name)
    if entry is not None:
        return entry
    found = [e for e in catalog.entries.values() if e.definition.name == name]
    found.sort(key=lambda e: e.definition.kind != "agent")
    if found:
        return found[0]
    return f"no agent or skill named {name!r}; use find_agent to look for one"
