"""Build a Lightning ``Trainer`` from the hardware and train configs, and fit with resume.

``hardware`` (``HardwareConfig``): accelerator, devices, strategy, precision, num_nodes (and optionally
find_unused_parameters, default True: "ddp"/"ddp_spawn" become their ``*_find_unused_parameters_true`` forms).
``train`` (``TrainConfig``): max_steps, max_epochs, max_time_minutes (or max_time, in minutes),
accumulate_grad_batches, log_every_n_steps, val_check_interval, gradient_clip_val, checkpoint_every_n_steps.
Both may be dicts, OmegaConf configs, dataclasses or anything with attributes; missing keys take the
defaults below. ``precision="bf16-mixed"`` is how to train in bf16 on CPU (Lightning autocasts on CPU too).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar

__all__ = ["build_trainer", "fit", "checkpoint_dir"]


# A family's backbone may hold parameters its training path never uses (a BERT pooler under a mean-pooling
# bi-encoder): plain DDP then fails at the second step. Unless hardware.find_unused_parameters is False, the DDP
# strategies look for them (a small per-step cost).
_FIND_UNUSED = {s: f"{s}_find_unused_parameters_true" for s in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")}


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        value = cfg.get(key, default)
    else:
        try:  # OmegaConf DictConfig is not a Mapping subclass but supports .get
            value = cfg.get(key, default)  # type: ignore[union-attr]
        except AttributeError:
            value = getattr(cfg, key, default)
    return default if value is None else value


def checkpoint_dir(output_dir: str | Path) -> Path:
    """Where :func:`build_trainer` writes checkpoints: ``<output_dir>/checkpoints`` (``last.ckpt`` is the latest)."""
    return Path(output_dir) / "checkpoints"


def build_trainer(
    hardware: Any,
    train: Any,
    output_dir: str | Path,
    logger: Any = None,
    callbacks: Iterable[Callback] = (),
    enable_progress_bar: bool = True,
    **overrides: Any,
) -> pl.Trainer:
    """A ``lightning.pytorch.Trainer`` writing under ``output_dir``.

    - stop at ``max_steps`` (-1: none), ``max_epochs`` (None: Lightning's default, 1000 when no max_steps),
      or ``max_time_minutes`` / ``max_time`` (minutes, -> ``Trainer(max_time=timedelta)``), whichever first;
    - ``ModelCheckpoint`` to ``<output_dir>/checkpoints`` with ``save_last=True`` (``last.ckpt``), at the end of
      each epoch, and every ``checkpoint_every_n_steps`` optimiser steps when set; Lightning also saves when
      ``max_time`` stops the run;
    - ``logger``: a Lightning logger, or None (no logger; then ``self.log`` values are only on the progress bar
      and in ``trainer.callback_metrics``);
    - ``overrides`` go to ``Trainer(...)`` as they are (e.g. ``limit_val_batches``, ``deterministic``).
    """
    output_dir = Path(output_dir)
    ckpt_every = _get(train, "checkpoint_every_n_steps")
    checkpoint = ModelCheckpoint(
        dirpath=str(checkpoint_dir(output_dir)),
        filename="step{step}",
        auto_insert_metric_name=False,
        save_last=True,
        save_top_k=1,  # no monitor: keeps the latest only (plus last.ckpt)
        every_n_train_steps=int(ckpt_every) if ckpt_every else None,
    )
    cbs: list[Callback] = [checkpoint, *callbacks]
    if enable_progress_bar:
        cbs.append(TQDMProgressBar(refresh_rate=int(_get(train, "progress_refresh_rate", 1))))

    strategy = _get(hardware, "strategy", "auto")
    if isinstance(strategy, str) and strategy in _FIND_UNUSED and _get(hardware, "find_unused_parameters", True):
        strategy = _FIND_UNUSED[strategy]

    max_time = _get(train, "max_time_minutes", _get(train, "max_time"))
    val_every = _get(train, "val_check_interval")
    kwargs: dict[str, Any] = dict(
        accelerator=_get(hardware, "accelerator", "cpu"),
        devices=_get(hardware, "devices", 1),
        strategy=strategy,
        precision=_get(hardware, "precision", "32-true"),
        num_nodes=int(_get(hardware, "num_nodes", 1)),
        max_steps=int(_get(train, "max_steps", -1)),
        max_epochs=_get(train, "max_epochs"),
        max_time=_dt.timedelta(minutes=float(max_time)) if max_time else None,
        accumulate_grad_batches=int(_get(train, "accumulate_grad_batches", 1)),
        log_every_n_steps=int(_get(train, "log_every_n_steps", 50)),
        val_check_interval=val_every,
        # an int interval counts optimiser-loop batches across epochs (not within one), so it may exceed an epoch
        check_val_every_n_epoch=None if isinstance(val_every, int) else 1,
        gradient_clip_val=_get(train, "gradient_clip_val"),
        default_root_dir=str(output_dir),
        logger=logger if logger is not None else False,
        callbacks=cbs,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


def fit(
    module: pl.LightningModule,
    train_loader: Any,
    trainer: pl.Trainer,
    ckpt_path: str | Path | None = None,
    val_loader: Any = None,
) -> pl.Trainer:
    """``trainer.fit``; with ``ckpt_path`` (a checkpoint file, or ``"last"`` for the trainer's latest) it resumes:
    weights, optimiser and scheduler state, global step and epoch continue from the checkpoint.

    What is and is not restored, measured with Lightning 2.6 and a plain ``DataLoader``:

    - from the end of an epoch: the datasets are moved to the restored epoch (``on_train_epoch_start``) and draw
      per (seed, epoch, item), so every item gets the list it would have got without the interruption; the
      batch order is the same only without shuffling (a shuffling generator's state is not checkpointed);
    - a checkpoint from the middle of an epoch (``checkpoint_every_n_steps``, ``max_time``) resumes the step
      count, weights, optimiser and schedule, but a plain ``DataLoader`` cannot resume its position: Lightning
      warns, iterates the epoch again from its first batch and ends the epoch after the number of batches that
      were left (so some lists of that epoch are seen twice and others not at all).
    """
    if ckpt_path is not None and str(ckpt_path) != "last" and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {ckpt_path}")
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                ckpt_path=str(ckpt_path) if ckpt_path is not None else None)
    return trainer
