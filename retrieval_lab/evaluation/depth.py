"""Re-ranking depth after the fact: what a re-ranker would have scored had it re-ranked only the top d.

A reranked run at depth D holds a score for each of the first stage's top D documents; re-ranking the top
d <= D instead gives the same scores to the top d, and the first stage's order below them. So one scoring
pass at the largest depth answers every smaller depth, with no model call (the retrieve-and-rerank trade-off
between depth and cost, as a curve).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from retrieval_lab.data.runs import cut_depth

Run = Mapping[str, Mapping[str, float]]

__all__ = ["cut_depth", "depth_curve"]


def depth_curve(first_stage: Run, reranked: Run, depths: Iterable[int], evaluate_run) -> dict[int, dict[str, float]]:
    """``{depth: evaluate_run(run cut at depth)}`` for each depth (0 = the first stage alone)."""
    return {int(d): evaluate_run(cut_depth(first_stage, reranked, int(d))) for d in depths}
