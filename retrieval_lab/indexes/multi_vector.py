"""Search over a token store: end-to-end retrieval with FAISS IVFPQ (ColBERT section 3.6), or exhaustive MaxSim.

End-to-end (``mode="end_to_end"``), per query:

1. candidate generation: each of the query's ``Nq`` vectors asks a FAISS IVFPQ index over *all* token vectors of
   the collection for its top-``k'`` matches, searching the ``nprobe`` nearest of ``P`` partitions; the
   vectors are compressed into ``s`` sub-vectors of one byte each (:class:`TokenIVF`);
2. the matched tokens are mapped to their documents (the store's token -> document table);
3. those documents are re-ranked exactly: their stored embeddings are gathered and scored with MaxSim
   (:meth:`~retrieval_lab.indexes.token_store.TokenStore.maxsim`).

Exhaustive (``mode="exhaustive"``): MaxSim against every document; exact, and the oracle the end-to-end mode is
measured against (:attr:`MultiVectorIndex.stats`: how many of the oracle's top-10 / top-100 documents the
candidates held, when the collection has at most ``oracle_max_docs`` documents).

The paper (MS MARCO, ~8.8M passages) uses ``P=2000, nprobe=10, s=16, k'=1000``. A collection with fewer vectors
gets fewer partitions (:func:`plan_ivf`): at most ``4 * sqrt(N)`` (faiss's rule of thumb) and at most one per 39
training vectors (faiss's k-means minimum); the plan and its reasons are logged and stored with the index.

Memory: the token store is memory-mapped, so search needs RAM for the IVFPQ codes (``s`` bytes + an 8-byte id
per token vector), the token -> document table (4 bytes per token) and one query's gathered candidates; the
operating system pages in the rows a query touches (:meth:`MultiVectorIndex.ram_bytes`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_lab.indexes.faiss_index import MIN_POINTS_PER_CENTROID  # faiss's k-means minimum per centroid
from retrieval_lab.indexes.token_store import TokenStore, as_rows

__all__ = ["TokenIVF", "MultiVectorIndex", "plan_ivf", "MODES"]

log = logging.getLogger(__name__)

MODES = ("end_to_end", "exhaustive")
IVF_FILE, IVF_SETTINGS = "ivfpq.faiss", "ivfpq.json"


def plan_ivf(num_vectors: int, dim: int, partitions: int, subvectors: int, bits: int = 8) -> tuple[dict, list[str]]:
    """The IVFPQ shape for ``num_vectors`` vectors: ``({"partitions", "subvectors", "bits"}, notes)``.

    * partitions: the asked ``P``, lowered to ``min(4 * sqrt(N), N / 39)`` when the collection is too small for
      it (an IVF with more partitions than vectors, or too few vectors to train its centroids, is refused by
      faiss or trains badly);
    * sub-vectors: the largest divisor of ``dim`` not above the asked ``s`` (PQ splits the vector evenly);
    * bits per sub-vector code: 8 (one byte, the paper's), fewer when there are under 39 * 256 vectors to train
      the 256 codewords.
    """
    if num_vectors < 1:
        raise ValueError("an IVFPQ index needs at least one vector")
    if partitions < 1 or subvectors < 1:
        raise ValueError(f"partitions and subvectors must be >= 1, got {partitions} and {subvectors}")
    notes: list[str] = []
    cap = max(1, min(int(4 * math.sqrt(num_vectors)), num_vectors // MIN_POINTS_PER_CENTROID))
    p = min(int(partitions), cap)
    if p < partitions:
        notes.append(f"partitions {partitions} -> {p}: {num_vectors} token vectors (at most 4*sqrt(N) partitions "
                     f"and {MIN_POINTS_PER_CENTROID} training vectors per partition)")
    s = max(d for d in range(1, min(int(subvectors), dim) + 1) if dim % d == 0)
    if s != subvectors:
        notes.append(f"subvectors {subvectors} -> {s}: product quantisation splits the {dim} dims evenly")
    b = int(bits)
    while b > 1 and num_vectors < MIN_POINTS_PER_CENTROID * (1 << b):
        b -= 1
    if b != bits:
        notes.append(f"bits per code {bits} -> {b}: {num_vectors} vectors train at most "
                     f"{max(1, num_vectors // MIN_POINTS_PER_CENTROID)} codewords per sub-vector")
    return {"partitions": p, "subvectors": s, "bits": b}, notes


class TokenIVF:
    """A FAISS IVFPQ index over every token vector of a :class:`TokenStore`; a vector's id is its store row."""

    def __init__(self, index: Any, settings: dict[str, Any]) -> None:
        self.index = index
        self.settings = settings

    @classmethod
    def build(cls, store: TokenStore, *, partitions: int = 2000, subvectors: int = 16, bits: int = 8,
              metric: str = "ip", train_size: int | None = None, seed: int = 0, add_chunk: int = 65536,
              show_progress: bool = False) -> TokenIVF:
        import faiss
        from tqdm.auto import tqdm

        n, dim = store.num_tokens, store.dim
        shape, notes = plan_ivf(n, dim, partitions, subvectors, bits)
        metric_id = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}[metric]
        quantizer = faiss.IndexFlat(dim, metric_id)
        index = faiss.IndexIVFPQ(quantizer, dim, shape["partitions"], shape["subvectors"], shape["bits"], metric_id)
        # k-means samples at most 256 points per centroid anyway; PQ codewords need 39 * 2^bits
        want = train_size or max(256 * shape["partitions"], MIN_POINTS_PER_CENTROID * (1 << shape["bits"]))
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, int(want)), replace=False))
        start = time.perf_counter()
        index.train(np.ascontiguousarray(store.tokens[sample], dtype=np.float32))
        train_s = time.perf_counter() - start
        with tqdm(total=n, desc="IVFPQ add", unit="vec", disable=not show_progress) as bar:
            for i in range(0, n, add_chunk):
                block = np.ascontiguousarray(store.tokens[i:i + add_chunk], dtype=np.float32)
                index.add_with_ids(block, np.arange(i, i + len(block), dtype=np.int64))
                bar.update(len(block))
        settings = {**shape, "asked_partitions": int(partitions), "asked_subvectors": int(subvectors),
                    "metric": metric, "vectors": n, "train_vectors": int(len(sample)), "notes": notes,
                    "train_seconds": round(train_s, 2), "build_seconds": round(time.perf_counter() - start, 2),
                    "faiss": faiss.__version__}
        return cls(index, settings)

    def save(self, path: str | os.PathLike) -> None:
        import faiss

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(path / IVF_FILE))
        (path / IVF_SETTINGS).write_text(json.dumps(self.settings, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TokenIVF:
        import faiss

        path = Path(path)
        return cls(faiss.read_index(str(path / IVF_FILE)), json.loads((path / IVF_SETTINGS).read_text("utf-8")))

    def nbytes(self) -> int:
        """Bytes of the index in memory: PQ codes + 8-byte ids per vector, and the centroids."""
        n, s = int(self.index.ntotal), int(self.settings["subvectors"])
        code = math.ceil(s * int(self.settings["bits"]) / 8)
        return n * (code + 8) + int(self.settings["partitions"]) * int(self.index.d) * 4

    def candidates(self, query: np.ndarray, k_prime: int, nprobe: int) -> np.ndarray:
        """Token rows matched by the query's vectors: the top-``k_prime`` of each, from ``nprobe`` partitions."""
        import faiss

        params = faiss.SearchParametersIVF(nprobe=int(min(nprobe, self.settings["partitions"])))
        _, rows = self.index.search(np.ascontiguousarray(query, dtype=np.float32), int(k_prime), params=params)
        return rows[rows >= 0]


class MultiVectorIndex:
    """Retrieval over a token store: end-to-end (IVFPQ candidates, exact MaxSim) or exhaustive MaxSim.

    ``search_run(qids, queries, k)`` takes one ``[Tq_i, dim]`` array per query (its real vectors). After a
    search, :attr:`stats` holds per-query latency (ms) split into candidate generation, gather and MaxSim, the
    mean number of candidate documents, and (end-to-end, collection within ``oracle_max_docs``) the candidates'
    recall of the exhaustive oracle's top-10 and top-100 and how many of the final top-10 agree with it.
    """

    def __init__(self, store: TokenStore, ivf: TokenIVF | None = None, *, mode: str = "end_to_end",
                 similarity: str = "cosine", interaction: str = "maxsim", nprobe: int = 10,
                 candidates: int = 1000, oracle_max_docs: int = 20000) -> None:
        if mode not in MODES:
            raise ValueError(f"search mode must be one of {MODES}, got {mode!r}")
        if mode == "end_to_end" and ivf is None:
            raise ValueError("end-to-end search needs the IVFPQ index")
        self.store, self.ivf, self.mode = store, ivf, mode
        self.similarity, self.interaction = similarity, interaction
        self.nprobe, self.k_prime, self.oracle_max_docs = int(nprobe), int(candidates), int(oracle_max_docs)
        self.stats: dict[str, Any] = {}

    def nbytes(self) -> int:
        return self.store.nbytes() + (self.ivf.nbytes() if self.ivf is not None else 0)

    def ram_bytes(self) -> int:
        """RAM search needs besides the memory-mapped store (whose pages the system loads as queries touch them):
        end to end, the IVFPQ index (codes, ids, centroids) and the token -> document table; and one chunk's
        gathered rows (stored and float32 copies of 32 documents at the longest length)."""
        chunk = 32 * int(self.store.lengths.max(initial=0)) * self.store.dim * (4 + self.store.tokens.itemsize)
        if self.ivf is None:
            return chunk
        return self.ivf.nbytes() + 4 * self.store.num_tokens + chunk

    def _top(self, positions: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
        keep = np.isfinite(scores)  # a document without vectors matches nothing: never returned
        positions, scores = positions[keep], scores[keep]
        if len(scores) > k:
            keep = np.argpartition(-scores, k - 1)[:k]
            positions, scores = positions[keep], scores[keep]
        ids = self.store.doc_ids
        return {ids[p]: float(s) for p, s in zip(positions, scores)}

    def search_one(self, query: Any, k: int, timer: dict[str, float] | None = None) -> tuple[dict[str, float], np.ndarray]:
        """``(top-k {doc id: score}, store positions of the candidate documents scored)`` for one query."""
        q = as_rows(query)
        timer = timer if timer is not None else {}
        if self.mode == "exhaustive" or len(q) == 0:
            docs = np.arange(len(self.store))
            return self._top(docs, self.store.maxsim(q, docs, self.similarity, self.interaction, timer=timer), k), docs
        start = time.perf_counter()
        rows = self.ivf.candidates(q, self.k_prime, self.nprobe)
        docs = np.unique(self.store.token_doc[rows]).astype(np.int64)
        timer["candidates"] = timer.get("candidates", 0.0) + time.perf_counter() - start
        scores = self.store.maxsim(q, docs, self.similarity, self.interaction, timer=timer)
        return self._top(docs, scores, k), docs

    def search_run(self, qids: list[str], queries: list[Any], k: int, oracle: bool = True) -> dict[str, dict[str, float]]:
        """Top-``k`` per query; ``oracle=False`` skips the comparison with exhaustive MaxSim (a training split's
        run, searched for negatives)."""
        if len(qids) != len(queries):
            raise ValueError(f"{len(qids)} query ids but {len(queries)} queries")
        timer: dict[str, float] = {}
        run, sizes, candidates = {}, [], []
        for qid, q in zip(qids, queries):
            run[qid], docs = self.search_one(q, k, timer)
            sizes.append(len(docs))
            candidates.append(docs)
        nq = max(len(qids), 1)
        self.stats = {"search_mode": self.mode,
                      "ms_per_query_split": {key: round(1000 * v / nq, 3) for key, v in sorted(timer.items())},
                      "candidate_docs_per_query": round(float(np.mean(sizes)) if sizes else 0.0, 1),
                      "ram_bytes_for_search": self.ram_bytes()}
        if self.mode == "end_to_end":
            self.stats.update({"nprobe": self.nprobe, "k_prime": self.k_prime, "ivf": {
                k_: self.ivf.settings[k_] for k_ in ("partitions", "subvectors", "bits", "notes")},
                "vectors_per_partition": round(self.store.num_tokens / self.ivf.settings["partitions"], 1)})
            if oracle and len(self.store) <= self.oracle_max_docs:  # timed apart: not the search's latency
                start = time.perf_counter()
                self.stats.update(self.oracle_agreement(qids, queries, run, candidates))
                self.stats["oracle_seconds"] = round(time.perf_counter() - start, 3)
            elif oracle:
                self.stats["oracle"] = f"skipped: {len(self.store)} documents > oracle_max_docs={self.oracle_max_docs}"
        return run

    def oracle_agreement(self, qids: list[str], queries: list[Any], run: dict[str, dict[str, float]],
                         candidates: list[np.ndarray] | None = None) -> dict:
        """How close end-to-end search came to exhaustive MaxSim: candidate recall of the oracle's top-10/100 and
        the share of the oracle's top-10 in the returned top-10 (means over queries). ``candidates``: the store
        positions each query's search scored (searched again when not given)."""
        rec10, rec100, top10 = [], [], []
        for i, (qid, q) in enumerate(zip(qids, queries)):
            q = as_rows(q)
            if len(q) == 0:
                continue
            scores = self.store.score_all(q, self.similarity, self.interaction)
            order = np.argsort(-scores, kind="stable")
            found = candidates[i] if candidates is not None else \
                np.unique(self.store.token_doc[self.ivf.candidates(q, self.k_prime, self.nprobe)])
            cand = set(np.asarray(found).tolist())
            o10, o100 = order[:10].tolist(), order[:100].tolist()
            rec10.append(sum(d in cand for d in o10) / len(o10))
            rec100.append(sum(d in cand for d in o100) / len(o100))
            got = sorted(run[qid].items(), key=lambda kv: -kv[1])[:10]
            ids = {self.store.doc_ids[d] for d in o10}
            top10.append(sum(d in ids for d, _ in got) / len(o10))
        mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
        return {"candidate_recall@10": mean(rec10), "candidate_recall@100": mean(rec100),
                "top10_agreement": mean(top10)}
