"""Pairwise losses: built from pairs (i, j) of candidates of the same query.

All three losses here form pairs inside a row only, and only between real entries. They cost
O(B * L^2) memory and time (a [B, L, L] tensor), which is fine for training lists (L in the tens or
hundreds, or an in-batch matrix with L = number of documents in the batch).

``pairwise_logistic`` and ``pairwise_softmax`` apply the *same* function to a pair,
softplus(s_j - s_i) = -log( e^{s_i} / (e^{s_i} + e^{s_j}) ), which is both the logistic loss on the
score difference (RankNet / RankT5 "Pair") and the 2-way softmax cross-entropy that picks the more
relevant document (ColBERT). They differ only in how pairs are weighted and averaged:

* ``pairwise_logistic``: mean over **all valid pairs of the batch** (a query with many pairs weighs
  more), optionally each pair weighted by its label difference;
* ``pairwise_softmax``: mean over the pairs **of each query**, then mean over queries (every query
  with at least one pair weighs the same).

They coincide when every row has the same number of pairs and no label-difference weighting is used,
e.g. for ColBERT triples (one positive and one negative per row); they differ otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import RankingLoss, safe_div

__all__ = ["PairwiseLogisticLoss", "PairwiseSoftmaxLoss", "MultiLabelMarginLoss", "pair_mask"]


def pair_mask(labels: Tensor, mask: Tensor) -> Tensor:
    """``[B, L, L]`` bool: ``P[b, i, j]`` is True when i and j are real and ``labels[b, i] > labels[b, j]``."""
    real = mask.unsqueeze(2) & mask.unsqueeze(1)
    return real & (labels.unsqueeze(2) > labels.unsqueeze(1))


def _pair_softplus(scores: Tensor, pairs: Tensor) -> Tensor:
    """``[B, L, L]``: softplus(s_j - s_i) where ``pairs[b, i, j]``, exactly 0 elsewhere (zero gradient)."""
    diff = scores.unsqueeze(1) - scores.unsqueeze(2)  # diff[b, i, j] = s[b, j] - s[b, i]
    return torch.where(pairs, F.softplus(diff), torch.zeros_like(diff))


class PairwiseLogisticLoss(RankingLoss):
    r"""Pairwise logistic loss (RankNet; "Pair" in RankT5).

    Papers: Burges et al., *Learning to Rank using Gradient Descent*, ICML 2005 (RankNet); Zhuang et
    al., *RankT5*, SIGIR 2023, Sec. 4.2:
    :math:`\ell_{\mathrm{Pair}} = \sum_{j}\sum_{j'} \mathbb{1}[y_j > y_{j'}]\log(1 + e^{\hat y_{j'} - \hat y_j})`.

    Formula used here, over all rows b and real pairs (i, j) of the same row with :math:`y_{bi} > y_{bj}`:

    .. math::
        L = \frac{\sum_{b}\sum_{y_{bi} > y_{bj}} w_{bij}\,\log(1 + e^{s_{bj} - s_{bi}})}
                 {\sum_{b}\sum_{y_{bi} > y_{bj}} w_{bij}}

    with :math:`w_{bij} = 1` (default) or :math:`w_{bij} = y_{bi} - y_{bj}` when
    ``weight_by_label_diff=True`` (a pair of grades 3 vs 0 then counts three times a pair 1 vs 0).

    Normalisation: the weighted **mean over all valid pairs in the batch** (RankT5 writes a sum per
    list; the mean only rescales it by a per-batch constant and keeps the loss scale independent of the
    list length). Ties and pairs touching padding are not pairs. Computed with ``softplus`` so large
    score differences neither overflow nor lose precision. With binary labels the weighting option
    changes nothing. See the module docstring for how this differs from :class:`PairwiseSoftmaxLoss`.
    A batch without any valid pair gives 0 (zero gradient).

    Inputs: ``scores`` any real numbers; ``labels`` graded (or soft) relevance, only their order within
    a row matters (and their differences with ``weight_by_label_diff``).

    Example (one row, labels 2 > 1 > 0: pairs (0,1), (0,2), (1,2)):

    >>> import torch
    >>> from retrieval_lab.losses import PairwiseLogisticLoss
    >>> scores = torch.tensor([[1.0, 0.0, 0.5]])
    >>> labels = torch.tensor([[2.0, 1.0, 0.0]])
    >>> # (softplus(-1) + softplus(-0.5) + softplus(0.5)) / 3
    >>> round(PairwiseLogisticLoss()(scores, labels).item(), 4)
    0.5871
    """

    def __init__(self, weight_by_label_diff: bool = False) -> None:
        super().__init__()
        self.weight_by_label_diff = weight_by_label_diff

    def extra_repr(self) -> str:
        return f"weight_by_label_diff={self.weight_by_label_diff}"

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        pairs = pair_mask(labels, mask)
        terms = _pair_softplus(scores, pairs)
        if self.weight_by_label_diff:
            weight = torch.where(pairs, labels.unsqueeze(2) - labels.unsqueeze(1), torch.zeros_like(terms))
        else:
            weight = pairs.to(scores.dtype)
        return safe_div((weight * terms).sum(), weight.sum())


class PairwiseSoftmaxLoss(RankingLoss):
    r"""Pairwise softmax cross-entropy (ColBERT), averaged per query.

    Paper: Khattab & Zaharia, *ColBERT: Efficient and Effective Passage Search via Contextualized Late
    Interaction over BERT*, SIGIR 2020, Sec. 3.3: "Given a triple :math:`\langle q, d^+, d^-\rangle`
    [...] optimized via pairwise softmax cross-entropy loss over the computed scores of :math:`d^+` and
    :math:`d^-`".

    For one pair, the cross-entropy of :math:`\mathrm{softmax}([s^+, s^-])` with the positive as target:

    .. math::
        -\log\frac{e^{s^+}}{e^{s^+} + e^{s^-}} = \log(1 + e^{s^- - s^+}) = \mathrm{softplus}(s^- - s^+).

    Generalised to lists: the pairs of row b are the real (i, j) with :math:`y_{bi} > y_{bj}` (with
    binary labels: every positive against every negative), :math:`n_b` their number, and

    .. math::
        L = \frac{1}{|\{b : n_b > 0\}|}\sum_{b:\,n_b>0}\ \frac{1}{n_b}\sum_{y_{bi} > y_{bj}}
            \mathrm{softplus}(s_{bj} - s_{bi})

    Normalisation: **mean over the pairs of each query, then mean over queries**; rows without a pair
    (no positive, or all labels equal) are skipped, and if every row is skipped the loss is 0 with zero
    gradient. With exactly one positive and one negative per row this is the ColBERT loss, i.e.
    ``F.cross_entropy(stack([s_pos, s_neg], 1), zeros)``. Same per-pair function as
    :class:`PairwiseLogisticLoss`, which instead averages over all pairs of the batch (see the module
    docstring).

    Inputs: ``scores`` any real numbers, ``labels`` graded relevance (only the order within a row matters).

    Example (row 0 is a ColBERT triple; row 1 has one positive and two negatives):

    >>> import torch
    >>> from retrieval_lab.losses import PairwiseSoftmaxLoss
    >>> scores = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, -1.0]])
    >>> labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    >>> mask = torch.tensor([[True, True, False], [True, True, True]])
    >>> # (softplus(-2) + (softplus(1) + softplus(-1)) / 2) / 2
    >>> round(PairwiseSoftmaxLoss()(scores, labels, mask).item(), 4)
    0.4701
    """

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        pairs = pair_mask(labels, mask)
        terms = _pair_softplus(scores, pairs)
        n_pairs = pairs.sum(dim=(1, 2)).to(scores.dtype)
        per_row = safe_div(terms.sum(dim=(1, 2)), n_pairs)
        valid = n_pairs > 0
        return safe_div(torch.where(valid, per_row, torch.zeros_like(per_row)).sum(), valid.sum().to(scores.dtype))


class MultiLabelMarginLoss(RankingLoss):
    r"""Multi-label hinge loss over (positive, negative) pairs (RepBERT, eq. 4).

    Paper: Zhan et al., *RepBERT: Contextualized Text Embeddings for First-Stage Retrieval*, 2020,
    Sec. 3.2, eq. 4, "We adopt MultiLabelMarginLoss": for one query with m positives among n candidates

    .. math::
        L_b = \frac{1}{n}\sum_{1 \le i \le m,\ m < j \le n} \max\bigl(0,\ \mathrm{margin} - (s_i - s_j)\bigr)

    Here a positive is a real entry with ``label > 0`` (all grades count alike: this loss is binary) and
    a negative a real entry with ``label <= 0``; :math:`n` is the number of **real** candidates in the
    row (padding excluded). The batch loss is the mean of :math:`L_b` over rows that have at least one
    real entry; a row without a positive (or without a negative) has :math:`L_b = 0` and still counts
    in the mean. That is exactly ``torch.nn.MultiLabelMarginLoss()`` (reduction="mean", margin 1) on
    unpadded inputs, whose target row lists the positive indices followed by -1.

    With in-batch negatives (a [B, B] score matrix, query b against the documents of the whole batch)
    another query's document labelled relevant to query b is simply a positive of row b, as RepBERT
    prescribes; building that label matrix is the training code's job.

    Inputs: ``scores`` any real numbers; ``labels`` relevance (only ``> 0`` matters); ``margin > 0``.

    Example (the RepBERT setting: one positive, the rest negatives):

    >>> import torch
    >>> from retrieval_lab.losses import MultiLabelMarginLoss
    >>> scores = torch.tensor([[0.5, 0.2, 0.9, -2.0]])
    >>> labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    >>> # (max(0, 1 - 0.3) + max(0, 1 + 0.4) + max(0, 1 - 2.5)) / 4
    >>> round(MultiLabelMarginLoss()(scores, labels).item(), 4)
    0.525
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = float(margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        pos = mask & (labels > 0)
        neg = mask & ~(labels > 0)
        pairs = pos.unsqueeze(2) & neg.unsqueeze(1)  # pairs[b, i, j]: i positive, j negative
        diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # diff[b, i, j] = s[b, i] - s[b, j]
        hinge = torch.where(pairs, F.relu(self.margin - diff), torch.zeros_like(diff))
        n_real = mask.sum(dim=-1).to(scores.dtype)
        per_row = safe_div(hinge.sum(dim=(1, 2)), n_real)
        rows = n_real > 0
        return safe_div(torch.where(rows, per_row, torch.zeros_like(per_row)).sum(), rows.sum().to(scores.dtype))
