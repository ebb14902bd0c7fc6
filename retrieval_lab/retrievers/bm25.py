"""BM25 first stage: the index is built once per (corpus content, BM25 settings) and cached."""

from __future__ import annotations

import logging

from retrieval_lab.cache import KEY_VERSION, fingerprint
from retrieval_lab.indexes.base import cached_index, folder_bytes
from retrieval_lab.indexes.bm25 import BM25Index
from retrieval_lab.retrievers.base import Retriever

log = logging.getLogger(__name__)


class BM25Retriever(Retriever):
    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self._index: BM25Index | None = None

    def _new_index(self) -> BM25Index:
        c = self.cfg
        return BM25Index(
            k1=c.k1, b=c.b, backend=c.backend, stopwords=c.stopwords, stemmer=c.stemmer, method=c.method
        )

    @property
    def index(self) -> BM25Index:
        if self._index is None:
            corpus = self.ctx.collection.corpus
            fresh = self._new_index()
            key = fingerprint("bm25", KEY_VERSION, corpus.fingerprint, fresh.settings())

            def build() -> BM25Index:
                log.info("BM25 (%s): indexing %d documents", self.cfg.backend, len(corpus))
                fresh.build(corpus.ids(), [doc.contents() for doc in corpus], show_progress=self.ctx.show_progress)
                return fresh

            def load(path) -> BM25Index:
                log.info("BM25: reusing the index at %s", path)
                return BM25Index.load(path)

            path = self.ctx.cache_dir / "bm25" / key
            self._index, hit = cached_index(path, build, load)
            self.ctx.record_index(self, kind="bm25", hit=hit, nbytes=folder_bytes(path / "index"), docs=len(corpus))
        return self._index

    def prepare(self) -> None:
        self.index  # noqa: B018 (builds or loads the cached index)

    def retrieve(self, split: str) -> dict[str, dict[str, float]]:
        topics = self.ctx.collection.topics(split)
        qids = list(topics)
        return self.index.search_run(qids, [topics[q] for q in qids], k=int(self.cfg.k))
