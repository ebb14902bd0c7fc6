"""A training ``DataLoader`` whose order is a pure function of ``(seed, epoch)`` and that resumes mid-epoch.

:func:`train_loader` is what the training stages use. What it gives:

- **order**: epoch ``e`` visits the dataset in ``torch.randperm(n, generator=Generator().manual_seed(seed + e))``
  order (``shuffle=False``: ``0..n-1``), exactly as ``torch.utils.data.DistributedSampler(shuffle, seed)`` does;
  nothing else (other loaders, the global torch RNG, the number of epochs run so far) changes it;
- **no global RNG**: the loader has its own ``torch.Generator`` (re-seeded from ``(seed, epoch)`` when an epoch's
  iterator starts), so creating an iterator never draws from the global torch RNG that dropout uses;
- **resumable**: the loader has ``state_dict()`` / ``load_state_dict()``. Lightning 2.x saves the state of every
  train loader that has both (``CombinedLoader._state_dicts``, called by ``_FitLoop.on_save_checkpoint``: the
  checkpoint's ``loops.fit_loop.state_dict.combined_loader``) and gives it back before the fit loop's first
  ``next()`` (``_FitLoop.setup_data`` -> ``_load_combined_loader_states``). The state is the epoch and the number of
  batches this loader has handed out in it; after a restore the epoch continues at the next unseen batch;
- **epochs**: Lightning calls ``set_epoch(e)`` on the loader's sampler at each epoch start
  (``_FitLoop.on_advance_start`` -> ``_set_sampler_epoch``); the loader reads it lazily, when the first batch of
  an epoch is asked for (Lightning creates the first epoch's iterator before it sets the epoch). Without Lightning,
  call ``loader.set_epoch(e)`` (it also calls ``dataset.set_epoch(e)`` when the dataset has one);
- **DDP**: when ``torch.distributed`` is initialised with world size W > 1 (read when an epoch starts, and by
  ``len()``), rank r takes positions r, r+W, r+2W, ... of the permutation padded (by repeating its start) to a
  multiple of W: the ``DistributedSampler(drop_last=False)`` semantics, so every rank gets the same number of
  batches. The sampler is a ``DistributedSampler`` subclass, so Lightning does not replace it.

``num_workers=0`` (the default) is exact in every case. Non-persistent workers are too (measured with 1 worker):
batches are counted when they are handed out, not when prefetched, and since ``iter()`` is lazy the workers (and
their copies of the dataset) start after Lightning's epoch hooks have moved the dataset to the epoch, also after a
mid-epoch resume. Persistent workers keep the dataset copies of the epoch they started in: do not use them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["EpochSampler", "ResumableDataLoader", "train_loader"]

_STATE_VERSION = 1


def _world() -> tuple[int, int]:
    """``(world size, rank)`` of an initialised default process group, else ``(1, 0)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) + int(epoch)) % (2**63)


class EpochSampler(DistributedSampler):
    """Indices of one epoch: a permutation seeded with ``seed + epoch`` (the ``DistributedSampler`` order), this
    rank's strided share of it when distributed. ``start`` (set by :class:`ResumableDataLoader` on a resume) skips
    that many of this rank's positions in the next iteration only.

    It does not call ``DistributedSampler.__init__`` (which needs an initialised process group): the world size
    and rank are read when an iteration starts and by ``len()``.
    """

    def __init__(self, data_source: Dataset, seed: int = 0, shuffle: bool = True) -> None:  # noqa: D107
        self.dataset = data_source
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = False  # DistributedSampler's meaning: pad to a multiple of the world size
        self.epoch = 0
        self.start = 0

    # DistributedSampler's attributes, read when asked (the process group may be set up after construction)
    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return _world()[0]

    @property
    def rank(self) -> int:  # type: ignore[override]
        return _world()[1]

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        return math.ceil(len(self.dataset) / self.num_replicas)  # type: ignore[arg-type]

    @property
    def total_size(self) -> int:  # type: ignore[override]
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> list[int]:
        """The whole epoch's (unpadded) order of dataset indices, all ranks together."""
        n = len(self.dataset)  # type: ignore[arg-type]
        if not self.shuffle:
            return list(range(n))
        g = torch.Generator()
        g.manual_seed(_epoch_seed(self.seed, self.epoch if epoch is None else epoch))
        return torch.randperm(n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        world, rank = _world()
        indices = self.order()
        n = len(indices)
        total = math.ceil(n / world) * world
        if total > n:  # pad with the permutation's start (repeated if needed), as DistributedSampler does
            indices += (indices * math.ceil((total - n) / n))[: total - n]
        mine = indices[rank:total:world]
        start, self.start = self.start, 0
        return iter(mine[start:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over an :class:`EpochSampler` that counts the batches it hands out in the current epoch
    and can continue an epoch from a count (``state_dict`` / ``load_state_dict``, Lightning's ``_Stateful``).

    Build it with :func:`train_loader`. ``iter()`` is lazy: the epoch (``sampler.epoch``) and a pending resume
    position are read when the first batch is asked for, so Lightning's ``set_epoch`` and ``load_state_dict``,
    which may both come after it created the iterator, apply to that iterator.
    """

    sampler: EpochSampler

    def set_epoch(self, epoch: int) -> None:
        """Move the order (and the dataset, when it has ``set_epoch``) to ``epoch``."""
        self.sampler.set_epoch(epoch)
        set_dataset_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_dataset_epoch):
            set_dataset_epoch(epoch)

    # state: the epoch and how many batches of it were handed out -------------------------------------------
    def _progress(self) -> tuple[int, int]:
        return getattr(self, "_served_epoch", self.sampler.epoch), getattr(self, "_served", 0)

    def state_dict(self) -> dict[str, Any]:
        epoch, batches = self._progress()
        return {
            "version": _STATE_VERSION,
            "epoch": int(epoch),
            "batches": int(batches),  # of this rank, handed out (not merely prefetched) in that epoch
            "seed": int(self.sampler.seed),
            "shuffle": bool(self.sampler.shuffle),
            "batch_size": int(self.batch_size or 0),
            "dataset_len": len(self.dataset),  # type: ignore[arg-type]
            "world_size": _world()[0],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue epoch ``state["epoch"]`` after its first ``state["batches"]`` batches: the next iteration
        of that epoch starts there. (Lightning moves on to the next epoch when the checkpoint was taken at the end of
        one; the position is then not used.)"""
        mismatch = [
            f"{key} {state[key]} -> {now}"
            for key, now in (
                ("seed", self.sampler.seed),
                ("shuffle", self.sampler.shuffle),
                ("batch_size", self.batch_size or 0),
                ("dataset_len", len(self.dataset)),  # type: ignore[arg-type]
                ("world_size", _world()[0]),
            )
            if key in state and state[key] != now
        ]
        if mismatch:
            warnings.warn(
                "resuming the training loader with different settings than the checkpoint's ("
                + ", ".join(mismatch)
                + "): the rest of the interrupted epoch is not the batches the interrupted run would have seen",
                stacklevel=2,
            )
        self._resume: tuple[int, int] | None = (int(state["epoch"]), int(state["batches"]))
        self._served_epoch, self._served = self._resume

    # pickling (``ddp_spawn`` sends the loader to its processes): a ``torch.Generator`` does not go through
    # torch.multiprocessing's shared-memory pickler (torch 2.13: "unable to resize file"), and its state does not
    # matter between epochs (it is re-seeded from (seed, epoch) when an epoch starts): it is rebuilt on unpickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_had_generator"] = isinstance(state.get("generator"), torch.Generator)
        state["generator"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.pop("_had_generator", False):
            state["generator"] = torch.Generator().manual_seed(_epoch_seed(state["sampler"].seed, 0))
        self.__dict__.update(state)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._epoch_iter()

    def _epoch_iter(self) -> Iterator[Any]:
        # a generator: nothing below runs before the first batch is asked for
        epoch = self.sampler.epoch
        resume, self._resume = getattr(self, "_resume", None), None
        skip = resume[1] if resume is not None and resume[0] == epoch else 0
        self.sampler.start = skip * int(self.batch_size or 1)
        if self.generator is not None:  # worker seeds (when workers are used) follow (seed, epoch) too
            self.generator.manual_seed(_epoch_seed(self.sampler.seed, epoch))
        self._served_epoch, self._served = epoch, skip
        for batch in super().__iter__():
            self._served += 1
            yield batch


def train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    num_workers: int = 0,
    **kwargs: Any,
) -> ResumableDataLoader:
    """The training loader: order a pure function of ``(seed, epoch)``, resumable mid-epoch (see the module doc).

    ``drop_last`` drops each epoch's last incomplete batch (of this rank). Other keyword arguments
    (``pin_memory``, ``persistent_workers``, ...) go to ``DataLoader``; ``sampler``, ``batch_sampler`` and
    ``generator`` are set here.
    """
    for key in ("sampler", "batch_sampler", "generator", "shuffle"):
        if key in kwargs:
            raise TypeError(f"train_loader sets {key!r} itself")
    sampler = EpochSampler(dataset, seed=seed, shuffle=shuffle)
    return ResumableDataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        collate_fn=collate_fn,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(_epoch_seed(seed, 0)),
        **kwargs,
    )
