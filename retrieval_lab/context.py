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
