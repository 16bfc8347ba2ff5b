"""Description hygiene: what makes delegation to an agent unreliable.

- A description over 2,048 characters: Claude Code cuts it there, and every word of it
  costs the calling model context on every turn.
- Two descriptions so alike (Jaccard similarity of their stemmed words at or above
  ``SIMILAR``) that a calling model cannot tell which to pick.
- A definition that is hard to find (issue 19): its name and description have no word
  that is distinctive in the catalog (in at most ``DISTINCT_SHARE`` of the definitions),
  or every distinctive word it has is also another definition's, so no task can rank
  it above that one.

Pairs are found through an index of the less common words, so thousands of
definitions are checked without comparing every pair.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from agents_registry import Definition

from .text import terms as index_terms
from .text import words

MAX_DESCRIPTION = 2048
SIMILAR = 0.8
DISTINCT_SHARE = 0.04
FEWEST_TO_JUDGE = 5
"""Below this many definitions, any word tells them apart: no findability warnings."""


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
    pairs = near_duplicates(items)
    for first, second, similarity in pairs:
        found.append(DescriptionWarning(second, (
            f"description is {similarity:.0%} like that of {first.kind} {first.name} "
            f"({first.path}); a calling model cannot tell them apart, so make each say "
            "when to use it")))
    told = {frozenset((id(a), id(b))) for a, b, _ in pairs}
    found += [w for w in hard_to_find(items)
              if not (w.other and frozenset((id(w.definition), id(w.other))) in told)]
    return found


@dataclass(frozen=True)
class FindabilityWarning(DescriptionWarning):
    other: Definition | None = None
    """The definition that always ranks at least as high, if that is the problem."""


def distinctive_words(definitions: list[Definition]) -> list[frozenset[str]]:
    """Per definition, the words of its name and description that few others use."""
    vocab = [frozenset(index_terms(f"{d.name.replace('-', ' ')} {d.description}"))
             for d in definitions]
    frequency = Counter(term for words_ in vocab for term in words_)
    rare = max(2, int(len(definitions) * DISTINCT_SHARE))
    return [frozenset(t for t in words_ if frequency[t] <= rare) for words_ in vocab]


def hard_to_find(definitions: list[Definition]) -> list[FindabilityWarning]:
    """Definitions a task can hardly rank first: no distinctive words, or only words that
    another definition has as well."""
    if len(definitions) < FEWEST_TO_JUDGE:
        return []
    distinct = distinctive_words(definitions)
    holders: dict[str, set[int]] = defaultdict(set)
    for i, words_ in enumerate(distinct):
        for term in words_:
            holders[term].add(i)
    found = []
    for i, words_ in enumerate(distinct):
        definition = definitions[i]
        if not words_:
            found.append(FindabilityWarning(definition, (
                "no word of its name or description is distinctive in this catalog (each "
                "is in many descriptions); say what it works on, with the words a user "
                "would use"), None))
            continue
        shadows = set.intersection(*(holders[t] for t in words_)) - {i}
        if shadows:
            other = definitions[min(shadows)]
            found.append(FindabilityWarning(definition, (
                f"every distinctive word of its description is also in {other.kind} "
                f"{other.name}'s ({other.path}), so no task can rank it above that one; "
                "say what only this one does"), other))
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
