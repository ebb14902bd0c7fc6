"""Ranking losses with one signature: ``loss(scores[B, L], labels[B, L], mask[B, L] | None) -> scalar``.

Row b holds one query's candidates, labels are graded relevance (> 0 relevant), mask is True for real
entries. Losses only see scores, so every loss trains every model family. See ``base.py`` for the
contract and each class docstring for its formula, paper and normalisation.

| registry name       | class                  | kind      | paper                    |
|---------------------|------------------------|-----------|--------------------------|
| ``pointwise_ce``      | PointwiseCELoss        | pointwise | RankT5 PointCE (monoT5)  |
| ``pairwise_logistic`` | PairwiseLogisticLoss   | pairwise  | RankNet, RankT5 Pair     |
| ``pairwise_softmax``  | PairwiseSoftmaxLoss    | pairwise  | ColBERT                  |
| ``margin``            | MultiLabelMarginLoss   | pairwise  | RepBERT eq. 4            |
| ``softmax``           | SoftmaxCELoss          | listwise  | RankT5 Softmax, Bruch+19 |
| ``poly1``             | Poly1SoftmaxLoss       | listwise  | RankT5 Poly1, PolyLoss   |

>>> from retrieval_lab.losses import build_loss
>>> build_loss("poly1", epsilon=0.5)
Poly1SoftmaxLoss(epsilon=0.5)
"""

from __future__ import annotations

from .base import RankingLoss
from .listwise import Poly1SoftmaxLoss, SoftmaxCELoss
from .pairwise import MultiLabelMarginLoss, PairwiseLogisticLoss, PairwiseSoftmaxLoss
from .pointwise import PointwiseCELoss

__all__ = [
    "LOSSES",
    "MultiLabelMarginLoss",
    "PairwiseLogisticLoss",
    "PairwiseSoftmaxLoss",
    "PointwiseCELoss",
    "Poly1SoftmaxLoss",
    "RankingLoss",
    "SoftmaxCELoss",
    "build_loss",
]

LOSSES: dict[str, type[RankingLoss]] = {
    "pointwise_ce": PointwiseCELoss,
    "pairwise_logistic": PairwiseLogisticLoss,
    "pairwise_softmax": PairwiseSoftmaxLoss,
    "margin": MultiLabelMarginLoss,
    "softmax": SoftmaxCELoss,
    "poly1": Poly1SoftmaxLoss,
}


def build_loss(name: str, **kwargs) -> RankingLoss:
    """Instantiate the loss registered as ``name`` with constructor ``kwargs``.

    Raises ``ValueError`` naming the known losses for an unknown name, and ``TypeError`` naming the
    loss for a keyword it does not take (so a config typo fails before training starts).
    """
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}") from None
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"loss {name!r} ({cls.__name__}): {err}") from None
