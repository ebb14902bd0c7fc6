"""The one model-backed second stage: [train on the first stage's run] -> score the top-depth (query, doc) ids.

Any family of the registry that scores pairs re-ranks through this class (``cfg.family``): a cross-encoder (and the
T5 rankers) reads query and document together; a bi-encoder (``reranker=biencoder``) re-scores the top-depth by the
dot product of its embeddings. Training follows the family's kind: a pair family trains on lists
(:func:`~retrieval_lab.training.stages.train_reranker`); a retriever family trains as a retriever, with hard
negatives from the first stage's run (:func:`~retrieval_lab.training.stages.train_retriever`).
"""

from __future__ import annotations

import logging

from retrieval_lab.rerankers.base import Reranker

log = logging.getLogger(__name__)


class ModelReranker(Reranker):
    role = "reranker"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self._model = None
        self._store = None  # (token store, cache hit, folder) of a multi-vector family
        self.model_path: str | None = None

    def load_model(self, path: str):
        from retrieval_lab.models.registry import load_for_stage

        return load_for_stage(path, self.role, self.cfg)

    def prepare(self, first_stage) -> None:
        from retrieval_lab.models.backbone import resolve_backbone

        path = resolve_backbone(self.cfg.model)
        if self.cfg.train.enabled:
            path = self._train(path, first_stage)
        self.model_path = str(path)
        from retrieval_lab.models.registry import family_class

        family = family_class(str(self.cfg.family))
        if getattr(family, "index_kind", None) == "multi_vector" and not self.cfg.get("single_vector"):
            from retrieval_lab.retrievers.model import token_store_for

            self._store = token_store_for(self)  # built (or found) here: timed with the stage's preparation

    def _train(self, backbone: str, first_stage) -> str:
        from retrieval_lab.models.registry import family_class
        from retrieval_lab.training.stages import train_reranker, train_retriever, train_split

        t = self.cfg.train
        run, run_name = None, "-"
        if not t.get("triples"):
            split = train_split(self.ctx, self.cfg, "reranker")
            if first_stage is None:
                raise ValueError("reranker training needs a first stage: negatives are sampled from its run")
            run, run_name = first_stage.retrieve(split), first_stage.name
        if hasattr(family_class(str(self.cfg.family)), "tokenize_pairs"):  # a pair family: lists
            return train_reranker(self.cfg, self.ctx, backbone, self.load_model, run, run_name)
        return train_retriever(self.cfg, self.ctx, backbone, self.load_model, run, run_name, stage="train_reranker")

    @property
    def model(self):
        if self._model is None:
            if self.model_path is None:
                self.prepare(None)
            self._model = self.load_model(self.model_path)
            self._model.eval()
        return self._model

    @property
    def precision(self) -> str:
        return str(self.ctx.hardware.inference_precision)

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Scores of ``(query id, doc id)`` pairs. Texts are looked up here; a multi-vector family (ColBERT) scores
        against its token store instead (:meth:`score_from_store`)."""
        if not pairs:
            return []
        if getattr(self.model, "index_kind", None) == "multi_vector":
            return self.score_from_store(pairs)
        queries = self.ctx.collection.queries
        corpus = self.ctx.collection.corpus
        scores = self.model.score_pairs(
            [queries[q] for q, _ in pairs], [corpus[d].contents() for _, d in pairs],
            batch_size=int(self.cfg.batch_size), precision=str(self.ctx.hardware.inference_precision),
            show_progress=self.ctx.show_progress,
        )
        return scores.tolist() if hasattr(scores, "tolist") else list(scores)

    def score_from_store(self, pairs: list[tuple[str, str]]) -> list[float]:
        """ColBERT section 3.5: the corpus's token embeddings are computed once (the cached token store); per
        query, its candidates' stored embeddings are gathered and scored by exact MaxSim. Only the queries go through
        the encoder here. The latency split (encode / gather / MaxSim, ms per query) goes to efficiency.json."""
        import time

        import numpy as np

        from retrieval_lab.retrievers.model import token_store_for

        if self._store is None:
            self._store = token_store_for(self)
        store, hit, path = self._store
        by_query: dict[str, list[int]] = {}
        for i, (qid, _) in enumerate(pairs):
            by_query.setdefault(qid, []).append(i)
        qids = list(by_query)
        queries = self.ctx.collection.queries
        start = time.perf_counter()
        vectors = self.model.encode_queries([queries[q] for q in qids], batch_size=int(self.cfg.batch_size),
                                            precision=self.precision)
        timer = {"encode": time.perf_counter() - start}
        out = np.zeros(len(pairs), dtype=np.float32)
        for qid, q in zip(qids, vectors):
            rows = by_query[qid]
            docs = store.positions(pairs[i][1] for i in rows)
            out[rows] = store.maxsim(q, docs, self.model.similarity, self.model.interaction, timer=timer)
        n = max(len(qids), 1)
        finite = out[np.isfinite(out)]
        out[~np.isfinite(out)] = (finite.min() if len(finite) else 0.0) - 1.0  # no vectors: below every other
        from retrieval_lab.indexes.base import folder_bytes

        self.ctx.record_index(self, kind="token_store", hit=hit, nbytes=folder_bytes(path / "index"), docs=len(store))
        self.ctx.record_search(self, ms_per_query_split={k: round(1000 * v / n, 3) for k, v in timer.items()},
                               store_dtype=store.manifest["dtype"],
                               indexing_docs_per_second=store.manifest.get("docs_per_second"))
        return out.tolist()
