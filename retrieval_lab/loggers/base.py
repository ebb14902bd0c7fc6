"""The logger interface the pipeline talks to, and a logger that does nothing."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any


class Logger(ABC):
    """Where a run reports: its resolved config, metrics, tables and files. Use as a context manager, or
    call :meth:`finish` at the end."""

    @abstractmethod
    def log_config(self, config: Mapping[str, Any]) -> None:
        """The resolved config (a plain nested dict, or an OmegaConf container)."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Scalars, keyed ``stage/metric`` (e.g. ``bm25/ndcg@10``)."""

    @abstractmethod
    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table, e.g. per-query scores (stage, metric, qid, value)."""

    @abstractmethod
    def log_artifact(self, name: str, type: str, paths: Sequence[str | os.PathLike]) -> None:
        """Files and folders as one versioned artifact (``type="run"`` for a run's outputs)."""

    @abstractmethod
    def finish(self) -> None:
        """Close the run; calling it twice is harmless."""

    def get_lightning_logger(self):
        """The value to pass as ``lightning.Trainer(logger=...)``: ``False`` (no training logs) here."""
        return False

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


class NoneLogger(Logger):
    """Logs nothing (``logger=none``): the run's output folder still holds everything."""

    def log_config(self, config):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_table(self, name, columns, rows):
        pass

    def log_artifact(self, name, type, paths):
        pass

    def finish(self):
        pass
