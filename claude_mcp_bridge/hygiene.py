"""Description hygiene: what makes delegation to an agent unreliable.

- A description over 2,048 characters: Claude Code cuts it there, and every word of it
  costs the calling model context on every turn.
- Two descriptions so alike (Jaccard similarity of their stemmed words at or above
  ``SIMILAR``) that a calling model cannot tell which to pick.

Pairs are found through an index of the less common words, so thousands of
definitions are checked without comparing every pair.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from agents_registry import Definition

from .text import words

MAX_DESCRIPTION = 2048
SIMILAR = 0.8


@dataclass(frozen=True)
class DescriptionWarning:
    definition: Definition
    reason: str

    def __str__(self) -> str:
        return f"{self.definition.path}: {self.reason}"


def description_warnings(definitions: Iterable[Definition]) -> list[DescriptionWarning]:
    found: list[DescriptionWarning] = []
    items = list(definitions)
    for definition in items:
        if len(definition.description) > MAX_DESCRIPTION:
            found.append(DescriptionWarning(definition, (
                f"description is {len(definition.description):,} characters; Claude Code "
                f"uses the first {MAX_DESCRIPTION:,} and every character costs context")))
    for first, second, similarity in near_duplicates(items):
        found.append(DescriptionWarning(second, (
            f"description is {similarity:.0%} like that of {first.kind} {first.name} "
            f"({first.path}); a calling model cannot tell them apart, so make each say "
            "when to use it")))
    return found


def near_duplicates(
    definitions: list[Definition], threshold: float = SIMILAR
) -> list[tuple[Definition, Definition, float]]:
    vocab = [frozenset(words(d.description)) for d in definitions]
    frequency = Counter(term for terms in vocab for term in terms)
    common = max(5, len(definitions) // 20)
    index: dict[str, list[int]] = defaultdict(list)
    for i, terms in enumerate(vocab):
        for term in terms:
            if frequency[term] <= common:
                index[term].append(i)
    pairs = []
    for i, terms in enumerate(vocab):
        candidates = {j for term in terms if frequency[term] <= common
                      for j in index[term] if j > i}
        if len(terms) < 3 and not candidates:
            candidates = {j for j in range(i + 1, len(vocab)) if vocab[j] == terms}
        for j in sorted(candidates):
            union = len(terms | vocab[j])
            similarity = len(terms & vocab[j]) / union if union else 1.0
            if similarity >= threshold:
                pairs.append((definitions[i], definitions[j], similarity))
    return pairs
