from __future__ import annotations

from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from retrieval_lab.context import StageContext


class Retriever:
    """A first stage. Subclasses implement ``retrieve(split) -> Run`` over ``ctx.collection.topics(split)``."""

    def __init__(self, cfg: DictConfig, ctx: StageContext):
        self.cfg = cfg
        self.ctx = ctx

    @property
    def name(self) -> str:
        return str(self.cfg.name)

    def prepare(self) -> None:
        """Train (when configured) and index; timed apart from ``retrieve`` so ms/query means search only."""

    def retrieve(self, split: str) -> dict[str, dict[str, float]]:
        raise NotImplementedError


def build_stage(cfg: DictConfig, ctx: StageContext) -> Any:
    """Instantiate the stage class named by ``cfg._target_`` with ``(cfg, ctx)``."""
    target = cfg.get("_target_")
    if not target:
        return None
    return get_class(target)(cfg, ctx)
