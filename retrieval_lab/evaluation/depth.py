"""Re-ranking depth after the fact: what a re-ranker would have scored had it re-ranked only the top d.

A reranked run at depth D holds a score for each of the first stage's top D documents; re-ranking the top
d <= D instead gives the same scores to the top d, and the first stage's order below them. So one scoring
pass at the largest depth answers every smaller depth, with no model call (the retrieve-and-rerank trade-off
between depth and cost, as a curve).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from retrieval_lab.data.runs import ranked

Run = Mapping[str, Mapping[str, float]]


def cut_depth(first_stage: Run, reranked: Run, depth: int) -> dict[str, dict[str, float]]:
    """The run re-ranking only the top ``depth`` of ``first_stage``, from ``reranked`` (which must hold a score for
    every one of them): the head ordered by the re-ranker, the rest in the first stage's order beneath it."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    out: dict[str, dict[str, float]] = {}
    for qid, docs in first_stage.items():
        order = [doc_id for doc_id, _ in ranked(docs)]
        scores = reranked.get(qid, {})
        head = order[:depth]
        missing = [d for d in head if d not in scores]
        if missing:
            raise ValueError(
                f"query {qid!r}: the reranked run has no score for {len(missing)} of the first stage's top {depth} "
                f"(e.g. {missing[0]!r}); it was re-ranked at a smaller depth or from another first stage"
            )
        new = {doc_id: float(scores[doc_id]) for doc_id in head}
        floor = min(new.values(), default=0.0)
        for i, doc_id in enumerate(order[depth:]):
            new[doc_id] = floor - 1.0 - i
        out[qid] = new
    return out


def depth_curve(first_stage: Run, reranked: Run, depths: Iterable[int], evaluate_run) -> dict[int, dict[str, float]]:
    """``{depth: evaluate_run(run cut at depth)}`` for each depth (0 = the first stage alone)."""
    return {int(d): evaluate_run(cut_depth(first_stage, reranked, int(d))) for d in depths}
