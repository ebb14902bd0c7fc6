"""The one loss contract every ranking loss in retrieval-lab follows.

    loss(scores: Tensor[B, L], labels: Tensor[B, L], mask: Tensor[B, L] | None = None) -> scalar Tensor

Row ``b`` holds the candidates of one query. ``labels`` are graded relevance (float; ``> 0`` means
relevant, ``<= 0`` means not relevant). ``mask`` is True for real entries and False for padding
(``None``: every entry is real). A loss only ever sees scores, so any loss can train any model family.

What :class:`RankingLoss` does before a subclass sees the tensors (``_prepare``):

* checks shapes (2-D, all three identical) and that ``scores`` is floating point, raising ``ValueError``
  with the offending shapes;
* moves ``labels`` / ``mask`` to the device of ``scores``, casts ``labels`` to the score dtype and the
  mask to ``bool``;
* computes in float32 when the scores are float16/bfloat16 (mixed-precision training);
* overwrites padded scores and labels with 0 (``masked_fill``), so padding holding garbage (large
  values, ``inf``, ``NaN``) can change neither the value nor any gradient: ``masked_fill`` passes a
  zero gradient to the positions it overwrites.

Subclasses implement :meth:`RankingLoss.compute` on the cleaned tensors and must still use ``mask``
explicitly (a padded entry has label 0 after cleaning, which would otherwise look like a negative).
When nothing contributes (e.g. no row has a relevant document) a loss returns an exact ``0.0`` that is
still connected to the graph, so ``loss.backward()`` works and yields zero gradients, never ``NaN``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RankingLoss", "safe_div", "zero_like_loss"]


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else ``num / 1`` (callers ensure ``num`` is 0 there).

    Branch-free (no host sync on GPU) and never produces ``NaN`` or ``inf`` for an empty denominator.
    """
    return num / torch.where(den > 0, den, torch.ones_like(den))


def zero_like_loss(scores: Tensor) -> Tensor:
    """An exact scalar 0 that depends on ``scores`` (so ``backward()`` runs and gives zero grads)."""
    return (scores * 0.0).sum()


class RankingLoss(nn.Module):
    """Base class: ``forward(scores[B, L], labels[B, L], mask[B, L] | None) -> scalar``.

    See the module docstring for the contract and the cleaning done here. Subclasses override
    :meth:`compute`, which receives float tensors of one dtype, a ``bool`` mask, and scores/labels
    that are 0 at padded positions.

    Example (any subclass is used the same way):

    >>> import torch
    >>> from retrieval_lab.losses import SoftmaxCELoss
    >>> loss = SoftmaxCELoss()
    >>> scores = torch.tensor([[2.0, 0.5, -1.0, 9.9]], requires_grad=True)
    >>> labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    >>> mask = torch.tensor([[True, True, True, False]])     # last entry is padding
    >>> value = loss(scores, labels, mask)
    >>> value.backward()
    >>> scores.grad[0, 3].item()                               # padding gets no gradient
    0.0
    """

    def forward(self, scores: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        scores, labels, mask = self._prepare(scores, labels, mask)
        return self.compute(scores, labels, mask)

    def compute(self, scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _prepare(scores: Tensor, labels: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if not isinstance(scores, Tensor) or not isinstance(labels, Tensor):
            raise TypeError("scores and labels must be torch.Tensor")
        if scores.dim() != 2:
            raise ValueError(f"scores must have shape [B, L] (one row per query), got {tuple(scores.shape)}")
        if labels.shape != scores.shape:
            raise ValueError(f"labels shape {tuple(labels.shape)} != scores shape {tuple(scores.shape)}")
        if not scores.is_floating_point():
            raise ValueError(f"scores must be floating point, got {scores.dtype}")
        if mask is None:
            mask = torch.ones_like(scores, dtype=torch.bool)
        else:
            if mask.shape != scores.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} != scores shape {tuple(scores.shape)}")
            mask = mask.to(device=scores.device, dtype=torch.bool)
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        labels = labels.to(device=scores.device, dtype=scores.dtype)
        pad = ~mask
        scores = scores.masked_fill(pad, 0.0)
        labels = labels.masked_fill(pad, 0.0)
        return scores, labels, mask
