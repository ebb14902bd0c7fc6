"""Lightning modules: one for retrievers (in-batch / cross-device negatives), one for rerankers (lists).

Each wraps a model family (a plain ``nn.Module`` from :mod:`retrieval_lab.models`) and a ranking loss with the one
signature ``loss(scores[B, L], labels[B, L], mask[B, L])`` (:mod:`retrieval_lab.losses`). Nothing here is
specific to a family: the modules call only the protocols of :mod:`retrieval_lab.models.protocols`:

- retrievers (``RetrieverFamily``: bi-encoder, ColBERT, ...): ``encode(batch) -> Encoded(embeddings, mask)`` (with
  grad) and ``score(q, d) -> Tensor[nq, nd]``; plus ``tokenize_queries`` / ``tokenize_docs`` for the collators.
  The mask travels with the embeddings through the cross-device gather, so padding never scores;
- rerankers (``RerankerFamily``: cross-encoder, RankT5, monoT5, ...): ``forward(batch) -> Tensor[n]`` (one score per
  pair) and ``tokenize_pairs`` for the collator;
- both: ``save_pretrained(path)`` (used by :meth:`export`).

Batches come from the collators of :mod:`retrieval_lab.training.data`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch import Tensor, nn

from retrieval_lab.models.protocols import Encoded

from .data import in_batch_labels, in_batch_mask

__all__ = [
    "RankingModule",
    "RetrieverModule",
    "RerankerModule",
    "gather_with_grad",
    "pad_with_mask",
    "ndcg_at_k",
]


# --------------------------------------------------------------------------------------------------------------
# helpers


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _mask_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the mask of a tensor of ``shape``: all dims but the last (``[n]`` for a 1-d tensor)."""
    return tuple(shape[: max(1, len(shape) - 1)])


def pad_with_mask(x: Tensor, shape: Sequence[int], mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Pad ``x`` with zeros at the end of every dim up to ``shape``, and its mask with False the same way.

    ``mask`` (bool) has the shape of ``x``'s dims but the last (``[n, T]`` for token embeddings ``[n, T, dim]``,
    ``[n]`` for single vectors ``[n, dim]`` or a 1-d ``x``); None means all True. Returns ``(padded x of shape
    shape, padded mask of shape shape[:-1])``: the mask is False exactly where an entry was padded (in any dim
    it covers) or was False already. Padding in the last (feature) dim is zeros only; the mask has no entry
    for it. Raises ``ValueError`` when ``shape`` is smaller than ``x`` in some dim or ``mask`` has the wrong shape.
    """
    shape = [int(s) for s in shape]
    if len(shape) != x.dim() or any(s < t for s, t in zip(shape, x.shape)):
        raise ValueError(f"cannot pad a tensor of shape {tuple(x.shape)} to {tuple(shape)}")
    want = _mask_shape(x.shape)
    if mask is None:
        mask = torch.ones(want, dtype=torch.bool, device=x.device)
    elif tuple(mask.shape) != want:
        raise ValueError(f"mask of shape {tuple(mask.shape)} for a tensor of shape {tuple(x.shape)}; expected {want}")
    mask = mask.to(device=x.device, dtype=torch.bool)
    pad: list[int] = []
    for dim in reversed(range(x.dim())):
        pad += [0, shape[dim] - x.shape[dim]]
    padded = nn.functional.pad(x, pad) if any(pad) else x
    padded_mask = mask.new_zeros(_mask_shape(shape))
    padded_mask[tuple(slice(0, n) for n in mask.shape)] = mask
    return padded, padded_mask


def gather_with_grad(x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Concatenate ``x`` (``[n_r, ...]`` on rank r) from all ranks along dim 0, in rank order, keeping gradients;
    gather its mask alongside. Returns ``(gathered x, gathered mask)``.

    Uses ``torch.distributed.nn.functional.all_gather``, whose backward sums, for each rank's slice, the gradients
    that every rank's loss sends to it (a reduce-scatter; on gloo an all-to-all + sum). With DDP's gradient
    averaging this makes N processes x batch B give the gradient of one process x batch N*B exactly (see
    ``tests/test_ddp.py``); gathering without grad and keeping only the local slice's gradient would drop the
    terms other ranks' queries contribute to this rank's docs.

    ``mask`` (bool, default all True) has the shape of ``x``'s dims but the last: ``[n, T]`` for token
    embeddings ``[n, T, dim]``, ``[n]`` for single vectors ``[n, dim]`` (and for a 1-d ``x``). Shapes may differ
    between ranks in any dim (e.g. a smaller last batch, or token-level embeddings of different lengths): every
    rank pads to the largest shape (:func:`pad_with_mask`: zeros in ``x``, False in the mask) before the gather,
    and the padding is cut off again along dim 0 only. Padding in the other dims stays, as zeros in ``x`` and
    False in the mask: a token-level score (e.g. ColBERT's MaxSim) must ignore the entries where the mask is
    False, since a zero vector's similarity 0 beats every real token when all real similarities are negative.
    The mask itself is gathered without gradient.
    """
    world = dist.get_world_size()
    shape = torch.tensor(list(x.shape), device=x.device, dtype=torch.long)
    shapes = [torch.zeros_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    max_shape = torch.stack(shapes).max(dim=0).values.tolist()
    padded, padded_mask = pad_with_mask(x, max_shape, mask)
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # deprecated in torch 2.13 in favour of the private torch.distributed._functional_collectives; still the
        # public autograd-aware all_gather, and it works on gloo and NCCL
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(padded.contiguous())
    # bool is not a gloo/NCCL all_gather type everywhere: send the mask as uint8
    flat_mask = padded_mask.to(torch.uint8).contiguous()
    mask_parts = [torch.empty_like(flat_mask) for _ in range(world)]
    dist.all_gather(mask_parts, flat_mask)
    rows = [int(s[0]) for s in shapes]
    gathered = torch.cat([p[:n] for p, n in zip(parts, rows)], dim=0)
    gathered_mask = torch.cat([m[:n] for m, n in zip(mask_parts, rows)], dim=0).bool()
    return gathered, gathered_mask


def _gather_objects(obj: list[Any]) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return [x for part in out for x in part]


def ndcg_at_k(scores: Tensor, labels: Tensor, mask: Tensor, k: int = 10) -> Tensor:
    """Per-row nDCG@k (linear gain ``rel / log2(rank + 1)``, as trec_eval and ranx) of ranking each row's real
    entries by score. The ideal ranking is taken over the row's own labels, so this is the nDCG of *re-ranking
    the given list* (a cheap training monitor, not the pipeline's metric). Rows without a relevant entry get 0."""
    scores = scores.float().masked_fill(~mask, float("-inf"))
    gains = labels.float().clamp(min=0).masked_fill(~mask, 0.0)
    k = min(k, scores.shape[1])
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, device=scores.device, dtype=torch.float))
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    dcg = (gains.gather(1, order) * discounts).sum(1)
    ideal = (gains.sort(dim=1, descending=True).values[:, :k] * discounts).sum(1)
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-12), torch.zeros_like(dcg))


# --------------------------------------------------------------------------------------------------------------
# shared: optimiser, schedule, logging, export


class RankingModule(pl.LightningModule):
    """What both modules share: AdamW + warmup/decay schedule, throughput/lr logging, list validation, export.

    The family is switched to train mode when training starts (``from_pretrained`` returns eval mode, and
    Lightning keeps submodule modes as it finds them); validation runs in eval mode and training resumes in
    train mode.

    Args:
        model: the model family (``nn.Module``).
        loss: a ranking loss ``loss(scores[B, L], labels[B, L], mask[B, L]) -> scalar``.
        lr, weight_decay: AdamW. Weight decay is not applied to biases and norm weights (params with < 2 dims).
        warmup_steps: linear warmup from 0 over this many optimiser steps; ``warmup_ratio`` (of the total steps)
            is used instead when given.
        schedule: ``"linear"`` (after warmup, linear decay to 0 at the last step; the total is Lightning's
            ``estimated_stepping_batches``) or ``"constant"`` (after warmup; RankT5 uses a constant 1e-4). Set
            ``max_steps`` with "linear": with only ``max_time`` Lightning assumes 1000 epochs and the lr hardly
            decays before time runs out.
        val_k: the cut-off of the validation nDCG (``val/ndcg@{val_k}``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        schedule: str = "linear",
        val_k: int = 10,
    ) -> None:
        super().__init__()
        if schedule not in ("linear", "constant"):
            raise ValueError(f"schedule must be 'linear' or 'constant', got {schedule!r}")
        self.model = model
        self.loss = loss
        self.save_hyperparameters(ignore=["model", "loss"])
        self._last_step_end: float | None = None

    # -- optimiser -------------------------------------------------------------------------------------------
    def _total_steps(self) -> float:
        try:
            return float(self.trainer.estimated_stepping_batches)
        except Exception:  # no trainer / unknown length
            return math.inf

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.lr)
        total = self._total_steps()
        if hp.warmup_ratio is not None:
            if not math.isfinite(total):
                raise ValueError("warmup_ratio needs a known number of steps: set max_steps or max_epochs")
            warmup = int(hp.warmup_ratio * total)
        else:
            warmup = int(hp.warmup_steps)
        linear = hp.schedule == "linear"
        if linear and not math.isfinite(total):
            warnings.warn("schedule='linear' without a known number of steps: keeping the lr constant after warmup")
            linear = False

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if not linear:
                return 1.0
            return max(0.0, (total - step) / max(1.0, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- data epochs -----------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # from_pretrained gives the family in eval mode and Lightning 2.6 keeps each submodule's mode as it finds
        # it: without this, training would run with dropout off
        self.model.train()
        # Lightning skips on_train_epoch_start when it resumes in the middle of an epoch
        self._sync_dataset_epoch()

    def on_train_epoch_start(self) -> None:
        self._sync_dataset_epoch()

    def _sync_dataset_epoch(self) -> None:
        """Move epoch-aware datasets (``set_epoch``) to the current epoch, so each epoch draws new lists."""
        loaders = self.trainer.train_dataloader
        if loaders is None:
            return
        if not isinstance(loaders, (list, tuple, Mapping)):
            loaders = [loaders]
        elif isinstance(loaders, Mapping):
            loaders = list(loaders.values())
        for dl in loaders:
            dataset = getattr(dl, "dataset", None)
            if callable(getattr(dataset, "set_epoch", None)):
                dataset.set_epoch(self.current_epoch)

    # -- training --------------------------------------------------------------------------------------------
    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[Tensor, int]:  # pragma: no cover
        """``(loss, number of queries in the local batch)``."""
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss, n = self.compute_loss(batch)
        self._check_finite(loss, batch_idx)
        self._last_batch_size = n
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=n)
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if opt is not None:
            self.log("train/lr", opt.param_groups[0]["lr"], batch_size=n)
        return loss

    def _check_finite(self, loss: Tensor, batch_idx: int) -> None:
        """Stop training at the first NaN or inf loss, naming the step (every rank stops: the flag is reduced across
        processes, so no rank waits for a gradient its peer will never send)."""
        finite = torch.isfinite(loss.detach()).all().to(torch.int32).reshape(1)
        if _distributed():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not bool(finite.item()):
            raise FloatingPointError(
                f"training stopped: the loss is {loss.detach().item()} at optimiser step {self.global_step} "
                f"(batch {batch_idx} of epoch {self.current_epoch}; on this rank or another). Lower the learning rate "
                f"(train.lr={self.hparams.lr}), clip gradients (train.gradient_clip_val=1.0), or train in fp32 "
                "(hardware.precision=32-true)"
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_step_end is not None:
            dt = now - self._last_step_end
            if dt > 0:
                # queries (lists / pairs) per second over all processes, data loading and optimiser included
                self.log("train/samples_per_sec", self._last_batch_size * self.trainer.world_size / dt,
                         batch_size=self._last_batch_size)
        self._last_step_end = now

    def on_train_epoch_end(self) -> None:
        self._last_step_end = None  # do not count the validation / epoch boundary as a step

    # -- validation: re-rank small dev lists ----------------------------------------------------------------
    def score_lists(self, batch: Mapping[str, Any]) -> Tensor:  # pragma: no cover
        """Scores ``[B, L]`` of a list batch (padding positions arbitrary)."""
        raise NotImplementedError

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        scores = self.score_lists(batch)
        labels = batch["labels"].to(scores.device)
        mask = batch["mask"].to(scores.device)
        ndcg = ndcg_at_k(scores, labels, mask, self.hparams.val_k)
        self.log(f"val/ndcg@{self.hparams.val_k}", ndcg.mean(), prog_bar=True, batch_size=len(ndcg),
                 sync_dist=True)

    # -- export ----------------------------------------------------------------------------------------------
    def export(self, path: str) -> None:
        """Save the trained family with its own ``save_pretrained`` (loadable with ``from_pretrained``)."""
        self.model.save_pretrained(str(path))


# --------------------------------------------------------------------------------------------------------------
# retrievers


class RetrieverModule(RankingModule):
    """Trains a retriever family with in-batch (and optionally cross-device) negatives.

    Batch (:class:`~retrieval_lab.training.data.RetrieverCollator`): B queries, their B positives and B*h hard
    negatives. Each query is scored against every doc of the batch, ``scores[B, B*(1+h)]``, and
    ``labels[b, j] = 1`` iff doc j is a judged positive of query b (:func:`~.data.in_batch_labels`): another
    query's positive that is also judged relevant to b counts as a positive of b (RepBERT 3.2), never as a
    negative. ``mask[b, j]`` is False iff doc j is judged relevant to b at a grade below the collection's
    ``rel_threshold`` (grade > 0, not a positive; :func:`~.data.in_batch_mask`): such a doc is neither a positive
    nor a negative of b, as in the samplers of :mod:`~.data`; every other entry is True.

    ``in_batch_negatives=False``: each query is scored against its own positive and hard negatives only (the
    other docs of the batch are masked out; the scores matrix keeps its shape).

    ``cross_device_negatives`` (default True; acts only with in-batch negatives and when ``torch.distributed``
    runs with world size > 1): the doc embeddings (and ids) of all ranks are gathered with
    :func:`gather_with_grad` (gradients flow back to the rank that encoded each doc), so every query sees all
    devices' docs: ``scores[B, W*B*(1+h)]``; labels and mask are built over the gathered ids.

    ``temperature`` is the softmax temperature: the loss sees ``score(q, d) / temperature``. Cosine
    similarities lie in [-1, 1] and need a small one (0.05, i.e. scores x 20, as in Sentence-BERT's
    MultipleNegativesRankingLoss); raw dot products usually train with 1.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        schedule: str = "linear",
        val_k: int = 10,
        in_batch_negatives: bool = True,
        cross_device_negatives: bool = True,
        temperature: float = 1.0,
    ) -> None:
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        super().__init__(model, loss, lr, weight_decay, warmup_steps, warmup_ratio, schedule, val_k)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[Tensor, int]:
        loss, scores, _, mask = self.loss_scores_labels(batch)
        if self._trainer is not None:
            # docs each query is scored against (B*(1+h), times the world size with cross-device negatives)
            self.log("train/candidates_per_query", mask.sum(1).float().mean(), batch_size=scores.shape[0])
        return loss, scores.shape[0]

    def loss_scores_labels(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(loss, scores[B, N], labels[B, N], mask[B, N])`` of a training batch; N = all docs of the batch (of
        all ranks with cross-device negatives)."""
        q = self.model.encode(batch["queries"])
        d = self.model.encode(batch["docs"])
        doc_ids = list(batch["doc_ids"])
        in_batch = self.hparams.in_batch_negatives
        if in_batch and self.hparams.cross_device_negatives and _distributed():
            # token vectors of other ranks come padded: their mask says which positions are real
            d = Encoded(*gather_with_grad(d.embeddings, d.mask))
            doc_ids = _gather_objects(doc_ids)
        scores = self.model.score(q, d) / self.hparams.temperature
        positive_ids = batch["positive_ids"]
        labels = in_batch_labels(positive_ids, doc_ids).to(scores.device)
        excluded_ids = batch.get("excluded_ids") or [frozenset()] * len(positive_ids)
        mask = in_batch_mask(excluded_ids, positive_ids, doc_ids).to(scores.device)
        if not in_batch:  # each query sees only its own positive and hard negatives
            owner = batch["doc_owner"].to(scores.device)
            mask &= owner.unsqueeze(0) == torch.arange(scores.shape[0], device=scores.device).unsqueeze(1)
        return self.loss(scores, labels, mask), scores, labels, mask

    def score_lists(self, batch: Mapping[str, Any]) -> Tensor:
        """List batch from :class:`~.data.RetrieverListCollator`: queries [B], flat real docs [n]."""
        q = self.model.encode(batch["queries"])
        d = self.model.encode(batch["docs"])
        device = q.embeddings.device
        mask = batch["mask"].to(device)
        rows = torch.arange(mask.shape[0], device=device).repeat_interleave(mask.sum(1))
        flat = self.model.score(q, d)[rows, torch.arange(len(rows), device=device)]
        return flat.new_zeros(mask.shape).masked_scatter(mask, flat)


# --------------------------------------------------------------------------------------------------------------
# rerankers


class RerankerModule(RankingModule):
    """Trains a reranker family on lists (:class:`~retrieval_lab.training.data.RerankerListDataset`).

    Every real (query, doc) pair of the batch is scored once (padding never goes through the model), the scores
    are put back into ``[B, L]`` and the loss sees ``loss(scores, labels, mask)``. Pointwise, pairwise and
    listwise losses all work on these lists (RankT5: for pointwise losses the paper upsamples positives; that
    is a weighting the loss would do, not the lists).

    ``micro_batch_size`` (pairs; None = all at once): the pairs go through the model in chunks of at most this
    many, each under activation checkpointing (``torch.utils.checkpoint``, non-reentrant): the forward pass keeps
    only each chunk's scores, and the backward pass recomputes one chunk at a time, so memory holds one chunk's
    activations while the loss still sees every list whole. With dropout off the gradient is the unsplit one (up to
    float rounding); with dropout on, each chunk's recomputation replays that chunk's draws, which differ from the
    draws of one unsplit pass (so ``micro_batch_size`` is part of a trained model's cache key). Each chunk is cut to
    its own longest pair.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, lr: float = 2e-5, weight_decay: float = 0.01,
                 warmup_steps: int = 0, warmup_ratio: float | None = None, schedule: str = "linear", val_k: int = 10,
                 micro_batch_size: int | None = None) -> None:
        if micro_batch_size is not None and int(micro_batch_size) < 1:
            raise ValueError(f"micro_batch_size must be >= 1 (or None), got {micro_batch_size}")
        super().__init__(model, loss, lr, weight_decay, warmup_steps, warmup_ratio, schedule, val_k)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[Tensor, int]:
        scores = self.score_lists(batch)
        labels = batch["labels"].to(scores.device)
        mask = batch["mask"].to(scores.device)
        return self.loss(scores, labels, mask), scores.shape[0]

    def score_pairs(self, pairs: Mapping[str, Tensor]) -> Tensor:
        """Scores ``[n]`` of tokenised pairs, in micro-batches when ``micro_batch_size`` is set."""
        size = self.hparams.get("micro_batch_size")
        n = int(next(iter(pairs.values())).shape[0])
        if not size or n <= size:
            return self.model(pairs)
        from torch.utils.checkpoint import checkpoint

        parts = []
        for start in range(0, n, int(size)):
            chunk = {k: v[start:start + int(size)] for k, v in pairs.items()}
            if "attention_mask" in chunk:  # cut the chunk's padding columns (right padding)
                width = int(chunk["attention_mask"].sum(1).max())
                chunk = {k: (v[:, :width] if v.dim() == 2 else v) for k, v in chunk.items()}
            if torch.is_grad_enabled():
                parts.append(checkpoint(self.model, chunk, use_reentrant=False))
            else:
                parts.append(self.model(chunk))
        return torch.cat(parts)

    def score_lists(self, batch: Mapping[str, Any]) -> Tensor:
        flat = self.score_pairs(batch["pairs"])
        mask = batch["mask"].to(flat.device)
        if flat.dim() != 1 or flat.shape[0] != int(mask.sum()):
            raise ValueError(
                f"the reranker returned scores of shape {tuple(flat.shape)} for {int(mask.sum())} pairs; "
                "expected one score per pair ([n])"
            )
        return flat.new_zeros(mask.shape).masked_scatter(mask, flat)
