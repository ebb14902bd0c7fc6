"""The one BM25 tokeniser of retrieval-lab.

Every BM25 backend (bm25s, rank_bm25) is fed tokens from :class:`Tokenizer`, so the backends see the same
terms and differ only in how they score them. The steps are those of ``bm25s.tokenize`` (so an index built by
bm25s on its own with the same options has the same vocabulary):

1. lowercase the text;
2. split it with the regex ``(?u)\\b\\w\\w+\\b`` (scikit-learn's ``CountVectorizer`` default: runs of two or more
   word characters; single characters and punctuation are dropped);
3. drop English stop words (``stopwords="en"``: bm25s's ``STOPWORDS_EN``, the 33 words of Lucene's
   ``EnglishAnalyzer`` stop set, which is also what Anserini/Pyserini use), matched on the lowercased, unstemmed word;
4. stem with PyStemmer (``stemmer="english"``: Snowball English, i.e. Porter2).

>>> Tokenizer()("The runners are running.")
['runner', 'run']
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import Stemmer
from bm25s.stopwords import STOPWORDS_EN
from tqdm.auto import tqdm

TOKEN_PATTERN = r"(?u)\b\w\w+\b"

# Bumped whenever a change here would change the tokens of some text: it goes into index cache keys.
TOKENIZER_VERSION = 1

STOPWORD_LISTS: dict[str, tuple[str, ...]] = {"en": tuple(STOPWORDS_EN)}
_STOPWORD_ALIASES = {"en": "en", "english": "en"}

_DROP = None  # cache value of a stop word


def _stopword_list_name(stopwords: str | None) -> str | None:
    if stopwords is None:
        return None
    name = _STOPWORD_ALIASES.get(str(stopwords).lower())
    if name is None:
        raise ValueError(f"stopwords={stopwords!r}: expected one of {sorted(_STOPWORD_ALIASES)} or None")
    return name


def _stemmer_name(stemmer: str | None) -> str | None:
    if stemmer is None:
        return None
    name = str(stemmer).lower()
    if name not in Stemmer.algorithms():
        raise ValueError(f"stemmer={stemmer!r}: expected None or a PyStemmer algorithm, e.g. 'english'")
    return name


class Tokenizer:
    """Lowercase, split on ``TOKEN_PATTERN``, drop stop words, stem (see the module docstring).

    Args:
        stopwords: ``"en"`` (alias ``"english"``) or ``None`` (keep every word).
        stemmer: a PyStemmer algorithm name (``"english"``) or ``None`` (no stemming).

    The word -> term mapping is memoised, so tokenising a large corpus stems each distinct word once.
    """

    def __init__(self, stopwords: str | None = "en", stemmer: str | None = "english"):
        self.stopwords = _stopword_list_name(stopwords)
        self.stemmer = _stemmer_name(stemmer)
        self._split = re.compile(TOKEN_PATTERN).findall
        self._stopword_set = frozenset(STOPWORD_LISTS[self.stopwords]) if self.stopwords else frozenset()
        self._stem = Stemmer.Stemmer(self.stemmer).stemWord if self.stemmer else None
        self._cache: dict[str, str | None] = {}

    def settings(self) -> dict:
        """What determines the tokens: goes into index cache keys."""
        return {
            "tokenizer_version": TOKENIZER_VERSION,
            "lowercase": True,
            "token_pattern": TOKEN_PATTERN,
            "stopwords": self.stopwords,
            "stemmer": self.stemmer,
        }

    def _term(self, word: str) -> str | None:
        if word in self._stopword_set:
            term = _DROP
        else:
            term = self._stem(word) if self._stem is not None else word
        self._cache[word] = term
        return term

    def __call__(self, text: str) -> list[str]:
        cache = self._cache
        out = []
        for word in self._split(text.lower()):
            term = cache[word] if word in cache else self._term(word)
            if term is not _DROP:
                out.append(term)
        return out

    def tokenize(self, texts: Iterable[str], show_progress: bool = False, desc: str = "tokenize") -> list[list[str]]:
        """Tokens of each text, in order (an empty list for a text with no indexable word)."""
        if show_progress:
            texts = tqdm(texts, desc=desc, total=len(texts) if hasattr(texts, "__len__") else None)
        return [self(text) for text in texts]

    def __getstate__(self):  # the compiled regex and the PyStemmer object are rebuilt, the cache is dropped
        return {"stopwords": self.stopwords, "stemmer": self.stemmer}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"Tokenizer(stopwords={self.stopwords!r}, stemmer={self.stemmer!r})"
