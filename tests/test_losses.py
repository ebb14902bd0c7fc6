"""Tests for retrieval_lab.losses: hand-computed values, padding, gradients, torch references.

Expected values are written out with math.log / math.exp, never by calling the code under test.
"""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from retrieval_lab.losses import (
    LOSSES,
    MultiLabelMarginLoss,
    PairwiseLogisticLoss,
    PairwiseSoftmaxLoss,
    PointwiseCELoss,
    Poly1SoftmaxLoss,
    RankingLoss,
    SoftmaxCELoss,
    build_loss,
)

ATOL = 1e-5


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def log1pexp(x: float) -> float:  # log(1 + e^x), the pairwise logistic term
    return math.log(1.0 + math.exp(x))


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def value_and_grad(loss, scores, labels, mask=None):
    scores = scores.clone().requires_grad_(True)
    value = loss(scores, labels, mask)
    value.backward()
    return value.detach(), scores.grad.detach()


# Every loss with its default kwargs and with non-default ones.
CONFIGS = [
    ("pointwise_ce", {}),
    ("pointwise_ce", {"balance": False}),
    ("pointwise_ce", {"soft_targets": True}),
    ("pairwise_logistic", {}),
    ("pairwise_logistic", {"weight_by_label_diff": True}),
    ("pairwise_softmax", {}),
    ("margin", {}),
    ("margin", {"margin": 0.5}),
    ("softmax", {}),
    ("poly1", {}),
    ("poly1", {"epsilon": 2.0}),
]
CONFIG_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in CONFIGS]


# --------------------------------------------------------------------------------------------------
# registry and contract


def test_registry_names_and_build():
    assert set(LOSSES) == {"pointwise_ce", "pairwise_logistic", "pairwise_softmax", "margin", "softmax", "poly1"}
    for name, cls in LOSSES.items():
        loss = build_loss(name)
        assert isinstance(loss, cls) and isinstance(loss, RankingLoss)
    assert build_loss("poly1", epsilon=0.25).epsilon == 0.25
    assert build_loss("margin", margin=2).margin == 2.0
    with pytest.raises(ValueError, match="known losses"):
        build_loss("softmx")
    with pytest.raises(TypeError, match="poly1"):
        build_loss("poly1", epsilonn=1.0)


@pytest.mark.parametrize("module", ["base", "pointwise", "pairwise", "listwise", "__init__"])
def test_docstring_examples_run(module):
    name = "retrieval_lab.losses" if module == "__init__" else f"retrieval_lab.losses.{module}"
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_shape_errors(name):
    loss = build_loss(name)
    with pytest.raises(ValueError, match="shape"):
        loss(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="labels shape"):
        loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask shape"):
        loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="floating"):
        loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_mask_none_and_integer_labels(name, kwargs):
    loss = build_loss(name, **kwargs)
    scores = t([[0.3, -1.2, 2.0, 0.1], [1.0, 0.0, -0.5, 0.7]])
    labels = torch.tensor([[1, 0, 2, 0], [0, 1, 0, 0]])
    a = loss(scores, labels)
    b = loss(scores, labels.float(), torch.ones(2, 4, dtype=torch.bool))
    assert a.dim() == 0 and torch.isfinite(a)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------
# properties every loss must have


def _padded_copy(scores, labels, width, seed):
    """Scatter each row's real entries among `width` slots; fill the rest with garbage."""
    gen = torch.Generator().manual_seed(seed)
    b, l = scores.shape
    p_scores = torch.randn(b, width, generator=gen) * 1e3
    p_scores[0, :] = float("inf")
    p_scores[1, :] = float("nan")
    p_labels = torch.full((b, width), float("nan"))
    p_labels[0, :] = 3.0
    mask = torch.zeros(b, width, dtype=torch.bool)
    positions = []
    for r in range(b):
        pos = torch.randperm(width, generator=gen)[:l].sort().values
        p_scores[r, pos] = scores[r]
        p_labels[r, pos] = labels[r]
        mask[r, pos] = True
        positions.append(pos)
    return p_scores, p_labels, mask, positions


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_padding_changes_neither_value_nor_gradient(name, kwargs):
    loss = build_loss(name, **kwargs)
    scores = t([[0.3, -1.2, 2.0, 0.1], [1.0, 0.0, -0.5, 0.7], [0.2, 0.9, -0.3, -2.0]])
    labels = t([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 1.0]])
    value, grad = value_and_grad(loss, scores, labels)
    assert grad.abs().sum() > 0  # the comparison below must be able to fail

    p_scores, p_labels, mask, positions = _padded_copy(scores, labels, width=9, seed=0)
    p_value, p_grad = value_and_grad(loss, p_scores, p_labels, mask)
    assert torch.isfinite(p_value) and torch.isfinite(p_grad).all()
    assert p_value.item() == pytest.approx(value.item(), abs=ATOL)
    for r, pos in enumerate(positions):
        torch.testing.assert_close(p_grad[r, pos], grad[r], atol=ATOL, rtol=1e-5)
    assert (p_grad[~mask] == 0).all()


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_raising_a_positive_score_lowers_the_loss(name, kwargs):
    loss = build_loss(name, **kwargs)
    # One positive per row, ranked below some negatives, so every loss (hinge included) is active.
    scores = t([[0.0, 0.4, -0.2, 0.3], [-1.0, 0.5, 0.2, 0.0]])
    labels = t([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    value, grad = value_and_grad(loss, scores, labels)
    assert grad[0, 2] < 0 and grad[1, 0] < 0
    assert grad[0, 1] > 0  # and raising a negative that outranks the positive raises it
    raised = scores.clone()
    raised[0, 2] += 0.1
    assert loss(raised, labels) < value


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_half_precision_scores_are_computed_in_float32(name, kwargs):
    loss = build_loss(name, **kwargs)
    scores = t([[0.25, -1.0, 2.0, 0.5], [1.0, 0.0, -0.5, 0.75]])
    labels = t([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    value = loss(scores.bfloat16(), labels)  # these scores are exact in bfloat16
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(loss(scores, labels).item(), abs=1e-6)


@pytest.mark.parametrize("name", ["pairwise_logistic", "pairwise_softmax", "margin", "softmax", "poly1"])
def test_nothing_to_learn_gives_exact_zero_and_zero_grad(name):
    loss = build_loss(name)
    scores = t([[0.3, -1.2, 2.0], [1.0, 0.0, -0.5], [4.0, 5.0, 6.0]])
    labels = torch.zeros(3, 3)
    mask = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    for m in (None, mask):
        value, grad = value_and_grad(loss, scores, labels, m)
        assert value.item() == 0.0
        assert (grad == 0).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fully_padded_row_is_ignored(name):
    loss = build_loss(name)
    scores = t([[0.3, -1.2, 2.0], [1.0, 0.0, -0.5]])
    labels = t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True], [False, False, False]])
    value, grad = value_and_grad(loss, scores, labels, mask)
    alone = loss(scores[:1], labels[:1])
    assert value.item() == pytest.approx(alone.item(), abs=ATOL)
    assert torch.isfinite(grad).all() and (grad[1] == 0).all()


# --------------------------------------------------------------------------------------------------
# pointwise_ce


def bce(s: float, target: float) -> float:
    return -(target * math.log(sig(s)) + (1.0 - target) * math.log(1.0 - sig(s)))


def test_pointwise_ce_by_hand_balanced_and_unbalanced():
    scores = t([[0.5, 1.0, -2.0, 0.0], [2.0, -1.0, 0.3, 99.0]])
    labels = t([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    # row 0: 1 positive, 3 negatives -> positive weight 3; row 1: 2 positives, 1 negative -> weight 1/2
    num = 3 * bce(0.5, 1) + bce(1.0, 0) + bce(-2.0, 0) + bce(0.0, 0)
    num += 0.5 * bce(2.0, 1) + 0.5 * bce(-1.0, 1) + bce(0.3, 0)
    den = (3 + 3) + (0.5 + 0.5 + 1)
    assert PointwiseCELoss()(scores, labels, mask).item() == pytest.approx(num / den, abs=ATOL)
    plain = (bce(0.5, 1) + bce(1.0, 0) + bce(-2.0, 0) + bce(0.0, 0) + bce(2.0, 1) + bce(-1.0, 1) + bce(0.3, 0)) / 7
    assert PointwiseCELoss(balance=False)(scores, labels, mask).item() == pytest.approx(plain, abs=ATOL)


def test_pointwise_ce_weights_equal_explicit_upsampling():
    # Row with 1 positive and 3 negatives: the weighted loss equals the plain mean over a list in which
    # the positive is copied 3 times (RankT5's upsampling).
    scores = t([[0.7, -0.2, 1.5, 0.1]])
    labels = t([[1.0, 0.0, 0.0, 0.0]])
    upsampled_scores = t([[0.7, 0.7, 0.7, -0.2, 1.5, 0.1]])
    upsampled_labels = t([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    a = PointwiseCELoss()(scores, labels)
    b = PointwiseCELoss(balance=False)(upsampled_scores, upsampled_labels)
    assert a.item() == pytest.approx(b.item(), abs=ATOL)
    assert a.item() != pytest.approx(PointwiseCELoss(balance=False)(scores, labels).item(), abs=1e-3)


def test_pointwise_ce_graded_and_soft_labels():
    scores = t([[1.0, -0.5, 0.2]])
    labels = t([[2.0, 0.5, 0.0]])
    # binary targets: both graded labels are positives (target 1); 2 positives, 1 negative -> weight 1/2
    binary = (0.5 * bce(1.0, 1) + 0.5 * bce(-0.5, 1) + bce(0.2, 0)) / 2.0
    assert PointwiseCELoss()(scores, labels).item() == pytest.approx(binary, abs=ATOL)
    # soft targets: clip(label, 0, 1) -> 1, 0.5, 0 with the same weights
    soft = (0.5 * bce(1.0, 1) + 0.5 * bce(-0.5, 0.5) + bce(0.2, 0)) / 2.0
    assert PointwiseCELoss(soft_targets=True)(scores, labels).item() == pytest.approx(soft, abs=ATOL)
    assert soft != pytest.approx(binary, abs=1e-3)


def test_pointwise_ce_rows_without_positive_or_without_negative():
    scores = t([[1.0, 0.0, 0.0], [0.2, -0.4, 1.0], [0.6, -0.1, 0.0]])
    labels = t([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True], [True, True, False]])
    # row 0 balanced (1 vs 1, weight 1); row 1 has no positive and row 2 no negative: weights stay 1
    num = bce(1.0, 1) + bce(0.0, 0) + bce(0.2, 0) + bce(-0.4, 0) + bce(1.0, 0) + bce(0.6, 1) + bce(-0.1, 1)
    value, grad = value_and_grad(PointwiseCELoss(), scores, labels, mask)
    assert value.item() == pytest.approx(num / 7, abs=ATOL)
    assert grad[1, 2] > 0  # a negatives-only row still pushes its negatives down


# --------------------------------------------------------------------------------------------------
# pairwise_logistic and pairwise_softmax

PAIR_SCORES = t([[0.2, 0.5, -1.0, 0.0], [1.0, 1.5, 0.0, 7.0]])
PAIR_LABELS = t([[1.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0]])
PAIR_MASK = torch.tensor([[True, True, True, False], [True, True, True, False]])
# row 0: pairs (0,1), (0,2); row 1 (graded): pairs (0,1), (0,2), (1,2)
ROW0_PAIRS = [log1pexp(0.5 - 0.2), log1pexp(-1.0 - 0.2)]
ROW1_PAIRS = [log1pexp(1.5 - 1.0), log1pexp(0.0 - 1.0), log1pexp(0.0 - 1.5)]


def test_pairwise_logistic_by_hand_mean_over_all_pairs_of_the_batch():
    expected = (sum(ROW0_PAIRS) + sum(ROW1_PAIRS)) / 5
    got = PairwiseLogisticLoss()(PAIR_SCORES, PAIR_LABELS, PAIR_MASK)
    assert got.item() == pytest.approx(expected, abs=ATOL)


def test_pairwise_logistic_label_difference_weights():
    weights = [1, 1] + [1, 2, 1]
    terms = ROW0_PAIRS + ROW1_PAIRS
    expected = sum(w * x for w, x in zip(weights, terms)) / sum(weights)
    got = PairwiseLogisticLoss(weight_by_label_diff=True)(PAIR_SCORES, PAIR_LABELS, PAIR_MASK)
    assert got.item() == pytest.approx(expected, abs=ATOL)


def test_pairwise_logistic_is_numerically_stable():
    scores = t([[1000.0, -1000.0], [-1000.0, 1000.0]])
    labels = t([[0.0, 1.0], [0.0, 1.0]])
    value, grad = value_and_grad(PairwiseLogisticLoss(), scores, labels)
    # row 0: log(1 + e^2000) = 2000 (+ e^-2000); row 1: log(1 + e^-2000) ~ 0
    assert value.item() == pytest.approx(1000.0, rel=1e-6)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, t([[0.5, -0.5], [0.0, 0.0]]))


def test_pairwise_softmax_by_hand_mean_per_query_then_over_queries():
    expected = (sum(ROW0_PAIRS) / 2 + sum(ROW1_PAIRS) / 3) / 2
    got = PairwiseSoftmaxLoss()(PAIR_SCORES, PAIR_LABELS, PAIR_MASK)
    assert got.item() == pytest.approx(expected, abs=ATOL)
    # not silently the same as pairwise_logistic when rows have different numbers of pairs
    logistic = PairwiseLogisticLoss()(PAIR_SCORES, PAIR_LABELS, PAIR_MASK)
    assert abs(got.item() - logistic.item()) > 1e-3


def test_pairwise_softmax_on_colbert_triples_equals_two_way_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    s_pos, s_neg = torch.randn(6, generator=gen) * 3, torch.randn(6, generator=gen) * 3
    # candidates in either order: positive first in even rows, second in odd rows
    scores = torch.stack([s_pos, s_neg], 1)
    scores[1::2] = scores[1::2].flip(1)
    labels = torch.zeros(6, 2)
    labels[0::2, 0] = 1.0
    labels[1::2, 1] = 1.0
    value, grad = value_and_grad(PairwiseSoftmaxLoss(), scores, labels)

    logits = torch.stack([s_pos, s_neg], 1).requires_grad_(True)
    ref = F.cross_entropy(logits, torch.zeros(6, dtype=torch.long))
    ref.backward()
    ref_grad = logits.grad.clone()
    ref_grad[1::2] = ref_grad[1::2].flip(1)
    assert value.item() == pytest.approx(ref.item(), abs=ATOL)
    torch.testing.assert_close(grad, ref_grad)
    # on triples (one pair per row) both pairwise losses coincide, as documented
    assert PairwiseLogisticLoss()(scores, labels).item() == pytest.approx(value.item(), abs=ATOL)


@pytest.mark.parametrize("cls", [PairwiseLogisticLoss, PairwiseSoftmaxLoss])
def test_pairwise_row_without_positive_contributes_nothing(cls):
    scores = torch.cat([PAIR_SCORES[:1], t([[3.0, -2.0, 0.5, 1.0]])])
    labels = torch.cat([PAIR_LABELS[:1], torch.zeros(1, 4)])
    value, grad = value_and_grad(cls(), scores, labels, PAIR_MASK)
    assert value.item() == pytest.approx(sum(ROW0_PAIRS) / 2, abs=ATOL)
    assert (grad[1] == 0).all()


def test_pairwise_ties_are_not_pairs():
    scores = t([[0.3, -0.7, 1.1]])
    labels = t([[1.0, 1.0, 0.0]])  # the two positives tie: pairs (0,2), (1,2) only
    expected = (log1pexp(1.1 - 0.3) + log1pexp(1.1 + 0.7)) / 2
    for loss in (PairwiseLogisticLoss(), PairwiseSoftmaxLoss()):
        assert loss(scores, labels).item() == pytest.approx(expected, abs=ATOL)


# --------------------------------------------------------------------------------------------------
# margin (RepBERT MultiLabelMarginLoss)


def torch_target(labels: torch.Tensor) -> torch.Tensor:
    """torch.nn.MultiLabelMarginLoss target: positive indices first, then -1."""
    target = torch.full(labels.shape, -1, dtype=torch.long)
    for r, row in enumerate(labels):
        pos = (row > 0).nonzero().flatten()
        target[r, : len(pos)] = pos
    return target


def test_margin_equals_torch_multilabel_margin_loss():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(6, 7, generator=gen)
    labels = t(
        [
            [1, 0, 0, 0, 0, 0, 0],  # RepBERT: one positive
            [0, 0, 1, 0, 1, 0, 0],  # two positives
            [0, 0, 0, 0, 0, 0, 0],  # no positive (counts as 0 in the mean, as in torch)
            [1, 1, 1, 1, 1, 1, 1],  # no negative
            [0, 0, 0, 0, 0, 0, 2],  # graded: any label > 0 is a positive
            [0, 1, 0, 1, 0, 1, 0],
        ]
    )
    value, grad = value_and_grad(MultiLabelMarginLoss(), scores, labels)
    x = scores.clone().requires_grad_(True)
    ref = torch.nn.MultiLabelMarginLoss()(x, torch_target(labels))
    ref.backward()
    assert value.item() == pytest.approx(ref.item(), abs=ATOL)
    torch.testing.assert_close(grad, x.grad)
    assert grad.abs().sum() > 0


def test_margin_by_hand_with_padding_custom_margin_and_grades():
    scores = t([[0.5, 0.2, 0.9, 42.0], [0.0, 1.0, -0.3, 0.4]])
    labels = t([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    # margin 0.5; row 0: n = 3 real, one positive (idx 0); row 1: n = 4, positives 0 and 2
    row0 = (max(0.0, 0.5 - (0.5 - 0.2)) + max(0.0, 0.5 - (0.5 - 0.9))) / 3
    row1 = (
        max(0.0, 0.5 - (0.0 - 1.0)) + max(0.0, 0.5 - (0.0 - 0.4))
        + max(0.0, 0.5 - (-0.3 - 1.0)) + max(0.0, 0.5 - (-0.3 - 0.4))
    ) / 4
    got = MultiLabelMarginLoss(margin=0.5)(scores, labels, mask)
    assert got.item() == pytest.approx((row0 + row1) / 2, abs=ATOL)
    binary = MultiLabelMarginLoss(margin=0.5)(scores, (labels > 0).float(), mask)
    assert binary.item() == pytest.approx(got.item(), abs=ATOL)


def test_margin_row_without_positive_counts_as_zero():
    scores = t([[0.5, 0.2, 0.9], [3.0, -1.0, 0.0]])
    labels = t([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    row0 = (max(0.0, 1 - (0.5 - 0.2)) + max(0.0, 1 - (0.5 - 0.9))) / 3
    value, grad = value_and_grad(MultiLabelMarginLoss(), scores, labels)
    assert value.item() == pytest.approx(row0 / 2, abs=ATOL)
    assert (grad[1] == 0).all()


# --------------------------------------------------------------------------------------------------
# softmax and poly1


def logsumexp(xs) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def test_softmax_equals_cross_entropy_with_one_positive_per_row():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(5, 8, generator=gen) * 2
    target = torch.randint(0, 8, (5,), generator=gen)
    labels = F.one_hot(target, 8).float()
    value, grad = value_and_grad(SoftmaxCELoss(), scores, labels)
    x = scores.clone().requires_grad_(True)
    ref = F.cross_entropy(x, target)
    ref.backward()
    assert value.item() == pytest.approx(ref.item(), abs=ATOL)
    torch.testing.assert_close(grad, x.grad)


def test_softmax_graded_labels_by_hand_and_soft_labels_are_normalised():
    scores = t([[1.0, 0.0, -1.0]])
    lz = logsumexp([1.0, 0.0, -1.0])
    expected = -((2 / 3) * (1.0 - lz) + (1 / 3) * (0.0 - lz))
    assert SoftmaxCELoss()(scores, t([[2.0, 1.0, 0.0]])).item() == pytest.approx(expected, abs=ATOL)
    # soft labels 0.5, 0.25 normalise to the same distribution; negative labels count as 0
    assert SoftmaxCELoss()(scores, t([[0.5, 0.25, -1.0]])).item() == pytest.approx(expected, abs=ATOL)


def test_softmax_padding_is_outside_the_softmax():
    scores = t([[2.0, 0.0, 50.0]])
    labels = t([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    expected = -(2.0 - logsumexp([2.0, 0.0]))
    assert SoftmaxCELoss()(scores, labels, mask).item() == pytest.approx(expected, abs=ATOL)


def test_softmax_skips_rows_without_relevant_label():
    scores = t([[2.0, 0.0, -1.0], [5.0, 1.0, 0.0]])
    labels = t([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = -(2.0 - logsumexp([2.0, 0.0, -1.0]))  # row 1 skipped, mean over the one kept row
    value, grad = value_and_grad(SoftmaxCELoss(), scores, labels)
    assert value.item() == pytest.approx(expected, abs=ATOL)
    assert (grad[1] == 0).all()


def test_poly1_by_hand_two_positives():
    scores = t([[1.0, 0.0, -1.0]])
    labels = t([[1.0, 1.0, 0.0]])
    z = math.exp(1.0) + math.exp(0.0) + math.exp(-1.0)
    soft = [math.exp(1.0) / z, math.exp(0.0) / z, math.exp(-1.0) / z]
    p = [0.5, 0.5, 0.0]
    ce = -sum(pi * math.log(si) for pi, si in zip(p, soft))
    for eps in (1.0, 2.0, -0.5):
        # RankT5: CE + sum_j eps * y_j (1 - softmax_j), with y normalised to sum 1
        expected = ce + sum(eps * pi * (1.0 - si) for pi, si in zip(p, soft))
        got = Poly1SoftmaxLoss(epsilon=eps)(scores, labels)
        assert got.item() == pytest.approx(expected, abs=ATOL)


def test_poly1_default_epsilon_is_one_and_skips_rows_like_softmax():
    scores = t([[2.0, 0.0, -1.0], [5.0, 1.0, 0.0]])
    labels = t([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    p_t = math.exp(2.0) / (math.exp(2.0) + math.exp(0.0) + math.exp(-1.0))
    value, grad = value_and_grad(Poly1SoftmaxLoss(), scores, labels)
    assert value.item() == pytest.approx(-math.log(p_t) + (1.0 - p_t), abs=ATOL)
    assert (grad[1] == 0).all()


def test_poly1_with_epsilon_zero_equals_softmax():
    gen = torch.Generator().manual_seed(4)
    scores = torch.randn(4, 6, generator=gen)
    labels = torch.randint(0, 3, (4, 6), generator=gen).float()
    labels[2] = 0.0
    mask = torch.rand(4, 6, generator=gen) > 0.2
    a, ga = value_and_grad(Poly1SoftmaxLoss(epsilon=0.0), scores, labels, mask)
    b, gb = value_and_grad(SoftmaxCELoss(), scores, labels, mask)
    assert torch.equal(a, b) and torch.equal(ga, gb)
    c = Poly1SoftmaxLoss(epsilon=1.0)(scores, labels, mask)
    assert c.item() > b.item() + 1e-3
