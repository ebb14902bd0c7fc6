"""Listwise losses: a softmax over each query's whole candidate list."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import RankingLoss, safe_div

__all__ = ["SoftmaxCELoss", "Poly1SoftmaxLoss"]


class SoftmaxCELoss(RankingLoss):
    r"""Listwise softmax cross-entropy ("Softmax" in RankT5).

    Papers: Zhuang et al., *RankT5*, SIGIR 2023, Sec. 4.2; Bruch et al., *An Analysis of the Softmax
    Cross Entropy Loss for Learning-to-Rank with Binary Relevance*, ICTIR 2019 (a simple ListNet).

    Formula for row b, over its real entries, with the labels normalised to a distribution
    :math:`p_{bi} = y^+_{bi} / \sum_j y^+_{bj}` where :math:`y^+ = \max(y, 0)`:

    .. math::
        L_b = -\sum_i p_{bi}\,\log\frac{e^{s_{bi}}}{\sum_{j\ \mathrm{real}} e^{s_{bj}}},\qquad
        L = \frac{1}{|\{b : \sum_j y^+_{bj} > 0\}|}\sum_{b:\,\sum_j y^+_{bj} > 0} L_b

    * Padded entries get logit :math:`-\infty` (they are outside the softmax).
    * Labels normalised per row, as Bruch et al. and as Rax's ``softmax_loss`` with
      ``label_fn=rax.utils.normalize_probabilities`` (Rax's default uses raw labels, so a row weighs as
      much as its label sum). RankT5's printed formula uses raw :math:`y`; for its lists (one label-1
      document each) all three are the same. Graded labels weight the targets (grade 2 gets twice the
      mass of grade 1); soft labels in (0, 1) are used as they are (then normalised); negative labels
      count as 0. ``tests/test_rax_losses.py`` checks the values and gradients against Rax.
    * Rows without a relevant label are skipped (their target distribution is undefined). If every row
      is skipped the loss is 0 with zero gradient (not ``NaN``). (Rax's default counts such a row in
      the mean with value 0; with ``normalize_probabilities`` it gives it a uniform target, which pulls
      its scores together. Here such a row adds nothing and is not counted.)
    * Normalisation: mean over the kept rows.

    With one positive per row this equals ``F.cross_entropy(scores, index_of_positive)`` (the
    in-batch-negatives / InfoNCE loss when the row is a query against all documents of the batch).

    Inputs: ``scores`` any real numbers (logits); ``labels`` graded relevance; lists of any length >= 1.

    Example (one positive among three: L = -log(e^2 / (e^2 + e^0 + e^-1))):

    >>> import torch
    >>> from retrieval_lab.losses import SoftmaxCELoss
    >>> scores = torch.tensor([[2.0, 0.0, -1.0]])
    >>> labels = torch.tensor([[1.0, 0.0, 0.0]])
    >>> round(SoftmaxCELoss()(scores, labels).item(), 4)
    0.1698
    """

    def _row_terms(self, scores: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per row: cross-entropy, p_t = sum_i p_i softmax(s)_i, and whether the row is kept."""
        has_real = mask.any(dim=-1, keepdim=True)
        neg_inf = torch.full_like(scores, float("-inf"))
        logits = torch.where(mask, scores, neg_inf)
        # A fully padded row would be all -inf (NaN softmax); give it finite logits, it is skipped anyway.
        logits = torch.where(has_real, logits, torch.zeros_like(scores))
        log_probs = torch.log_softmax(logits, dim=-1)
        gains = torch.where(mask, labels.clamp(min=0.0), torch.zeros_like(labels))
        total = gains.sum(dim=-1, keepdim=True)
        target = safe_div(gains, total)
        ce = -(target * log_probs.masked_fill(~mask, 0.0)).sum(dim=-1)
        p_t = (target * log_probs.exp()).sum(dim=-1)
        return ce, p_t, total.squeeze(-1) > 0

    def _reduce(self, per_row: Tensor, keep: Tensor) -> Tensor:
        kept = torch.where(keep, per_row, torch.zeros_like(per_row))
        return safe_div(kept.sum(), keep.sum().to(per_row.dtype))

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        ce, _, keep = self._row_terms(scores, labels, mask)
        return self._reduce(ce, keep)


class Poly1SoftmaxLoss(SoftmaxCELoss):
    r"""Poly-1 softmax cross-entropy ("Poly1" in RankT5).

    Papers: Zhuang et al., *RankT5*, SIGIR 2023, Sec. 4.2 (they use :math:`\epsilon = 1`); Leng et al.,
    *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*, ICLR 2022.

    With :math:`p_{bi}` the normalised labels and :math:`L_b` the softmax cross-entropy of
    :class:`SoftmaxCELoss`:

    .. math::
        p_{t,b} = \sum_i p_{bi}\,\mathrm{softmax}(s_b)_i,\qquad
        L_b^{\mathrm{Poly1}} = L_b + \epsilon\,(1 - p_{t,b})

    which is RankT5's :math:`\sum_j \epsilon\, y_{j}(1 - \mathrm{softmax}_j)` with normalised labels.
    Rax's ``poly1_softmax_loss`` normalises the labels inside :math:`p_t` but not in its cross-entropy
    term, so on lists with one label-1 document (RankT5's) the two agree exactly, and on graded or
    multi-positive lists Rax's default weighs the cross-entropy by the row's label sum; here both terms
    use the normalised labels (``tests/test_rax_losses.py`` pins both cases). Padding, skipped rows and
    normalisation (mean over rows with a relevant label) are those of :class:`SoftmaxCELoss`;
    ``epsilon=0`` gives exactly that loss.
    In the Taylor view of PolyLoss the coefficient of :math:`(1 - p_t)` becomes :math:`1 + \epsilon`:
    ``epsilon > 0`` adds a constant :math:`-\epsilon` to :math:`\partial L_b/\partial p_t`, so lists whose
    relevant documents already get a large probability keep a larger gradient; ``epsilon >= -1`` keeps
    that coefficient non-negative.

    Inputs: as :class:`SoftmaxCELoss`, plus ``epsilon`` (float, default 1.0).

    Example (one positive: p_t = e^2 / (e^2 + e^0 + e^-1), L = -log p_t + (1 - p_t)):

    >>> import torch
    >>> from retrieval_lab.losses import Poly1SoftmaxLoss
    >>> scores = torch.tensor([[2.0, 0.0, -1.0]])
    >>> labels = torch.tensor([[1.0, 0.0, 0.0]])
    >>> round(Poly1SoftmaxLoss(epsilon=1.0)(scores, labels).item(), 4)
    0.3261
    """

    def __init__(self, epsilon: float = 1.0) -> None:
        super().__init__()
        self.epsilon = float(epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        ce, p_t, keep = self._row_terms(scores, labels, mask)
        return self._reduce(ce + self.epsilon * (1.0 - p_t), keep)
