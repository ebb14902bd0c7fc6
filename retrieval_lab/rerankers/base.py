from __future__ import annotations

from omegaconf import DictConfig

from retrieval_lab.context import StageContext
from retrieval_lab.data.runs import ranked


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
        raise NotImplementedError

    def rerank(self, split: str, run: dict[str, dict[str, float]], depth: int) -> dict[str, dict[str, float]]:
        topics = self.ctx.collection.topics(split)
        corpus = self.ctx.collection.corpus
        heads: dict[str, list[str]] = {}
        pairs: list[tuple[str, str]] = []
        for qid, docs in run.items():
            order = [doc_id for doc_id, _ in ranked(docs)]
            heads[qid] = order[:depth]
            pairs.extend((topics[qid], corpus[doc_id].contents()) for doc_id in heads[qid])
        scores = iter(self.score(pairs))
        out: dict[str, dict[str, float]] = {}
        for qid, docs in run.items():
            new = {doc_id: float(next(scores)) for doc_id in heads[qid]}
            floor = min(new.values(), default=0.0)
            tail = [doc_id for doc_id, _ in ranked(docs)][depth:]
            for i, doc_id in enumerate(tail):  # keep the first stage's order below the re-ranked head
                new[doc_id] = floor - 1.0 - i
            out[qid] = new
        return out
