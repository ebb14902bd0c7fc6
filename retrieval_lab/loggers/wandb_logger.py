"""Weights & Biases logging: one W&B run per pipeline run, online when an API key is at hand, else offline."""

from __future__ import annotations

import netrc
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from retrieval_lab.loggers.base import Logger

MODES = ("auto", "online", "offline", "disabled")


def has_api_key(environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``WANDB_API_KEY`` is set or the netrc file (``$NETRC`` or ``~/.netrc``, where ``wandb login``
    writes) has an entry for the W&B host (``api.wandb.ai``, or the host of ``WANDB_BASE_URL``)."""
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def resolve_mode(mode: str = "auto", environ: Mapping[str, str] = os.environ) -> str:
    """``online`` / ``offline`` / ``disabled`` as asked; for ``auto``: ``WANDB_MODE`` (or ``WANDB_DISABLED``)
    when set, else online with an API key (:func:`has_api_key`) and offline without."""
    if mode not in MODES:
        raise ValueError(f"logger mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    if environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    env_mode = {"dryrun": "offline", "run": "online"}.get(environ.get("WANDB_MODE", ""), environ.get("WANDB_MODE"))
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    return "online" if has_api_key(environ) else "offline"


def _global_rank() -> int:
    # the variables Lightning reads for rank_zero_only; absent in a plain single process
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def _artifact_name(name: str) -> str:
    # W&B artifact names: letters, digits, dashes, underscores and dots
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "artifact"


def _note(message: str) -> None:
    print(f"retrieval-lab: {message}", file=sys.stderr, flush=True)


class WandbLogger(Logger):
    """Logs a run to W&B: resolved config, ``stage/metric`` scalars, tables, run files as artifacts.

    ``mode="auto"`` goes online only when an API key is available (``WANDB_API_KEY`` or a netrc entry for
    api.wandb.ai); otherwise the run is written offline under ``<dir>/wandb/offline-run-*`` and the command to
    upload it later (``wandb sync <folder>``) is printed. Processes other than global rank 0 (DDP workers) do
    not log. :meth:`get_lightning_logger` gives Lightning a logger attached to the same W&B run.
    Extra keyword arguments go to ``wandb.init`` (``notes``, ``job_type``, ``settings``, ...).
    """

    def __init__(
        self,
        project: str = "retrieval-lab",
        entity: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        mode: str = "auto",
        dir: str | os.PathLike | None = None,
        name: str | None = None,
        **init_kwargs: Any,
    ):
        import wandb

        self.mode = resolve_mode(mode)
        if _global_rank() != 0:
            self.mode = "disabled"
        elif mode == "auto" and self.mode == "offline" and not os.environ.get("WANDB_MODE"):
            _note("no W&B API key (WANDB_API_KEY or a netrc entry for api.wandb.ai): logging offline")
        self.project = project
        self.dir = Path(dir if dir is not None else os.environ.get("WANDB_DIR") or os.getcwd()).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        init_kwargs.setdefault("reinit", "finish_previous")  # never log into a previous, unfinished run
        # W&B's own run summary and banners stay off the console (the run's table is what a run prints last); where
        # the run is goes to the log (below, and when it finishes)
        init_kwargs.setdefault("settings", wandb.Settings(quiet=True))
        self.run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            tags=list(tags) or None,
            name=name,
            dir=str(self.dir),
            mode=self.mode,
            **init_kwargs,
        )
        self._finished = False
        self._lightning = None
        if self.mode == "offline":
            _note(f"offline W&B run in {self.sync_dir}")

    @property
    def sync_dir(self) -> Path | None:
        """The offline run folder (what ``wandb sync`` takes); None unless offline."""
        return Path(self.run.settings.sync_dir) if self.mode == "offline" else None

    def log_config(self, config: Mapping[str, Any]) -> None:
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(config, DictConfig):
                config = OmegaConf.to_container(config, resolve=True)
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            pass
        self.run.config.update(dict(config), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        self.run.log(metrics, step=step)
        # W&B drops a history row whose step is behind the run's: keep the values in the summary regardless
        self.run.summary.update(metrics)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        import wandb

        table = wandb.Table(columns=list(columns), data=[list(r) for r in rows])
        if len(table.data) <= wandb.Table.MAX_ROWS:
            self.run.log({name: table})
        else:  # tables in the history are cut at MAX_ROWS rows; an artifact holds up to MAX_ARTIFACT_ROWS
            artifact = wandb.Artifact(_artifact_name(f"{self.run.id}-{name}"), type="table")
            artifact.add(table, name)
            self.run.log_artifact(artifact)

    def log_artifact(self, name: str, type: str, paths: Sequence[str | os.PathLike]) -> None:
        import wandb

        artifact = wandb.Artifact(_artifact_name(name), type=type)
        for path in map(Path, paths):
            if path.is_dir():
                artifact.add_dir(str(path), name=path.name)
            elif path.is_file():
                artifact.add_file(str(path), name=path.name)
            else:
                raise FileNotFoundError(f"artifact {name!r}: {path} does not exist")
        self.run.log_artifact(artifact)

    def get_lightning_logger(self):
        """A ``lightning.pytorch.loggers.WandbLogger`` writing to this same W&B run (training curves against
        ``trainer/global_step``; checkpoints, if Lightning picks the folder, under ``<dir>/<project>/<run id>``)."""
        if self._lightning is None:
            from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

            # what Lightning does when it creates the run itself
            self.run.define_metric("trainer/global_step")
            self.run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
            self._lightning = LightningWandbLogger(experiment=self.run, save_dir=str(self.dir), project=self.project)
        return self._lightning

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        sync_dir = self.sync_dir
        self.run.finish()
        if sync_dir is not None:
            _note(f"offline W&B run saved in {sync_dir}\n  upload it with: wandb sync {sync_dir}")
