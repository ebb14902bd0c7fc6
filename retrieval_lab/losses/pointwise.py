"""Pointwise losses: each (query, document) pair is scored against its own label."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import RankingLoss, safe_div

__all__ = ["PointwiseCELoss"]


class PointwiseCELoss(RankingLoss):
    r"""Pointwise sigmoid cross-entropy ("PointCE" in RankT5; the monoBERT / monoT5 classification loss).

    Paper: Zhuang et al., *RankT5: Fine-Tuning T5 for Text Ranking with Ranking Losses*, SIGIR 2023
    (PointCE baseline, Sec. 5.1: "we upsample documents with label 1 in each query to the same number
    as documents with label 0").

    Formula, with :math:`\sigma` the logistic function, target :math:`t_{bi}` and weight :math:`w_{bi}`:

    .. math::
        \ell_{bi} = -\,[\,t_{bi}\log\sigma(s_{bi}) + (1-t_{bi})\log(1-\sigma(s_{bi}))\,],\qquad
        L = \frac{\sum_{b,i\ \mathrm{real}} w_{bi}\,\ell_{bi}}{\sum_{b,i\ \mathrm{real}} w_{bi}}

    * target: :math:`t = \mathbb{1}[y > 0]` (default), or :math:`t = \mathrm{clip}(y, 0, 1)` with
      ``soft_targets=True`` (a label in (0, 1) then acts as a soft target, e.g. a teacher probability;
      grades above 1 become 1).
    * weights, ``balance=True`` (default): in each row with :math:`P` positives (``y > 0``) and
      :math:`N` negatives (``y <= 0``), every positive gets :math:`w = N / P` and every negative
      :math:`w = 1` (below 1 when a row has more positives than negatives: they are then down-weighted).
      That is the RankT5 upsampling of positives to the number of negatives: duplicating
      the positives until there are :math:`N` of them gives exactly this weighted sum (and random
      upsampling with replacement gives it in expectation), without materialising copies. A row with
      no positive or no negative cannot be balanced; its entries keep :math:`w = 1`.
      ``balance=False``: :math:`w = 1` everywhere, i.e. the plain mean over real entries.
    * normalisation: weighted mean over all real entries of the batch, i.e. the mean over the
      (virtually) upsampled batch. Padded entries have weight 0.

    Inputs: ``scores`` are logits (any real number; no sigmoid applied by the model), ``labels`` graded
    relevance, ``mask`` True for real entries. Any list length works, including a single document.

    Example (one row: a positive scored 2, a negative scored 0, another negative scored -1; with
    ``balance=True`` the positive has weight 2, so L = (2*softplus(-2) + softplus(0) + softplus(-1)) / 4):

    >>> import torch
    >>> from retrieval_lab.losses import PointwiseCELoss
    >>> scores = torch.tensor([[2.0, 0.0, -1.0]])
    >>> labels = torch.tensor([[1.0, 0.0, 0.0]])
    >>> round(PointwiseCELoss()(scores, labels).item(), 4)
    0.3151
    >>> round(PointwiseCELoss(balance=False)(scores, labels).item(), 4)
    0.3778
    """

    def __init__(self, balance: bool = True, soft_targets: bool = False) -> None:
        super().__init__()
        self.balance = balance
        self.soft_targets = soft_targets

    def extra_repr(self) -> str:
        return f"balance={self.balance}, soft_targets={self.soft_targets}"

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        pos = mask & (labels > 0)
        neg = mask & ~(labels > 0)
        target = labels.clamp(0.0, 1.0) if self.soft_targets else pos.to(scores.dtype)
        per_entry = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
        weight = mask.to(scores.dtype)
        if self.balance:
            n_pos = pos.sum(dim=-1, keepdim=True).to(scores.dtype)
            n_neg = neg.sum(dim=-1, keepdim=True).to(scores.dtype)
            ratio = torch.where((n_pos > 0) & (n_neg > 0), safe_div(n_neg, n_pos), torch.ones_like(n_pos))
            weight = torch.where(pos, ratio.expand_as(weight), weight)
        weighted = torch.where(mask, weight * per_entry, torch.zeros_like(per_entry))
        return safe_div(weighted.sum(), weight.sum())
