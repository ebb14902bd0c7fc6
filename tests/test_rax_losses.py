"""Our four RankT5 losses checked numerically against Rax, the JAX learning-to-rank library RankT5 used.

Compared (float64 on both sides, values and gradients w.r.t. the scores, tolerance ~1e-9..1e-6):

=====================  ===============================  =============================================
ours (build_loss name)  Rax function                      Rax arguments that compute the same quantity
=====================  ===============================  =============================================
pointwise_ce            rax.pointwise_sigmoid_loss        weights = our balance weights (N/P for
                                                          positives), reduce_fn=jnp.sum, divided by
                                                          sum(weights); balance=False: Rax's defaults
pairwise_logistic       rax.pairwise_logistic_loss        Rax's defaults (mean over all valid pairs of
                                                          the batch); weight_by_label_diff=True:
                                                          rax.labeldiff_lambdaweight, jnp.sum / sum(w)
softmax                 rax.softmax_loss                  label_fn=rax.utils.normalize_probabilities,
                                                          rows without a relevant label left out
poly1                   rax.poly1_softmax_loss (eps=1)    labels normalised per row beforehand, rows
                                                          without a relevant label left out
=====================  ===============================  =============================================

Where our losses deliberately differ from Rax's *defaults*, a separate test (``test_*_differs_*``)
pins the exact difference with numbers, so a change on either side shows up here.

The batch: 8 lists of 12 entries (seeded), binary and graded labels, several positives per row, padding
at the end of some rows (holding finite garbage that both sides must ignore) and rows without any
relevant document. Rax never sees our code's output: every expected value comes from Rax (or numpy).
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # before jax is imported: no accelerator probing

import numpy as np
import pytest
import torch

import jax  # noqa: E402  (dev dependency: pyproject.toml [dev])
import jax.numpy as jnp  # noqa: E402
import rax  # noqa: E402

from retrieval_lab.losses import build_loss  # noqa: E402

jax.config.update("jax_enable_x64", True)  # compare in float64 (ours runs in float64 too)

RTOL, ATOL = 1e-9, 1e-9

# Rows chosen so every case appears; the others are random.
NO_POS_ROWS = (2, 6)  # rows without a relevant document
LENGTHS = (12, 9, 10, 7, 12, 5, 11, 8)  # real entries per row; the rest is padding


def make_batch(seed: int = 0):
    """scores, labels, mask as float64 / bool numpy arrays of shape [8, 12]."""
    rng = np.random.default_rng(seed)
    n_rows, n_cols = len(LENGTHS), max(LENGTHS)
    scores = rng.normal(0.0, 2.0, size=(n_rows, n_cols))
    mask = np.arange(n_cols)[None, :] < np.array(LENGTHS)[:, None]
    labels = np.zeros((n_rows, n_cols))
    for b, n in enumerate(LENGTHS):
        if b in NO_POS_ROWS:
            continue
        if b % 2 == 0:  # binary labels, 2..4 positives
            pos = rng.choice(n, size=rng.integers(2, 5), replace=False)
            labels[b, pos] = 1.0
        else:  # graded labels 0..3, at least two relevant
            labels[b, :n] = rng.integers(0, 4, size=n)
            labels[b, :2] = np.maximum(labels[b, :2], [1.0, 2.0])
    # Finite garbage in the padding: a loss that looked at it would change.
    scores[~mask] = 25.0
    labels[~mask] = 3.0
    return scores, labels, mask


SCORES, LABELS, MASK = make_batch()
CLEAN_LABELS = np.where(MASK, LABELS, 0.0)
KEEP = (CLEAN_LABELS > 0).any(axis=1)  # rows with a relevant document


def ours(name: str, scores=SCORES, labels=LABELS, mask=MASK, **kw):
    """Our loss in float64: (value, d value / d scores) as numpy."""
    s = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    value = build_loss(name, **kw)(s, torch.tensor(labels, dtype=torch.float64), torch.tensor(mask))
    value.backward()
    return value.item(), s.grad.numpy()


def theirs(fn, scores=SCORES):
    """A scalar JAX function of the scores: (value, gradient) as numpy."""
    value, grad = jax.jit(jax.value_and_grad(fn))(jnp.asarray(scores))
    return float(value), np.asarray(grad)


def rax_eval(fn, labels, scores=SCORES, **kw):
    """``fn(scores, labels, **kw)`` for a Rax loss, jitted (faster than op-by-op on CPU), as numpy."""
    return np.asarray(jax.jit(lambda x: fn(x, labels, **kw))(jnp.asarray(scores)))


def log_softmax_rows(scores, mask):
    """numpy log-softmax over the real entries of each row (padding: -inf)."""
    x = np.where(mask, scores, -np.inf)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def test_batch_has_every_case():
    assert (~MASK).any(axis=1).sum() >= 3  # padded rows
    assert not KEEP[list(NO_POS_ROWS)].any() and KEEP.sum() == 6
    assert ((CLEAN_LABELS > 0).sum(axis=1)[KEEP] >= 2).all()  # several positives per kept row
    assert (CLEAN_LABELS > 1).any() and set(np.unique(CLEAN_LABELS)) <= {0.0, 1.0, 2.0, 3.0}
    assert SCORES.dtype == np.float64


# ----------------------------------------------------------------------------------------- pointwise


def balance_weights(labels, mask):
    """RankT5's upsampling of positives, written out in numpy: N/P per positive, 1 per negative."""
    pos = mask & (labels > 0)
    n_pos = pos.sum(axis=1, keepdims=True)
    n_neg = (mask & ~(labels > 0)).sum(axis=1, keepdims=True)
    ratio = np.where((n_pos > 0) & (n_neg > 0), n_neg / np.maximum(n_pos, 1), 1.0)
    return np.where(pos, ratio, 1.0) * mask


def test_pointwise_balanced_matches_rax_weighted_sum_over_weights():
    w = balance_weights(CLEAN_LABELS, MASK)
    binary = (CLEAN_LABELS > 0).astype(np.float64)  # ours: target 1[y > 0]; Rax clips y to [0, 1]
    value, grad = ours("pointwise_ce")
    ref, ref_grad = theirs(
        lambda s: rax.pointwise_sigmoid_loss(s, binary, where=MASK, weights=w, reduce_fn=jnp.sum) / w.sum()
    )
    np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-7, atol=ATOL)
    assert (grad[~MASK] == 0).all()


def test_pointwise_unbalanced_matches_rax_defaults():
    # Graded labels go in as they are: Rax clips them to [0, 1], which is our 1[y > 0] for integer grades.
    value, grad = ours("pointwise_ce", balance=False)
    ref, ref_grad = theirs(lambda s: rax.pointwise_sigmoid_loss(s, LABELS, where=MASK))
    np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-7, atol=ATOL)


def test_pointwise_soft_targets_match_rax_label_clipping():
    grades = [-1.0, 0.0, 0.25, 0.5, 0.9, 2.0]  # Rax clips to [0, 1]; ours with soft_targets=True too
    soft = np.where(MASK, np.random.default_rng(1).choice(grades, size=LABELS.shape), 0.0)
    value, grad = ours("pointwise_ce", labels=soft, balance=False, soft_targets=True)
    ref, ref_grad = theirs(lambda s: rax.pointwise_sigmoid_loss(s, soft, where=MASK))
    np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-7, atol=ATOL)


def test_pointwise_balance_differs_from_rax_weighted_mean():
    # Project choice (PointwiseCELoss docstring): the balanced loss is the mean over the *upsampled*
    # batch, sum(w * l) / sum(w). Rax's `weights` with its default reduce_fn=jnp.mean divides by the
    # number of real entries instead: it equals ours * sum(w) / n_real. (In this batch the graded rows
    # have more positives than negatives, so N/P < 1 there and sum(w) = 2N per row is below n_real.)
    w = balance_weights(CLEAN_LABELS, MASK)
    n_real = MASK.sum()
    assert (n_real, w.sum()) == (74, 67.0)
    value, _ = ours("pointwise_ce")  # 1.37140
    rax_mean = float(rax_eval(rax.pointwise_sigmoid_loss, LABELS, where=MASK, weights=w))  # 1.24167
    np.testing.assert_allclose(rax_mean, value * w.sum() / n_real, rtol=RTOL)
    assert abs(rax_mean - value) > 0.1  # not a rounding-level difference
    # Rows without a positive cannot be balanced: both sides keep weight 1 there (checked above).


# ------------------------------------------------------------------------------------------ pairwise


def valid_pairs(labels, mask):
    real = mask[:, :, None] & mask[:, None, :]
    return real & (labels[:, :, None] > labels[:, None, :])


def test_pairwise_logistic_matches_rax_defaults():
    # Rax's default reduce_fn=jnp.mean averages over all valid pairs of the batch, as ours does.
    value, grad = ours("pairwise_logistic")
    ref, ref_grad = theirs(lambda s: rax.pairwise_logistic_loss(s, LABELS, where=MASK))
    np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-7, atol=ATOL)
    assert (grad[~MASK] == 0).all() and (grad[list(NO_POS_ROWS)] == 0).all()  # no pairs, no gradient


def test_pairwise_logistic_label_diff_weighting_matches_rax_labeldiff_lambdaweight():
    pairs = valid_pairs(CLEAN_LABELS, MASK)
    w_sum = (CLEAN_LABELS[:, :, None] - CLEAN_LABELS[:, None, :])[pairs].sum()
    value, grad = ours("pairwise_logistic", weight_by_label_diff=True)
    ref, ref_grad = theirs(
        lambda s: rax.pairwise_logistic_loss(
            s, LABELS, where=MASK, lambdaweight_fn=rax.labeldiff_lambdaweight, reduce_fn=jnp.sum
        ) / w_sum
    )
    np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-7, atol=ATOL)


def test_pairwise_logistic_reduction_differs_from_rankt5_sum():
    # Project choice (PairwiseLogisticLoss docstring): RankT5 writes a *sum* over pairs; we take the mean
    # over all valid pairs of the batch (= Rax's default), i.e. the sum divided by a per-batch constant.
    n_pairs = valid_pairs(CLEAN_LABELS, MASK).sum()
    assert n_pairs == 135
    value, _ = ours("pairwise_logistic")  # 2.10216
    rax_sum = float(rax_eval(rax.pairwise_logistic_loss, LABELS, where=MASK, reduce_fn=jnp.sum))  # 283.79
    np.testing.assert_allclose(rax_sum, value * n_pairs, rtol=RTOL)
    # Rax's `weights` (per item i of a pair) is *not* our label-difference weighting:
    w = np.where(MASK, CLEAN_LABELS, 0.0)
    rax_item_w = float(rax_eval(rax.pairwise_logistic_loss, LABELS, where=MASK, weights=w))
    ours_diff, _ = ours("pairwise_logistic", weight_by_label_diff=True)
    assert abs(rax_item_w - ours_diff) > 1.0  # 3.65465 vs 2.06892


# ------------------------------------------------------------------------------------------ listwise


def test_softmax_matches_rax_normalised_labels_on_rows_with_a_positive():
    value, grad = ours("softmax")
    ref, ref_grad = theirs(
        lambda s: rax.softmax_loss(
            s, LABELS[KEEP], where=MASK[KEEP], label_fn=rax.utils.normalize_probabilities
        ),
        scores=SCORES[KEEP],
    )
    np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad[KEEP], ref_grad, rtol=1e-7, atol=ATOL)
    assert (grad[~KEEP] == 0).all() and (grad[~MASK] == 0).all()


def test_softmax_differs_from_rax_on_label_normalisation_and_rows_without_positive():
    s = jnp.asarray(SCORES)
    per_row_ours = -(np.where(MASK, CLEAN_LABELS, 0) / np.maximum(CLEAN_LABELS.sum(1, keepdims=True), 1)
                     * np.where(MASK, log_softmax_rows(SCORES, MASK), 0)).sum(1)
    value, _ = ours("softmax")
    np.testing.assert_allclose(value, per_row_ours[KEEP].mean(), rtol=RTOL)  # our documented formula

    # (1) Rax's softmax_loss default label_fn is the identity, not a normalisation: a row's loss is
    #     scaled by its label sum (our docstring's normalisation is Rax's *optional* label_fn).
    raw = np.asarray(rax_eval(rax.softmax_loss, LABELS, where=MASK, reduce_fn=None))
    np.testing.assert_allclose(raw, per_row_ours * CLEAN_LABELS.sum(1), rtol=1e-9, atol=ATOL)
    assert CLEAN_LABELS.sum(1)[KEEP].max() >= 10  # graded multi-positive rows: a large scale factor
    # ...and a row without a positive contributes 0 but still counts in Rax's mean.
    np.testing.assert_allclose(float(rax_eval(rax.softmax_loss, LABELS, where=MASK)), raw.sum() / 8, rtol=RTOL)
    np.testing.assert_allclose(raw[list(NO_POS_ROWS)], 0.0, atol=0)

    # (2) Project choice (SoftmaxCELoss docstring): with normalised labels, Rax gives a row without a
    #     positive a uniform target over its real entries: L_b = -mean_i log softmax(s_b)_i, which has
    #     a gradient pulling that row's scores together. Ours skips the row (no value, zero gradient).
    norm = np.asarray(rax_eval(
        rax.softmax_loss, LABELS, where=MASK, label_fn=rax.utils.normalize_probabilities, reduce_fn=None))
    np.testing.assert_allclose(norm[KEEP], per_row_ours[KEEP], rtol=1e-9)
    uniform = [-log_softmax_rows(SCORES, MASK)[b, :LENGTHS[b]].mean() for b in NO_POS_ROWS]
    np.testing.assert_allclose(norm[list(NO_POS_ROWS)], uniform, rtol=1e-9)
    assert min(uniform) > 1.5  # far from 0: Rax's mean over 8 rows is not ours over 6
    rax_grad = np.asarray(jax.jit(jax.grad(lambda x: rax.softmax_loss(
        x, LABELS, where=MASK, label_fn=rax.utils.normalize_probabilities)))(s))
    assert np.abs(rax_grad[list(NO_POS_ROWS)]).max() > 1e-3
    assert (ours("softmax")[1][list(NO_POS_ROWS)] == 0).all()


def normalised(labels, mask):
    y = np.where(mask, labels, 0.0)
    total = y.sum(axis=1, keepdims=True)
    return np.where(total > 0, y / np.where(total > 0, total, 1.0), 0.0)


def test_poly1_matches_rax_with_prenormalised_labels_on_rows_with_a_positive():
    # Rax's poly1 normalises the labels only inside p_t; its cross-entropy term takes them raw. Handing it
    # labels already normalised per row makes both terms use the distribution our loss uses.
    y = normalised(LABELS, MASK)
    value, grad = ours("poly1", epsilon=1.0)
    ref, ref_grad = theirs(
        lambda s: rax.poly1_softmax_loss(s, y[KEEP], where=MASK[KEEP], epsilon=1.0), scores=SCORES[KEEP]
    )
    np.testing.assert_allclose(value, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad[KEEP], ref_grad, rtol=1e-7, atol=ATOL)
    assert (grad[~KEEP] == 0).all() and (grad[~MASK] == 0).all()


def test_poly1_differs_from_rax_defaults():
    s = jnp.asarray(SCORES)
    log_p = np.where(MASK, log_softmax_rows(SCORES, MASK), 0.0)
    y = normalised(LABELS, MASK)
    ce = -(y * log_p).sum(1)
    p_t = (y * np.exp(log_p)).sum(1)
    value, _ = ours("poly1", epsilon=1.0)
    np.testing.assert_allclose(value, (ce + 1.0 - p_t)[KEEP].mean(), rtol=RTOL)  # documented formula

    rax_rows = np.asarray(rax_eval(rax.poly1_softmax_loss, LABELS, where=MASK, epsilon=1.0, reduce_fn=None))
    # (1) With raw graded / multi-positive labels Rax's CE term is scaled by the label sum while its
    #     (1 - p_t) term is normalised: rax_row = sum(y) * CE + (1 - p_t). Ours normalises both
    #     (Poly1SoftmaxLoss docstring: "RankT5's sum_j eps y_j (1 - softmax_j) with normalised labels").
    np.testing.assert_allclose(rax_rows[KEEP], (CLEAN_LABELS.sum(1) * ce + 1.0 - p_t)[KEEP], rtol=1e-9)
    # (2) A row without a positive: CE = 0 (raw labels all 0), p_t = 1 / n_real (uniform target), so Rax
    #     adds the constant 1 - 1/n_real with zero gradient, and counts the row in its mean. Ours skips it.
    n_real = np.array([LENGTHS[b] for b in NO_POS_ROWS])
    np.testing.assert_allclose(rax_rows[list(NO_POS_ROWS)], 1.0 - 1.0 / n_real, rtol=1e-12)  # 0.9, 0.9091
    rax_poly1 = jax.jit(jax.grad(lambda x: rax.poly1_softmax_loss(x, LABELS, where=MASK, epsilon=1.0)))
    rax_grad = np.asarray(rax_poly1(s))
    np.testing.assert_allclose(rax_grad[list(NO_POS_ROWS)], 0.0, atol=1e-12)
    # In RankT5's own setting (one positive with label 1 per list, every list has one) both agree exactly.
    one = np.zeros_like(LABELS)
    one[np.arange(8), [b % n for b, n in enumerate(LENGTHS)]] = 1.0  # a real entry in every row
    got, got_grad = ours("poly1", labels=one, epsilon=1.0)
    ref, ref_grad = theirs(lambda x: rax.poly1_softmax_loss(x, one, where=MASK, epsilon=1.0))
    np.testing.assert_allclose(got, ref, rtol=RTOL)
    np.testing.assert_allclose(got_grad, ref_grad, rtol=1e-7, atol=ATOL)
    got_sm, got_sm_grad = ours("softmax", labels=one)
    ref_sm, ref_sm_grad = theirs(lambda x: rax.softmax_loss(x, one, where=MASK))
    np.testing.assert_allclose(got_sm, ref_sm, rtol=RTOL)
    np.testing.assert_allclose(got_sm_grad, ref_sm_grad, rtol=1e-7, atol=ATOL)
