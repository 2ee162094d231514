"""Which language to answer a message in: each message is judged on its own.

A message that plainly says its language switches to it: mostly Cyrillic words → Russian, an English
sentence or greeting → English. One that says nothing ("ok", "1", "yes", an order number, a link
code, "/start", a button press) keeps the current language. A language chosen for the contact (set by
the CRM, profile field `lang_set`) wins over any detection.

"English sentence" is deliberately narrow: two or more Latin words with at least one English
function word that cannot also be a transliterated Russian one ("my" is "мы", "do" is "до", "a" and
"i" are conjunctions), or a greeting. "iPhone 13 Pro" and "privet kak dela" say nothing.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[\w']+")
_CYRILLIC = re.compile(r"[а-яё]+")
_LATIN = re.compile(r"[a-z]+")
GREETINGS = frozenset({"hello", "hi", "hey", "hiya", "morning", "afternoon", "evening"})
FUNCTION_WORDS = frozenset({
    "the", "an", "you", "your", "me", "we", "our", "is", "are", "am", "was", "were", "does", "did", "can",
    "could", "would", "will", "what", "where", "when", "why", "how", "who", "which", "this", "that", "it",
    "there", "have", "has", "need", "want", "with", "for", "from", "and", "not", "of", "in", "im",
})


def written_in(text: str | None) -> str | None:
    """"ru" or "en" when the message plainly is in it, else None (it says nothing about language)."""
    words = [token.replace("'", "") for token in _TOKEN.findall((text or "").casefold())]
    cyrillic = sum(1 for w in words if _CYRILLIC.fullmatch(w))
    latin = [w for w in words if _LATIN.fullmatch(w)]
    if cyrillic > len(latin):
        return "ru"
    english = any(w in GREETINGS for w in latin) or (len(latin) >= 2 and any(w in FUNCTION_WORDS for w in latin))
    if english:
        return "en"
    return "ru" if cyrillic else None


def reply_language(text: str | None, *, chosen: str | None, current: str | None, default: str) -> str:
    """`chosen` (CRM or customer) wins; then what this message is written in; then the language of the
    conversation so far; then `default`."""
    return chosen or written_in(text) or current or default
