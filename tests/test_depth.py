"""Cutting a reranked run back to a smaller re-ranking depth, without calling the model again."""

import pytest

from retrieval_lab.data.runs import ranked
from retrieval_lab.evaluation.depth import cut_depth, depth_curve
from retrieval_lab.evaluation.metrics import evaluate

FIRST = {"q1": {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0}, "q2": {"x": 2.0, "y": 1.0}}
# the re-ranker scored the first stage's top 4 of q1 (reversing them) and both of q2
RERANKED = {"q1": {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": -9.0}, "q2": {"x": 0.0, "y": 1.0}}


def order(run, qid):
    return [d for d, _ in ranked(run[qid])]


def test_cut_keeps_the_head_set_and_the_tail_order():
    assert order(cut_depth(FIRST, RERANKED, 0), "q1") == ["a", "b", "c", "d", "e"]  # the first stage
    assert order(cut_depth(FIRST, RERANKED, 2), "q1") == ["b", "a", "c", "d", "e"]
    assert order(cut_depth(FIRST, RERANKED, 3), "q1") == ["c", "b", "a", "d", "e"]
    assert order(cut_depth(FIRST, RERANKED, 4), "q1") == ["d", "c", "b", "a", "e"]
    assert order(cut_depth(FIRST, RERANKED, 4), "q2") == ["y", "x"]  # depth beyond a short list


def test_cut_refuses_depths_the_reranker_did_not_score():
    partial = {"q1": {"a": 1.0, "b": 2.0}, "q2": {"x": 0.0, "y": 1.0}}
    with pytest.raises(ValueError, match=r"query 'q1'.*2 of the first stage's top 4"):
        cut_depth(FIRST, partial, 4)
    with pytest.raises(ValueError, match="depth must be >= 0"):
        cut_depth(FIRST, RERANKED, -1)


def test_depth_curve_metric_by_hand():
    qrels = {"q1": {"d": 1}, "q2": {"x": 1}}
    curve = depth_curve(FIRST, RERANKED, [0, 2, 4],
                        lambda run: evaluate(qrels, run, ["mrr@10"]).aggregate)
    # q1's relevant d sits at rank 4, 4, 1; q2's x at rank 1, 2, 2
    assert curve[0]["mrr@10"] == pytest.approx((1 / 4 + 1) / 2)
    assert curve[2]["mrr@10"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert curve[4]["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
