"""Texts to compare a message with (spam samples, texts an admin said were not spam), by how many
character shingles they share; works for Chinese as well as for English."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from itertools import chain
from math import ceil, sqrt

# Scripts written without spaces between words: Han (with extensions and compatibility
# ideographs), kana and Hangul. A character of these carries about as much as a Latin syllable.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002fa1f"

# Characters that show nothing and are inserted to break words apart for filters.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_NOT_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")
_RUNS = re.compile(f"[{CJK}]+|[^{CJK}]+")
_CJK_CHAR = re.compile(f"[{CJK}]")


def plain(text: str) -> str:
    """`text` as it reads: compatibility forms unified (full-width ＶＸ is VX, 𝐜𝐫𝐲𝐩𝐭𝐨 is
    crypto) and invisible characters removed."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def fold(text: str) -> str:
    """`plain(text)` in one case, to compare without caring about either."""
    return plain(text).casefold()


def is_cjk(char: str) -> bool:
    return _CJK_CHAR.match(char) is not None


def shingles(text: str) -> frozenset[str]:
    """What two texts must share to be alike: character bigrams of Chinese (a word is one or two
    characters), trigrams of other writing. Case, spaces, punctuation and emoji do not count,
    and every number is the same number, so "earn 500$" is "earn 800 $"."""
    return folded_shingles(fold(text))


def folded_shingles(folded: str) -> frozenset[str]:
    """`shingles` of a text already `fold`ed."""
    letters = _DIGITS.sub("0", _NOT_WORD.sub("", folded))
    found: set[str] = set()
    for run in _RUNS.findall(letters):
        if is_cjk(run[0]):
            found.update(map(str.__add__, run, run[1:]) if len(run) > 2 else (run,))
        else:
            trigrams = zip(run, run[1:], run[2:], strict=False)
            found.update(map("".join, trigrams) if len(run) > 3 else (run,))
    return frozenset(found)


class Samples:
    """Texts to compare with, by the cosine of their shingle sets (0: nothing shared, 1: the
    same). An inverted index from shingle to samples makes `best` cost what the text shares
    with the samples, not the number of samples."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self._texts: list[str] = []
        self._sets: list[frozenset[str]] = []
        self._index: dict[str, list[int]] = {}
        self._seen: set[frozenset[str]] = set()
        for text in texts:
            self.add(text)

    def add(self, text: str) -> None:
        """Remember `text`; one that reads like a sample already held (the same shingles), or
        that has nothing to compare (emoji only), is not added again."""
        found = shingles(text)
        if not found or found in self._seen:
            return
        self._seen.add(found)
        number = len(self._texts)
        self._texts.append(text)
        self._sets.append(found)
        for shingle in found:
            self._index.setdefault(shingle, []).append(number)

    def best(self, text: str) -> tuple[float, str | None]:
        """The highest similarity of `text` to a sample, in [0, 1], and that sample; (0.0, None)
        when it shares nothing with any."""
        return self.best_of(shingles(text))

    def best_of(self, found: frozenset[str], at_least: float = 0.0) -> tuple[float, str | None]:
        """`best` for a text's `shingles`, for callers that compare one text with several
        Samples. With `at_least`, only samples that may be that similar are compared: any that
        is comes back exactly, and a lower result may not be the best."""
        if not found:
            return 0.0, None
        if at_least > 0:
            return self._best_above(found, at_least)
        index = self._index
        shared = Counter(chain.from_iterable(index[s] for s in found if s in index))
        if not shared:
            return 0.0, None
        sets = self._sets
        size = len(found)
        similarity, number = max((n / sqrt(size * len(sets[i])), i) for i, n in shared.items())
        return min(similarity, 1.0), self._texts[number]

    def _best_above(self, found: frozenset[str], at_least: float) -> tuple[float, str | None]:
        """Prefix filtering: a sample at least `at_least` like the text shares at least
        at_least² of the text's shingles, so it shares one of any 1 - at_least² of them (and one
        more). Taking the rarest, with the shortest postings, leaves few samples to compare in
        full, which matters with hundreds of English samples that all hold "the" and "ing"."""
        size = len(found)
        least = at_least * at_least
        need = ceil(least * size - 1e-9)
        postings = [self._index.get(s, ()) for s in found]
        postings.sort(key=len)
        candidates = set(chain.from_iterable(postings[: size - need + 1]))
        best, number = 0.0, -1
        for i in candidates:
            other = self._sets[i]
            if not least * size <= len(other) <= size / least:
                continue
            similarity = len(found & other) / sqrt(size * len(other))
            if similarity > best:
                best, number = similarity, i
        return (min(best, 1.0), self._texts[number]) if number >= 0 else (0.0, None)

    def __len__(self) -> int:
        return len(self._texts)
