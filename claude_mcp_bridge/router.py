"""Router mode: two tools instead of one per definition.

``find_agent`` ranks the published agents and skills for a task description;
``run_agent`` runs one by name. The calling model then pays for two tool
definitions in its context, not fifty.

Ranking is BM25F (BM25 over several fields, each with its own weight and length
normalisation) on Snowball-stemmed words (``text.py``), nudged by the definition's
past success in the ledger. The fields:

- name: the words of the name, weighted up, but only as far as the word is distinctive
  in this catalog ("react", "install", "pro" in a name say little when many
  descriptions use them);
- phrases: the author's words for when to call it ("Use when ...", "Use PROACTIVELY
  for ...", "Triggers on ...") and the configured tags: the user's own vocabulary;
- description;
- body: the agent's instructions, weighted down: the best single signal for tasks
  phrased away from the description, without drowning it.

Two of the task's words that the name or description has side by side ("state file",
"re render") add a bonus of their own: a phrase says more than its words apart.

Users and authors name the same thing differently ("pods" / "Kubernetes"), so the task
is also matched, at a lower weight, through the words ``vocabulary.py`` relates to its
words; a match says which of the task's words brought each related word in.

Evaluated on three public collections and the team's own set (``bench/router_eval.py``,
figures in the README). The index is built once per catalog: postings hold each
term's finished contribution, made the first time a task uses the term, so a query
mostly sums them (about 3 ms of CPU at p50 for 500 definitions). No model and no
network: an embedding model was weighed and left out (README).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any, Literal

from .catalog import Catalog, ToolEntry
from .outcomes import Reply
from .text import phrase_words, terms, user_phrases, words
from .vocabulary import vocabulary

Field = Literal["name", "phrases", "description", "body"]
FIELDS: tuple[Field, ...] = ("name", "phrases", "description", "body")
BODY_CHARS = 4000
MAX_CACHED_TERMS = 50_000
"""Tasks bring words of their own; past this many, postings are worked out each time."""


@dataclass(frozen=True)
class Weights:
    """How the fields add up; the defaults were chosen on the tune split only."""

    k1: float = 1.2
    weight: Mapping[Field, float] = field(default_factory=lambda: {
        "name": 3.0, "phrases": 1.0, "description": 1.0, "body": 0.3})
    b: Mapping[Field, float] = field(default_factory=lambda: {
        "name": 0.0, "phrases": 0.5, "description": 0.75, "body": 0.75})
    distinct_names: bool = True
    """Scale a name word's weight by its IDF relative to the rarest word's."""
    related: float = 0.4
    """What a word brought in by ``vocabulary.py`` counts for, against one the task has;
    each of the task's words that brings it in adds this much, up to 1."""
    related_phrase: float = 0.6
    """The same for a phrase of the table ("out of memory", "look over"): it names one
    thing, where a word alone ("memory", "look") is more often about something else."""
    pairs: float = 0.5
    """Two of the task's words in a row that are also in a row in the name or description
    ("state file", "re render"): this times their mean IDF is added, as a phrase says
    more than its words apart."""
    numbers: float = 0.5
    """What a number the task has ("20 GB", "5% of traffic") counts for: in a task it is a
    quantity more often than a name, and "20" should not send a pandas job to C++20."""


@dataclass(frozen=True)
class Match:
    tool: str
    name: str
    kind: str
    score: float
    why: str
    description: str
    matched: Mapping[str, tuple[Field, ...]] = field(default_factory=dict)
    """Each matched word of the task and the fields it was found in."""
    related: Mapping[str, tuple[str, tuple[Field, ...]]] = field(default_factory=dict)
    """Each matched word the task did not have: the task's word that brought it in, and
    the fields it was found in."""
    pairs: tuple[tuple[str, str], ...] = ()
    """The task's words that are also side by side in the name or description."""


_Posting = tuple[int, float, tuple[Field, ...]]
"""(document, the term's finished score in it, the fields it occurs in)."""


class Router:
    """An index of one catalog; rebuilt with the catalog. Building it only counts the words
    of each field; a term's postings are worked out the first time a task uses the term and
    kept, so start-up stays small and repeated words cost a lookup."""

    def __init__(self, entries: Iterable[ToolEntry], tags: Mapping[str, list[str]] | None = None,
                 weights: Weights | None = None):
        self._weights = weights or Weights()
        self._entries = list(entries)
        self._said = [(words(_name_text(e)), words(e.definition.description))
                      for e in self._entries]
        """Each definition's name and description as terms in order, for ``_pairs``."""
        self._docs = [_fields(entry, (tags or {}).get(entry.name, []), said)
                      for entry, said in zip(self._entries, self._said, strict=True)]
        count = len(self._docs)
        self._count = count
        self._rarest = math.log(1 + (count - 0.5) / 1.5) if count else 1.0
        lengths = [{f: sum(doc[f].values()) for f in FIELDS} for doc in self._docs]
        average = {f: sum(n[f] for n in lengths) / count if count else 1.0 for f in FIELDS}
        w = self._weights
        self._norm = [{f: w.weight[f] / (1 - w.b[f] + w.b[f] * n[f] / (average[f] or 1.0))
                       for f in FIELDS} for n in lengths]
        self._postings: dict[str, list[_Posting]] = {}
        self._pair_postings: dict[str, list[int]] = {}

    def idf(self, term: str) -> float:
        """How distinctive ``term`` is in this catalog (0 for a word no definition has)."""
        return self._idf(len(self._holders(term)))

    def _idf(self, n: int) -> float:
        return math.log(1 + (self._count - n + 0.5) / (n + 0.5)) if n else 0.0

    def _holders(self, term: str) -> list[int]:
        return [i for i, has in enumerate(self._has) if term in has]

    @cached_property
    def _has(self) -> list[set[str]]:
        """Each definition's terms, any field: a new term's postings visit only its holders.
        Made by the first task (about 10 ms at 500 definitions), not at start-up."""
        return [doc["name"].keys() | doc["phrases"].keys() | doc["description"].keys()
                | doc["body"].keys() for doc in self._docs]

    @cached_property
    def _pairs(self) -> list[frozenset[str]]:
        """Each definition's words side by side in its name or description, as "one two".
        Made by the first task, not at start-up; strings, not tuples, and one set each,
        so the index adds few objects for the garbage collector to walk."""
        return [frozenset([*map(" ".join, pairwise(name)),
                           *map(" ".join, pairwise(description))])
                for name, description in self._said]

    def _pair_holders(self, pair: str) -> list[int]:
        found = self._pair_postings.get(pair)
        if found is None:
            found = [i for i, pairs in enumerate(self._pairs) if pair in pairs]
            if len(self._pair_postings) < MAX_CACHED_TERMS:
                self._pair_postings[pair] = found
        return found

    def postings(self, term: str) -> list[_Posting]:
        found = self._postings.get(term)
        if found is not None:
            return found
        holders = self._holders(term)
        idf = self._idf(len(holders))
        k1 = self._weights.k1
        name_scale = min(idf / self._rarest, 1.0) if self._weights.distinct_names else 1.0
        found = []
        for i in holders:
            doc, norm = self._docs[i], self._norm[i]
            fields = tuple(f for f in FIELDS if term in doc[f])
            tf = sum(doc[f][term] * norm[f] * (name_scale if f == "name" else 1.0)
                     for f in fields)
            found.append((i, idf * tf * (k1 + 1) / (tf + k1), fields))
        if len(self._postings) < MAX_CACHED_TERMS:
            self._postings[term] = found
        return found

    def rank(
        self, task: str, limit: int = 5, history: Mapping[str, tuple[int, int]] | None = None
    ) -> list[Match]:
        """The best ``limit`` definitions for ``task``; ``history`` maps a tool to
        (successful calls, calls) from the ledger."""
        said = words(task)
        query = Counter(said)
        scores: dict[int, float] = defaultdict(float)
        matched: dict[int, dict[str, tuple[Field, ...]]] = defaultdict(dict)
        for term, wanted in query.items():
            weight = (1 + math.log(wanted)) * (self._weights.numbers if term.isdigit() else 1.0)
            for doc, contribution, fields in self.postings(term):
                scores[doc] += contribution * weight
                matched[doc][term] = fields
        related: dict[int, dict[str, tuple[str, tuple[Field, ...]]]] = defaultdict(dict)
        hints = (self._weights.related, self._weights.related_phrase)
        for term, (source, weight) in _related(phrase_words(task), query, hints).items():
            weight = min(1.0, weight)
            for doc, contribution, fields in self.postings(term):
                scores[doc] += contribution * weight
                related[doc][term] = (source, fields)
        pairs = self._side_by_side(said, scores)
        ranked = []
        for i, score in scores.items():
            ok, calls = (history or {}).get(self._entries[i].name, (0, 0))
            ranked.append((score * (0.9 + 0.2 * (ok + 1) / (calls + 2)), i))  # 0.9..1.1
        ranked.sort(key=lambda item: (-item[0], self._entries[item[1]].name))
        spelled = _spellings(task)
        return [_match(score, self._entries[i], (matched[i], related[i], tuple(pairs[i])),
                       spelled, (history or {}).get(self._entries[i].name))
                for score, i in ranked[:limit]]

    def _side_by_side(self, said: list[str], scores: dict[int, float]
                      ) -> dict[int, list[tuple[str, str]]]:
        """Add the bonus for each two words of the task that a name or description has side
        by side; the pairs each definition had."""
        pairs: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for pair in dict.fromkeys(pairwise(said)):
            holders = self._pair_holders(" ".join(pair))
            if not holders:
                continue
            idf = self._idf(len(self.postings(pair[0]))) + self._idf(len(self.postings(pair[1])))
            for doc in holders:
                scores[doc] += self._weights.pairs * idf / 2
                pairs[doc].append(pair)
        return pairs


def _related(phrase: list[str], said: Mapping[str, int], hints: tuple[float, float]
             ) -> dict[str, tuple[str, float]]:
    """The index terms ``vocabulary.py`` relates to the task's words or phrases (the task
    as ``phrase_words`` gives it), leaving out those the task ``said``: each with the
    words that first brought it in, and its weight: ``hints`` (a word's, a phrase's) summed
    over the task's words and phrases that bring it in (two hints weigh more than one)."""
    table = vocabulary().related
    found: dict[str, tuple[str, float]] = {}
    for start in range(len(phrase)):
        for length in (3, 2, 1):
            key = tuple(phrase[start:start + length])
            if len(key) == length and key in table:
                for term in table[key]:
                    source, weight = found.get(term, (" ".join(key), 0.0))
                    found[term] = (source, weight + hints[length > 1])
    return {term: brought for term, brought in found.items() if term not in said}


def _name_text(entry: ToolEntry) -> str:
    return entry.definition.name.replace("-", " ").replace("_", " ")


def _fields(entry: ToolEntry, tags: list[str], said: tuple[list[str], list[str]]
            ) -> dict[Field, dict[str, int]]:
    """The terms of each field and how often; ``said`` is the name and description in
    terms, already made."""
    definition = entry.definition
    own_tags = definition.extra.get("tags")
    if isinstance(own_tags, str):
        own_tags = own_tags.split(",")
    vocabulary = [*tags, *(str(t) for t in own_tags or [])]
    return {
        "name": Counter(said[0]),
        "phrases": terms(f"{user_phrases(definition.description)} {' '.join(vocabulary)}"),
        "description": Counter(said[1]),
        "body": terms(definition.body[:BODY_CHARS]),
    }


def _spellings(task: str) -> dict[str, str]:
    """Each stem of the task and the first word of the task that gave it, to show."""
    spelled: dict[str, str] = {}
    for word in task.lower().replace("-", " ").split():
        for part in words(word):
            spelled.setdefault(part, word.strip(".,;:!?()[]{}'\"`"))
    return spelled


_FIELD_LABEL: dict[Field, str] = {"name": "name", "phrases": "when to use",
                                  "description": "description", "body": "instructions"}


_Found = tuple[Mapping[str, tuple[Field, ...]], Mapping[str, tuple[str, tuple[Field, ...]]],
               tuple[tuple[str, str], ...]]
"""What a definition matched: the task's words, related words, and pairs of words."""


def _match(score: float, entry: ToolEntry, found: _Found, spelled: Mapping[str, str],
           history: tuple[int, int] | None) -> Match:
    definition = entry.definition
    matched, related, pairs = found
    order = sorted(matched, key=lambda t: FIELDS.index(matched[t][0]))
    said = [f"{spelled.get(t, t)} ({_labels(matched[t])})" for t in order]
    brought = [f"{vocabulary().spelled.get(t, t)} for "
               f"{' '.join(spelled.get(w, w) for w in source.split())} ({_labels(fields)})"
               for t, (source, fields) in sorted(related.items(),
                                                 key=lambda item: FIELDS.index(item[1][1][0]))]
    together = [f'"{spelled.get(a, a)} {spelled.get(b, b)}"' for a, b in pairs]
    why = "; ".join(part for part in (
        "matches " + ", ".join(said) if said else "",
        "side by side: " + ", ".join(together) if together else "",
        "related words: " + ", ".join(brought) if brought else "") if part)
    if history and history[1]:
        ok, calls = history
        why += f"; {calls} past calls, {100 * ok // calls}% succeeded"
    return Match(entry.name, definition.name, definition.kind, round(score, 3), why,
                 definition.description, dict(matched), dict(related), pairs)


def _labels(fields: tuple[Field, ...]) -> str:
    return ", ".join(_FIELD_LABEL[f] for f in fields)


def router_for(catalog: Catalog, weights: Weights | None = None) -> Router:
    tags = {e.name: list((e.tool.meta or {}).get("tags", [])) for e in catalog.entries.values()}
    return Router(catalog.entries.values(), tags, weights)


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
