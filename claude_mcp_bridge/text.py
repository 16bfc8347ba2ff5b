"""Text to index terms: the one tokenizer the router and the description checks share.

Words are lower-cased, stop words dropped and the rest stemmed with the Snowball English
stemmer (PyStemmer, in C: under a microsecond a word), so "price" meets
"pricing" and "merge" meets "merged", which the earlier hand-written suffix stripper split.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import filterfalse

import Stemmer

_WORD_BYTES = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 or 48 <= c <= 57 else 32
                    for c in range(256))
"""Every byte to itself if it is [a-z0-9], upper-case ASCII to lower-case, anything else
(punctuation, and every byte of a non-ASCII character) to a space."""
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
_STEMMER = Stemmer.Stemmer("english", 0)
"""No cache of its own (``maxCacheSize`` 0): ``_TERMS`` is the cache, and PyStemmer's made
stemming a new catalog's words three times as slow."""
_DOUBLES = frozenset("bdgkmnprt")
_DOUBLED = re.compile(r"([bdgkmnprt])\1$")

_USER_PHRASE = re.compile(
    r"\b(?:use|invoke|call|delegate|trigger|triggers)\b[^.;\n]*?"
    r"\b(?:when|for|after|before|on|to|whenever|if)\b([^.\n]*)", re.IGNORECASE)
_EXAMPLE_TURN = re.compile(
    r"<commentary>.*?(?:</commentary>|$)|\b(user|context|assistant):(.*?)"
    r"(?=\b(?:user|context|assistant):|<|\n|$)", re.IGNORECASE | re.DOTALL)
"""A turn of an ``<example>`` in a description (Claude Code's own agents have them): the
user's words and situation are kept, the assistant's turn and the commentary (which name
the agent and the Task tool) are not."""


def stem(word: str) -> str:
    """The Snowball stem, with a doubled final consonant undone ("debugger" -> "debug",
    as "debugging" already is)."""
    return _DOUBLED.sub(r"\1", _STEMMER.stemWord(word))


class _Terms(dict[str, str]):
    """word -> its index term ("" for a stop word), filled on first sight. A catalog repeats
    its words, so looking one up runs in C and indexing 500 definitions stays fast."""

    def __missing__(self, word: str) -> str:
        term = "" if word in _STOP or len(word) < 2 else stem(word)
        if len(self) < _MAX_REMEMBERED:
            self[word] = term
        return term


_MAX_REMEMBERED = 200_000
_TERMS = _Terms()


def _words(text: str) -> list[str]:
    """The runs of ASCII letters and digits of ``text``, lower-cased: what the regex
    ``[a-z0-9]+`` finds in ``text.lower()``, three times as fast through a byte table (the
    index reads every definition's 4,000 characters of body at start-up)."""
    return text.encode("utf-8", "replace").translate(_WORD_BYTES).decode("ascii").split()


def terms(text: str) -> dict[str, int]:
    """The index terms of ``text`` and how often each occurs."""
    found = _words(text)
    _learn(set(filterfalse(_TERMS.__contains__, set(found))))
    counted = Counter(map(_TERMS.__getitem__, found))
    counted.pop("", None)
    return counted


def _learn(new: set[str]) -> None:
    """Stem the words not seen before in one call into the C stemmer."""
    if not new or len(_TERMS) >= _MAX_REMEMBERED:
        return
    kept = [w for w in new if w not in _STOP and len(w) > 1]
    for word, stemmed in zip(kept, _STEMMER.stemWords(kept), strict=True):
        doubled = stemmed[-1] in _DOUBLES and stemmed[-1] == stemmed[-2:-1]
        _TERMS[word] = stemmed[:-1] if doubled else stemmed
    _TERMS.update(dict.fromkeys(new.difference(kept), ""))


def words(text: str) -> list[str]:
    """The index terms of ``text`` in order."""
    found = _words(text)
    _learn(set(filterfalse(_TERMS.__contains__, found)))
    return [t for t in map(_TERMS.__getitem__, found) if t]


def phrase_words(text: str) -> list[str]:
    """Every word of ``text`` in order: the index term, or the word itself where it is a
    stop word, so that a phrase like "look over" or "drop off" can be matched whole."""
    return [_TERMS[w] or w for w in _words(text)]


def user_phrases(description: str) -> str:
    """What a description says about when to call it ("Use when ...", "Use PROACTIVELY for
    ...", "Triggers on ...", and the user's turns and context in its examples): the
    author's words for the user's situation."""
    said: list[str] = []

    def keep(turn: re.Match[str]) -> str:
        if turn.group(1) and turn.group(1).lower() != "assistant":
            said.append(turn.group(2))
        return " "

    rest = _EXAMPLE_TURN.sub(keep, description) if "<example" in description else description
    return " ".join([*(match.group(1) for match in _USER_PHRASE.finditer(rest)), *said])
