"""BM25 index: one interface over two libraries (bm25s, rank_bm25), one tokeniser, Lucene's BM25.

Scoring (``method="lucene"``: Lucene >= 8, Anserini, Pyserini; Kamphuis et al., ECIR 2020)::

    score(q, d) = sum over query terms t (a repeated term counts again) of
                  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))          (always > 0)

``|d|`` and ``avgdl`` count tokens after stop-word removal and stemming, exactly (Lucene stores document lengths
lossily in one byte, which moves its scores slightly). Both backends get their tokens from
:class:`~retrieval_lab.indexes.tokenize.Tokenizer`, so they index the same terms.

Backends:

- ``"bm25s"`` (fast): ``bm25s.BM25(method=...)`` indexes our token ids (its ``Tokenized`` input; it never
  re-tokenises) into a sparse (term, doc) -> score matrix. A query is scored by bm25s's ``get_scores_from_ids``
  (the sum of the query terms' columns), then :func:`_top_k` selects. Any bm25s ``method`` works: ``lucene``,
  ``robertson``, ``atire``, ``bm25l``, ``bm25+``. ``bm25s_backend`` picks the column-sum kernel: ``"numba"``
  (bm25s's own kernel, JIT-compiled with numba's on-disk cache: ~5x faster than numpy on SciFact), ``"numpy"``
  (bm25s's ``np.add.at``), or ``"auto"`` (default: numba when installed). Same scores either way.
  We do not call ``bm25s.BM25.retrieve``: its numpy top-k cuts ties at rank k arbitrarily, and its numba path
  compiles its kernels without a cache in every process (~5 s, ~9 s with threads; measured in
  ``benchmarks/bench_bm25.py``), more than the whole SciFact test search takes.
- ``"rank_bm25"`` (slow, pure-Python scoring; a reference): rank_bm25's ``BM25Okapi`` with its idf replaced by
  Lucene's and the constant ``(k1 + 1)`` factor of its tf part divided out, so that it gives bm25s ``lucene``'s
  scores (to float32 rounding: bm25s stores float32). Plain ``BM25Okapi`` differs in the idf (the ``(k1 + 1)``
  factor does not change rankings): ``ln(x)`` instead of ``ln(1 + x)``, ``x = (N - df + 0.5) / (df + 0.5)``,
  about the same for rare terms (``1/x`` apart) but lower for common ones, and negative for a term in more than
  half of the documents, which BM25Okapi then floors to ``0.25 * mean idf``: on SciFact "we" (df 3,439 of
  5,183) gets 1.82 where Lucene gives 0.41. That costs 0.003 nDCG@10 on SciFact (``benchmarks/bench_bm25.py``).
  Only ``method="lucene"`` with this backend.

Results: ``search`` returns, per query, at most ``k`` ``(doc_id, score)`` pairs by descending score, ties in
corpus order (also at the cut at rank k). Only documents that share a term with the query are returned (score
> 0): bm25s would pad a short list with score-0 documents, in no meaningful order, and Lucene returns only
matching documents. A query without any indexed term gets ``[]``.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version as _pkg_version
from pathlib import Path

import numpy as np
import rank_bm25
from tqdm.auto import tqdm

from retrieval_lab.indexes.tokenize import Tokenizer

BACKENDS = ("bm25s", "rank_bm25")
BM25S_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
BM25S_KERNELS = ("auto", "numba", "numpy")
FORMAT = "retrieval_lab.bm25"
#: 2: rank_bm25's state as JSON (``rank_bm25.json.gz``); 1 pickled it (never loaded: unpickling can run code).
#: bm25s indexes are the same in both (bm25s's own ``save``: JSON and ``.npy`` arrays, read without pickle).
FORMAT_VERSION = 2
_RANK_BM25_FILE = "rank_bm25.json.gz"
#: the attributes of a built ``LuceneBM25Okapi`` (what ``get_scores`` reads), stored as JSON and set back on load
_RANK_BM25_STATE = ("k1", "b", "epsilon", "corpus_size", "avgdl", "average_idf", "doc_len", "idf", "doc_freqs")

# Progress bars: ours appear only once a loop has run this long (tqdm's `delay`), so short calls stay quiet;
# bm25s's own bars (no delay) only for corpora of at least _BM25S_BARS_MIN documents.
_BAR_DELAY_S = 2.0
_BM25S_BARS_MIN = 50_000
_NO_HITS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best documents with score > 0: descending score, ties by ascending index.

    float32 scores (bm25s): each positive score and its index are packed into one int64 key that orders the same
    way (the bits of a positive float32 order as its value), so a partition and a sort of the keys select and
    order in one go. Other dtypes (rank_bm25's float64): ``argpartition``, fixing up a run of equal scores cut
    at rank ``k`` (kept in corpus order), then a stable sort.
    """
    if scores.dtype == np.float32:
        pos = np.flatnonzero(scores > 0)
        keys = (scores[pos].view(np.int32).astype(np.int64) << 32) | (_IDX_MASK - pos)
        if len(keys) > k:
            keys = np.partition(keys, len(keys) - k)[len(keys) - k :]
        docs = _IDX_MASK - (np.sort(keys)[::-1] & _IDX_MASK)
        return docs, scores[docs]
    n = len(scores)
    if k < n:
        cand = np.argpartition(scores, n - k)[n - k :]
        kth = scores[cand].min()
        if kth > 0 and np.count_nonzero(scores == kth) > np.count_nonzero(scores[cand] == kth):
            above = np.flatnonzero(scores > kth)
            cand = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
        cand = np.sort(cand[scores[cand] > 0])
    else:
        cand = np.flatnonzero(scores > 0)
    top = scores[cand]
    order = np.argsort(-top, kind="stable")  # cand is ascending, so equal scores stay in corpus order
    return cand[order], top[order]


_IDX_MASK = np.int64(0xFFFFFFFF)


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return not os.environ.get("NUMBA_DISABLE_JIT")


_numba_scorer = None


def _bm25s_numba_scorer():
    """bm25s's column-sum kernel (``bm25s.scoring._compute_relevance_from_scores_jit_ready``) JIT-compiled with
    numba's on-disk cache and without the GIL: what ``bm25s.BM25.activate_numba_scorer`` installs, except that
    bm25s compiles it anew in every process. Here the first process on a machine compiles (~1-2 s), later ones
    load it (~0.1 s)."""
    global _numba_scorer
    if _numba_scorer is None:
        from bm25s.scoring import _compute_relevance_from_scores_jit_ready
        from numba import njit

        try:
            _numba_scorer = njit(cache=True, nogil=True)(_compute_relevance_from_scores_jit_ready)
        except RuntimeError:  # numba found no writable cache directory: compile in this process only
            _numba_scorer = njit(nogil=True)(_compute_relevance_from_scores_jit_ready)
    return _numba_scorer


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while we allocate many small tuples (none of them can form a cycle):
    otherwise allocating them triggers collections that walk the whole heap (measured: 20-35% of the
    conversion time). Restores the previous state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class LuceneBM25Okapi(rank_bm25.BM25Okapi):
    """rank_bm25's ``BM25Okapi`` scoring Lucene's BM25: Lucene's idf, and no ``(k1 + 1)`` factor.

    ``BM25Okapi.get_scores`` computes ``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``; dividing by
    the constant ``(k1 + 1)`` leaves Lucene's tf part (the ranking is the same either way).
    """

    def _calc_idf(self, nd):
        n = self.corpus_size
        self.idf = {word: math.log(1.0 + (n - df + 0.5) / (df + 0.5)) for word, df in nd.items()}
        self.average_idf = sum(self.idf.values()) / len(self.idf) if self.idf else 0.0

    def get_scores(self, query):
        return super().get_scores(query) / (self.k1 + 1.0)

    def to_state(self) -> dict:
        """Everything scoring reads, as JSON-able values (floats round-trip exactly through JSON)."""
        return {name: getattr(self, name) for name in _RANK_BM25_STATE}

    @classmethod
    def from_state(cls, state: dict, source: str = "state") -> LuceneBM25Okapi:
        """The index `to_state` described, without re-indexing; checks shapes and types, executes nothing."""
        missing = [name for name in _RANK_BM25_STATE if name not in state]
        if missing:
            raise ValueError(f"{source}: a rank_bm25 index without {missing}: rebuild it")
        n = state["corpus_size"]
        if not (isinstance(n, int) and isinstance(state["doc_len"], list) and isinstance(state["doc_freqs"], list)
                and len(state["doc_len"]) == len(state["doc_freqs"]) == n and isinstance(state["idf"], dict)
                and all(isinstance(d, dict) for d in state["doc_freqs"])):
            raise ValueError(f"{source}: a malformed rank_bm25 index (corpus_size, doc_len, doc_freqs and idf "
                             "disagree): delete it and rebuild")
        engine = cls.__new__(cls)
        for name in _RANK_BM25_STATE:
            setattr(engine, name, state[name])
        engine.tokenizer = None
        return engine


class BM25Index:
    """A BM25 index over ``(doc_id, text)`` pairs; see the module docstring for the formula and the backends.

    Args:
        k1, b: BM25 parameters (defaults: Anserini's BEIR settings).
        backend: ``"bm25s"`` or ``"rank_bm25"``.
        stopwords: ``"en"`` (Lucene's 33 English stop words) or ``None``.
        stemmer: a PyStemmer algorithm (``"english"``) or ``None``.
        method: BM25 variant: ``"lucene"`` for both backends; bm25s also takes its other variants.
        bm25s_backend: bm25s column-sum kernel, ``"auto"``, ``"numba"`` or ``"numpy"``. Speed only.
        n_threads: threads that search queries in parallel (1: the calling thread; -1: all cores). Speed only;
            the numba kernel releases the GIL, numpy's ``np.add.at`` and rank_bm25 mostly do not.

    ``settings()`` holds what determines the scores (the cache key); speed options are left out of it.

    Three forms of the same results: ``search`` (lists of ``(doc_id, score)``), ``search_run`` (a Run, qid ->
    doc id -> score: build Runs with it, it skips the tuples) and ``search_arrays`` (no Python objects). On
    SciFact's 300 queries x top 1000, building the 300k tuples of ``search`` takes longer than the search itself
    (``benchmarks/bench_bm25.py``).

    Example:
        >>> index = BM25Index()
        >>> index.build(["d1", "d2"], ["cats purr", "dogs are running"], show_progress=False)
        >>> [doc for doc, _ in index.search(["running dog"], k=10)[0]]
        ['d2']
    """

    def __init__(
        self,
        k1: float = 0.9,
        b: float = 0.4,
        backend: str = "bm25s",
        stopwords: str | None = "en",
        stemmer: str | None = "english",
        method: str = "lucene",
        *,
        bm25s_backend: str = "auto",
        n_threads: int = 1,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
        if backend == "bm25s" and method not in BM25S_METHODS:
            raise ValueError(f"method={method!r}: bm25s supports {BM25S_METHODS}")
        if backend == "rank_bm25" and method != "lucene":
            raise ValueError(f"method={method!r}: the rank_bm25 backend implements only 'lucene'")
        if bm25s_backend not in BM25S_KERNELS:
            raise ValueError(f"bm25s_backend={bm25s_backend!r}: expected one of {BM25S_KERNELS}")
        if bm25s_backend == "numba" and not _numba_available():
            raise ImportError("bm25s_backend='numba' needs numba (and NUMBA_DISABLE_JIT unset)")
        if not (k1 >= 0 and 0 <= b <= 1):
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = float(k1)
        self.b = float(b)
        self.backend = backend
        self.method = method
        self.bm25s_backend = bm25s_backend
        self.n_threads = int(n_threads)
        self.tokenizer = Tokenizer(stopwords=stopwords, stemmer=stemmer)
        self._doc_ids: list[str] | None = None
        self._doc_ids_arr: np.ndarray | None = None
        self._engine = None  # bm25s.BM25 or LuceneBM25Okapi
        self._vocab: dict[str, int] | None = None  # bm25s: term -> column of its score matrix

    # ------------------------------------------------------------------ description
    def settings(self) -> dict:
        """Everything that determines the scores, JSON-able: the index's cache key. Speed options are left out."""
        return {
            "index": "bm25",
            "backend": self.backend,
            "library_version": _pkg_version(self.backend),
            "k1": self.k1,
            "b": self.b,
            "method": self.method,
            **self.tokenizer.settings(),
            # rank_bm25's storage changed (format 2, JSON): a new key, so a pickled v1 folder is never opened
            **({"storage": "json"} if self.backend == "rank_bm25" else {}),
        }

    @property
    def num_docs(self) -> int:
        return 0 if self._doc_ids is None else len(self._doc_ids)

    @property
    def doc_ids(self) -> list[str]:
        self._check_built()
        return list(self._doc_ids)

    def __repr__(self) -> str:
        return (
            f"BM25Index(k1={self.k1}, b={self.b}, backend={self.backend!r}, stopwords={self.tokenizer.stopwords!r}, "
            f"stemmer={self.tokenizer.stemmer!r}, method={self.method!r}, num_docs={self.num_docs})"
        )

    def nbytes(self) -> int:
        """Bytes of the scoring structures: bm25s's sparse (term, doc) score matrix; rank_bm25's state as JSON."""
        self._check_built()
        if self.backend == "bm25s":
            return int(sum(v.nbytes for v in self._engine.scores.values() if isinstance(v, np.ndarray)))
        return len(json.dumps(self._engine.to_state(), ensure_ascii=False).encode("utf-8"))

    def _check_built(self):
        if self._engine is None:
            raise RuntimeError("BM25Index: build() or load() it before searching")

    def _set_doc_ids(self, doc_ids):
        self._doc_ids = [str(d) for d in doc_ids]
        self._doc_ids_arr = np.array(self._doc_ids, dtype=object)

    # ------------------------------------------------------------------ build
    def build(self, doc_ids: list[str], texts: list[str], show_progress: bool = True) -> None:
        """Index ``texts[i]`` under ``doc_ids[i]`` (unique ids). Replaces any previous content."""
        doc_ids, texts = list(doc_ids), list(texts)
        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(texts)} texts")
        if not doc_ids:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        if len(set(doc_ids)) != len(doc_ids):
            seen, dups = set(), []
            for d in doc_ids:
                if d in seen:
                    dups.append(d)
                seen.add(d)
            raise ValueError(f"duplicate doc ids, e.g. {dups[:5]}")
        tokens = self._tokenize(texts, show_progress, "BM25 tokenize docs")
        if not any(tokens):
            raise ValueError("no document has an indexable term")
        if self.backend == "bm25s":
            self._build_bm25s(tokens, show_progress)
        else:
            self._engine = LuceneBM25Okapi(tokens, k1=self.k1, b=self.b)
        self._set_doc_ids(doc_ids)

    def _tokenize(self, texts, show_progress, desc):
        tok = self.tokenizer
        return [tok(t) for t in tqdm(texts, desc=desc, unit="text", delay=_BAR_DELAY_S, disable=not show_progress)]

    def _build_bm25s(self, tokens, show_progress):
        import bm25s
        from bm25s.tokenization import Tokenized

        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in tokens]
        engine = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        engine.index(
            Tokenized(ids=ids, vocab=vocab),
            create_empty_token=False,  # we never send bm25s a query without indexed terms
            show_progress=show_progress and len(tokens) >= _BM25S_BARS_MIN,
        )
        self._attach_bm25s(engine)

    def _attach_bm25s(self, engine):
        kernel = self.bm25s_backend
        if kernel == "numba" or (kernel == "auto" and _numba_available()):
            engine._compute_relevance_from_scores = _bm25s_numba_scorer()  # the hook bm25s's own compile() sets
        self._engine, self._vocab = engine, engine.vocab_dict

    # ------------------------------------------------------------------ search
    def search(self, queries: list[str], k: int, show_progress: bool = True) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(doc_id, score)`` per query: descending score, ties in corpus order, scores > 0 only."""
        ids = self._doc_ids_arr
        tops = self._top_ks(queries, k, show_progress)
        with _gc_paused():
            return [list(zip(ids[docs].tolist(), scores.tolist())) for docs, scores in tops]

    def search_run(self, qids: list[str], queries: list[str], k: int, show_progress: bool = True) -> dict:
        """`search` as a Run, ``{qids[i]: {doc_id: score}}``, built straight into dicts (no tuple lists)."""
        qids = list(qids)
        if len(qids) != len(queries):
            raise ValueError(f"{len(qids)} qids but {len(queries)} queries")
        if len(set(qids)) != len(qids):
            raise ValueError("duplicate qids")
        ids = self._doc_ids_arr
        tops = self._top_ks(queries, k, show_progress)
        with _gc_paused():
            return {q: dict(zip(ids[docs].tolist(), scores.tolist())) for q, (docs, scores) in zip(qids, tops)}

    def search_arrays(self, queries: list[str], k: int, show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """`search` without Python objects: ``(scores [m, k], positions [m, k] int64)``, best first.

        Positions index `doc_ids`; ``-1`` (score 0) pads queries with fewer than k matching documents. Scores
        are float32 with bm25s, float64 with rank_bm25. ``k`` is capped at `num_docs`."""
        tops = self._top_ks(queries, k, show_progress)
        k = min(int(k), self.num_docs)
        dtype = np.result_type(np.float32, *(sc.dtype for _, sc in tops))
        scores = np.zeros((len(tops), k), dtype=dtype)
        positions = np.full((len(tops), k), -1, dtype=np.int64)
        for row, (docs, sc) in enumerate(tops):
            positions[row, : len(docs)] = docs
            scores[row, : len(sc)] = sc
        return scores, positions

    def _top_ks(self, queries, k, show_progress) -> list[tuple[np.ndarray, np.ndarray]]:
        """(doc positions, scores) of the top ``k`` for each query (see `_top_k`)."""
        self._check_built()
        if isinstance(queries, str):
            raise TypeError("search takes a list of query strings, not one string")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, self.num_docs)
        tokens = self._tokenize(list(queries), show_progress, "BM25 tokenize queries")
        if self.backend == "bm25s":
            vocab = self._vocab
            queries_ = [[vocab[t] for t in q if t in vocab] for q in tokens]
            score = self._engine.get_scores_from_ids  # bm25s: sum of the query terms' columns
        else:
            queries_, score = tokens, self._engine.get_scores

        def one(q):
            return _top_k(score(q), k) if q else _NO_HITS

        threads = (os.cpu_count() or 1) if self.n_threads == -1 else max(1, self.n_threads)
        bar = dict(total=len(queries_), desc="BM25 search", unit="query", delay=_BAR_DELAY_S, disable=not show_progress)
        if threads == 1 or len(queries_) < 2:
            return [one(q) for q in tqdm(queries_, **bar)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(tqdm(pool.map(one, queries_, chunksize=16), **bar))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the index into directory ``path`` (created if missing, may exist; our files in it are replaced).

        Not atomic by itself: to publish under a final name, save into ``retrieval_lab.cache.atomic_dir``.
        Layout: ``meta.json`` (format, settings, speed options), ``doc_ids.json``, and ``bm25s/`` (bm25s's own
        ``save``) or ``rank_bm25.json.gz`` (the rank_bm25 object's state as gzipped JSON: document lengths, term
        frequencies per document, idf). Nothing is pickled: loading a cache folder someone else wrote runs no code.
        """
        self._check_built()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.backend == "bm25s":
            self._engine.save(path / "bm25s", show_progress=False)
        else:
            with gzip.open(path / _RANK_BM25_FILE, "wt", encoding="utf-8", compresslevel=6) as f:
                json.dump(self._engine.to_state(), f, ensure_ascii=False, separators=(",", ":"))
        with open(path / "doc_ids.json", "w", encoding="utf-8") as f:
            json.dump(self._doc_ids, f, ensure_ascii=False)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "num_docs": self.num_docs,
            "settings": self.settings(),
            "options": {"bm25s_backend": self.bm25s_backend, "n_threads": self.n_threads},
        }
        with open(path / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike, **options) -> BM25Index:
        """Load a saved index; ``options`` override the saved speed options (``bm25s_backend``, ``n_threads``)."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no BM25 index at {path} (missing meta.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") == FORMAT and meta.get("format_version") == 1:
            if meta.get("settings", {}).get("backend") == "rank_bm25":  # bm25s's v1 layout is v2's
                raise ValueError(f"{path}: a rank_bm25 index stored with pickle (format v1) is not loaded: unpickling "
                                 "a file can run code; delete this folder, the index is rebuilt on the next run")
        elif meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: expected a {FORMAT} v{FORMAT_VERSION} index, found {meta.get('format')!r} "
                f"v{meta.get('format_version')!r}"
            )
        s = meta["settings"]
        index = cls(
            k1=s["k1"], b=s["b"], backend=s["backend"], stopwords=s["stopwords"], stemmer=s["stemmer"],
            method=s["method"], **{**meta.get("options", {}), **options},
        )
        ours = index.tokenizer.settings()
        if ours != {key: s.get(key) for key in ours}:
            raise ValueError(f"{path}: built with tokenizer settings {s}, this code tokenises as {ours}: rebuild it")
        if index.backend == "bm25s":
            import bm25s

            index._attach_bm25s(bm25s.BM25.load(path / "bm25s", show_progress=False))
        else:
            with gzip.open(path / _RANK_BM25_FILE, "rt", encoding="utf-8") as f:
                index._engine = LuceneBM25Okapi.from_state(json.load(f), source=str(path / _RANK_BM25_FILE))
        index._set_doc_ids(json.loads((path / "doc_ids.json").read_text(encoding="utf-8")))
        if index.num_docs != meta["num_docs"]:
            raise ValueError(f"{path}: doc_ids.json has {index.num_docs} ids, meta.json says {meta['num_docs']}")
        return index
