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

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Scores of ``(query id, doc id)`` pairs; texts are looked up here (a family with stored document
        representations may use the ids instead)."""
        if not pairs:
            return []
        queries = self.ctx.collection.queries
        corpus = self.ctx.collection.corpus
        scores = self.model.score_pairs(
            [queries[q] for q, _ in pairs], [corpus[d].contents() for _, d in pairs],
            batch_size=int(self.cfg.batch_size), precision=str(self.ctx.hardware.inference_precision),
            show_progress=self.ctx.show_progress,
        )
        return scores.tolist() if hasattr(scores, "tolist") else list(scores)
