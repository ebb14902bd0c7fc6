"""Training: data (lists for rerankers, pairs + hard negatives for retrievers), Lightning modules, trainer.

``data`` is plain python/torch and imported eagerly; the Lightning parts (``modules``, ``trainer``) load on first
use, so the data classes can be used without importing Lightning.

    from retrieval_lab.training import RerankerListDataset, RerankerCollator, RerankerModule, build_trainer, fit
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .data import (
    ListItem,
    PairItem,
    RerankerCollator,
    RerankerListDataset,
    RerankEvalDataset,
    RetrieverCollator,
    RetrieverListCollator,
    RetrieverPairDataset,
    in_batch_labels,
    judged,
    ranked_ids,
)

_LAZY = {
    "RankingModule": "modules",
    "RetrieverModule": "modules",
    "RerankerModule": "modules",
    "gather_with_grad": "modules",
    "ndcg_at_k": "modules",
    "build_trainer": "trainer",
    "fit": "trainer",
    "checkpoint_dir": "trainer",
}

__all__ = [
    "ListItem",
    "PairItem",
    "RerankerCollator",
    "RerankerListDataset",
    "RerankEvalDataset",
    "RetrieverCollator",
    "RetrieverListCollator",
    "RetrieverPairDataset",
    "in_batch_labels",
    "judged",
    "ranked_ids",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
