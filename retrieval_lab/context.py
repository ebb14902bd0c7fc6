"""What every stage of a run can see: the config, the collection, where to write, the logger."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


@dataclass
class StageContext:
    cfg: DictConfig  # the whole resolved config
    collection: Any  # retrieval_lab.data.Collection
    output_dir: Path  # the run's Hydra output folder
    cache_dir: Path  # artifacts shared between runs (indexes, encoded corpora)
    logger: Any  # retrieval_lab.loggers.Logger
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    indexes: dict[int, dict[str, Any]] = field(default_factory=dict)  # id(stage) -> its index (efficiency.json)

    def record_index(self, stage: Any, *, kind: str, hit: bool, nbytes: int, docs: int) -> None:
        """Note a stage's index for the efficiency report: kind, cache hit or built, bytes on disk (total, per
        document). Keyed by the stage object, so a baseline and a retriever of the same name stay apart."""
        self.record_search(stage, index=kind, index_cache="hit" if hit else "built", index_bytes=int(nbytes),
                           index_bytes_per_doc=round(nbytes / max(docs, 1), 1))

    def record_search(self, stage: Any, **fields: Any) -> None:
        """Add facts about a stage's index or search (latency split, candidate recall, footprint) to its
        efficiency.json entry."""
        self.indexes.setdefault(id(stage), {}).update(fields)

    def __post_init__(self) -> None:
        from retrieval_lab.hardware import resolve_precision

        hw = self.cfg.hardware
        if "auto" in (hw.get("precision"), hw.get("inference_precision")):  # the pipeline resolved it already
            resolve_precision(hw)  # "auto" -> what this machine runs natively

    @property
    def hardware(self) -> DictConfig:
        return self.cfg.hardware

    @property
    def show_progress(self) -> bool:
        return bool(self.cfg.show_progress)

    def stage_dir(self, name: str) -> Path:
        path = self.output_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def default_cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("RETRIEVAL_LAB_CACHE", "~/.cache/retrieval_lab")).expanduser()
