"""Where runs report: the `Logger` interface, `NoneLogger`, and `WandbLogger` (wandb is imported lazily)."""

from retrieval_lab.loggers.base import Logger, NoneLogger
from retrieval_lab.loggers.wandb_logger import WandbLogger, has_api_key, resolve_mode

__all__ = ["Logger", "NoneLogger", "WandbLogger", "has_api_key", "resolve_mode"]
