from __future__ import annotations

import logging

from omegaconf import DictConfig

from retrieval_lab.context import StageContext
from retrieval_lab.data.runs import cut_depth, ranked

log = logging.getLogger(__name__)


class Reranker:
    """Re-scores the top-``depth`` documents of each query; documents below ``depth`` keep their order
    beneath the re-ranked ones, so recall@1000 of the first stage is kept."""

    def __init__(self, cfg: DictConfig, ctx: StageContext):
        self.cfg = cfg
        self.ctx = ctx

    @property
    def name(self) -> str:
        return str(self.cfg.name)

    def prepare(self, first_stage) -> None:
        """Train (when configured) on ``first_stage``'s run over the training split."""

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """One score per ``(query id, doc id)`` pair. Ids, not texts: the family looks up what it needs (texts, or
        stored document representations)."""
        raise NotImplementedError

    def rerank(self, split: str, run: dict[str, dict[str, float]], depth: int) -> dict[str, dict[str, float]]:
        corpus = self.ctx.collection.corpus
        heads: dict[str, list[str]] = {}
        unknown: dict[str, list[str]] = {}  # a run file may name documents the corpus lacks: nothing to score
        pairs: list[tuple[str, str]] = []
        for qid, docs in run.items():
            order = [doc_id for doc_id, _ in ranked(docs)]
            heads[qid] = [d for d in order[:depth] if d in corpus]
            unknown[qid] = [d for d in order[:depth] if d not in corpus]
            pairs.extend((qid, doc_id) for doc_id in heads[qid])
        scores = iter(self.score(pairs))
        head_scores = {qid: {doc_id: float(next(scores)) for doc_id in head} for qid, head in heads.items()}
        n_unknown = sum(map(len, unknown.values()))
        if n_unknown:
            example = next((q, ds[0]) for q, ds in unknown.items() if ds)
            log.warning("%s: %d documents in the first stage's top %d are not in the corpus (e.g. %r for query %r): "
                        "they cannot be scored and are ranked below the re-scored documents of their query, in the "
                        "first stage's order", self.name, n_unknown, depth, example[1], example[0])
            for qid, missing in unknown.items():
                floor = min(head_scores[qid].values(), default=0.0)
                for i, doc_id in enumerate(missing):
                    head_scores[qid][doc_id] = floor - 1.0 - i
        return cut_depth(run, head_scores, depth)  # the first stage's order kept below the re-ranked head
