from __future__ import annotations

from omegaconf import DictConfig

from retrieval_lab.context import StageContext
from retrieval_lab.data.runs import cut_depth, ranked


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
        heads: dict[str, list[str]] = {}
        pairs: list[tuple[str, str]] = []
        for qid, docs in run.items():
            order = [doc_id for doc_id, _ in ranked(docs)]
            heads[qid] = order[:depth]
            pairs.extend((qid, doc_id) for doc_id in heads[qid])
        scores = iter(self.score(pairs))
        head_scores = {qid: {doc_id: float(next(scores)) for doc_id in head} for qid, head in heads.items()}
        return cut_depth(run, head_scores, depth)  # the first stage's order kept below the re-ranked head
