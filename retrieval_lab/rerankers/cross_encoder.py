"""monoBERT cross-encoder re-ranker: [train on the first stage's run] -> score the top-depth pairs."""

from __future__ import annotations

import logging

from retrieval_lab.rerankers.base import Reranker

log = logging.getLogger(__name__)


class CrossEncoderReranker(Reranker):
    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self._model = None
        self.model_path: str | None = None

    def prepare(self, first_stage) -> None:
        from retrieval_lab.models.backbone import resolve_backbone

        path = resolve_backbone(self.cfg.model)
        if self.cfg.train.enabled:
            from retrieval_lab.training.stages import train_reranker

            path = train_reranker(self.cfg, self.ctx, path, first_stage, self.load_model)
        self.model_path = str(path)

    def load_model(self, path: str):
        from retrieval_lab.models import CrossEncoder

        return CrossEncoder.from_pretrained(path, max_length=self.cfg.max_length)

    @property
    def model(self):
        if self._model is None:
            if self.model_path is None:
                self.prepare(None)
            self._model = self.load_model(self.model_path)
            self._model.eval()
        return self._model

    def score(self, pairs):
        if not pairs:
            return []
        queries, docs = zip(*pairs)
        scores = self.model.score_pairs(
            list(queries), list(docs), batch_size=int(self.cfg.batch_size),
            precision=str(self.ctx.hardware.inference_precision), show_progress=self.ctx.show_progress,
        )
        return scores.tolist() if hasattr(scores, "tolist") else list(scores)
