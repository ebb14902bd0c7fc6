"""Build a Lightning ``Trainer`` from the hardware and train configs, and fit with resume.

``hardware`` (``HardwareConfig``): accelerator, devices, strategy, precision, num_nodes (and optionally
find_unused_parameters, default True: "ddp"/"ddp_spawn" become their ``*_find_unused_parameters_true`` forms).
``train`` (``TrainConfig``): max_steps, max_epochs, max_time_minutes (or max_time, in minutes),
accumulate_grad_batches, log_every_n_steps, val_check_interval, gradient_clip_val, checkpoint_every_n_steps.
Both may be dicts, OmegaConf configs, dataclasses or anything with attributes; missing keys take the
defaults below. ``precision="bf16-mixed"`` is how to train in bf16 on CPU (Lightning autocasts on CPU too).

Exact resume: a run killed in the middle of an epoch and resumed from its last checkpoint ends with the same weights
as the uninterrupted run when its train loader is :func:`retrieval_lab.training.loader.train_loader` (the loader's
position is checkpointed by Lightning's fit loop) and the trainer comes from :func:`build_trainer`, which adds
:class:`RngStateCheckpoint` (dropout draws per (seed, epoch, batch, rank); the seed and the global RNG states are
checkpointed too).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar

__all__ = ["build_trainer", "fit", "checkpoint_dir", "RngStateCheckpoint"]


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


# --------------------------------------------------------------------------------------------------------------
# global RNG states in checkpoints


def _rng_states() -> dict[str, Any]:
    """torch (CPU, and CUDA when in use), python ``random`` and numpy global RNG states, as types a
    ``torch.load(weights_only=True)`` reads back (Lightning 2.6 loads checkpoints with torch's default, which is
    weights-only): tensors, ints, floats, lists, tuples."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    cuda = states.get("torch.cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _batch_seed(base: int, epoch: int, batch_idx: int, rank: int) -> int:
    digest = hashlib.blake2b(f"{base}|{epoch}|{batch_idx}|{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # < 2**63: what torch.manual_seed takes


class RngStateCheckpoint(Callback):
    """Makes the randomness of training resumable: after a resume, dropout draws what it would have drawn.

    Lightning 2.6 does not checkpoint RNG states (``_CheckpointConnector.dump_checkpoint`` has no RNG entry; only
    the sanity check runs under ``isolate_rng``), and restoring them is not enough on its own: between the
    checkpoint and the next training step the uninterrupted run and the resumed one do different things that draw
    from the global torch RNG. E.g. a validation due at the checkpointed step runs after the checkpoint in the first,
    and is "fast-forwarded" in the second (``_EvaluationLoop.increment_progress_to_evaluation_end`` still creates
    the val loader's iterator, which draws a seed from the global RNG when the loader has no generator); a
    validation before an epoch-end checkpoint is not repeated at all. So:

    - **dropout**: at every ``on_train_batch_start`` (before ``training_step``) the torch RNGs (CPU and every CUDA
      device) are seeded from ``(base seed, epoch, batch index, rank)``: what a training step draws depends on
      nothing that happened between steps. The base seed is drawn from the global torch RNG when a fit starts
      (so ``seed_everything`` still decides it) and is kept in the checkpoint;
    - **everything else** (python ``random``, numpy, torch outside training steps: data code that uses the global
      RNGs in the main process): the checkpoint holds every rank's states as they were when it was written, and
      ``on_train_start`` of the resumed fit puts them back (after ``load_state_dict``, which Lightning calls in
      ``_restore_modules_and_callbacks`` before the strategy setup, the loop/optimiser restore, the sanity check and
      the creation of the first train iterator; before the first resumed batch is fetched).

    It also makes sure the train loader's checkpointed position is loaded: Lightning loads it in
    ``_FitLoop.setup_data``, which skips that when something built the train loader before the checkpoint's loop
    state was restored (``trainer.estimated_stepping_batches`` in ``configure_optimizers`` does so when
    ``max_epochs`` is set); ``on_train_start`` then loads what is still pending (before the first ``next()``).
    """

    def __init__(self) -> None:
        self.base_seed: int | None = None
        self._pending: dict[str, Any] | None = None  # the RNG states loaded from a checkpoint, set at train start
        self._pending_base: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fit_loop = trainer.fit_loop
        load_loader_states = getattr(fit_loop, "_load_combined_loader_states", None)
        if getattr(fit_loop, "_combined_loader_states_to_load", None) and callable(load_loader_states):
            load_loader_states()
        if self._pending_base is not None:  # resumed
            self.base_seed, self._pending_base = self._pending_base, None
        else:
            self.base_seed = int(torch.empty((), dtype=torch.int64).random_())
        if self._pending is not None:
            _set_rng_states(self._pending)
            self._pending = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.base_seed is not None:
            torch.manual_seed(_batch_seed(self.base_seed, trainer.current_epoch, batch_idx, trainer.global_rank))

    # -- in the checkpoint ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"base_seed": self.base_seed, "rng": _rng_states()}
        if _distributed():  # Lightning builds the checkpoint on every rank (rank 0 writes it)
            ranks: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, state)
        else:
            ranks = [state]
        return {"version": 1, "ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks") or []
        if not ranks:
            return
        world, rank = (dist.get_world_size(), dist.get_rank()) if _distributed() else (1, 0)
        if len(ranks) != world:
            warnings.warn(
                f"the checkpoint holds the RNG states of {len(ranks)} processes, this run has {world}: "
                "the resumed run does not draw what the interrupted one would have",
                stacklevel=2,
            )
        mine = ranks[rank] if rank < len(ranks) else ranks[0]
        self._pending_base, self._pending = mine.get("base_seed"), mine.get("rng")


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
    - :class:`RngStateCheckpoint`: each training step's torch RNG is seeded from (a base seed, epoch, batch, rank),
      and the base seed and the global RNG states go into the checkpoints and come back on a resume;
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
    cbs: list[Callback] = [checkpoint, RngStateCheckpoint(), *callbacks]
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

    Exact resume (the same final weights as without the interruption, also from the middle of an epoch:
    ``checkpoint_every_n_steps``, ``max_time``) needs

    - a train loader from :func:`retrieval_lab.training.loader.train_loader`: its order is a function of (seed,
      epoch) and Lightning checkpoints its position (``state_dict``), so the resumed epoch continues at the next
      unseen batch. A plain ``DataLoader`` cannot: Lightning warns, iterates the epoch again from its first batch
      and ends it after the number of batches that were left (some lists of that epoch are seen twice, others
      not at all), and a shuffling generator's state is not checkpointed;
    - a trainer from :func:`build_trainer` (:class:`RngStateCheckpoint`: dropout draws what it would have drawn);
    - datasets that draw per (seed, epoch, item) (:mod:`.data`'s do; the modules move them to the restored epoch)
      and ``num_workers=0`` (see :mod:`.data` about workers after a mid-epoch resume).
    """
    if ckpt_path is not None and str(ckpt_path) != "last" and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {ckpt_path}")
    # weights_only: a checkpoint is data, never code (everything we store in one is a tensor or a plain type)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                ckpt_path=str(ckpt_path) if ckpt_path is not None else None, weights_only=True)
    return trainer
