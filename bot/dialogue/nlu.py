"""Intent matching without a model: normalised words, Snowball stems, keywords and fuzzy scores.

Stems absorb Russian morphology ("заказа", "заказы" → "заказ"), rapidfuzz absorbs typos and word order,
and keywords let an author say "this word alone means this intent". Everything about the examples is
computed once at load, so a match costs one normalisation and one rapidfuzz pass over the examples.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import snowballstemmer
from rapidfuzz import fuzz, process

from bot.dialogue.spec import Intent

THRESHOLD = 75.0  # below this best score the message is not understood
KEYWORD_BONUS = 15.0  # per keyword of the intent present in the message

_CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
_NON_WORD = re.compile(r"[\W_]+")
_RUSSIAN = snowballstemmer.stemmer("russian")
_ENGLISH = snowballstemmer.stemmer("english")


@dataclass(frozen=True)
class Understood:
    """An outside NLU's reading of a message (bot.rasa): the intent (None: not understood) and the
    entities it found, which fill the slots of the flow the intent starts."""

    intent: str | None
    entities: Mapping[str, str] = field(default_factory=dict)


# (text, language) → a reading, or None for "no opinion": the built-in matcher decides instead
Understand = Callable[[str, str], Awaitable[Understood | None]]


def is_cyrillic(text: str) -> bool:
    return _CYRILLIC.search(text) is not None


@lru_cache(maxsize=50_000)
def stem(word: str) -> str:
    """The stem of one normalised word, by its script (a message may mix both languages)."""
    return str((_RUSSIAN if is_cyrillic(word) else _ENGLISH).stemWord(word))


def stems(text: str) -> list[str]:
    """Casefold, ё→е, drop punctuation and bare numbers (an order number says nothing of intent)."""
    words = _NON_WORD.sub(" ", text.casefold().replace("ё", "е")).split()
    return [stem(word) for word in words if not word.isdigit()]


class IntentMatcher:
    def __init__(self, intents: Iterable[Intent], threshold: float = THRESHOLD) -> None:
        self._threshold = threshold
        self._examples: list[str] = []  # stemmed example phrases
        self._sorted: list[str] = []  # the same with words sorted, for a token-sort ratio in one C pass
        self._owners: list[str] = []  # the intent of each example
        self._containing: dict[str, list[int]] = {}  # stem → examples that contain it
        self._keywords: list[tuple[str, frozenset[str]]] = []  # intent, stems of one keyword phrase
        for intent in intents:
            for phrases in intent.examples.values():
                for phrase in phrases:
                    words = stems(phrase)
                    for word in set(words):
                        self._containing.setdefault(word, []).append(len(self._examples))
                    self._examples.append(" ".join(words))
                    self._sorted.append(" ".join(sorted(words)))
                    self._owners.append(intent.name)
            for keyword in intent.keywords:
                self._keywords.append((intent.name, frozenset(stems(keyword))))

    def scores(self, text: str) -> dict[str, float]:
        """Each intent with a chance: its best fuzzy example score (0–100) plus keyword bonuses.

        The fuzzy score averages token_sort_ratio with token_set_ratio, which forgives extra words;
        token_sort alone keeps one shared word ("my", "где") from counting as a full match. With no word
        in common the two ratios are equal, so token_set only runs on examples that share a word.
        """
        words = stems(text)
        if not words:
            return {}
        fuzzy = [0.0] * len(self._examples)
        for _, score, index in process.extract(
            " ".join(sorted(words)), self._sorted, scorer=fuzz.ratio, limit=None
        ):
            fuzzy[index] = score
        query = " ".join(words)
        present = set(words)
        for index in {i for word in present for i in self._containing.get(word, ())}:
            fuzzy[index] = (fuzzy[index] + fuzz.token_set_ratio(query, self._examples[index])) / 2
        scores: dict[str, float] = {}
        for owner, score in zip(self._owners, fuzzy, strict=True):
            scores[owner] = max(score, scores.get(owner, 0.0))
        for owner, keyword in self._keywords:
            if keyword <= present:
                # a keyword alone is enough to understand the message; more of them make it surer
                scores[owner] = max(scores.get(owner, 0.0), self._threshold) + KEYWORD_BONUS
        return scores

    def match(self, text: str) -> str | None:
        scores = self.scores(text)
        best = max(scores, key=scores.__getitem__, default=None)
        return best if best is not None and scores[best] >= self._threshold else None
