"""Training as a pipeline stage: config + collection + first-stage run -> a trained model folder.

A trained model is cached under a key covering everything it depends on (backbone weights, collection
content, first stage, loss, training and precision settings), so a sweep over ``reranker.depth`` trains once.
With ``hardware=ddp`` Lightning starts one process per device; only rank 0 goes on past training.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from retrieval_lab.cache import atomic_dir, fingerprint, is_complete
from retrieval_lab.losses import build_loss

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def loss_from_config(loss_cfg: DictConfig):
    kwargs = dict(_plain(loss_cfg))
    return build_loss(kwargs.pop("name"), **kwargs)


def train_split(ctx, cfg: DictConfig, role: str) -> str:
    collection = ctx.collection
    split = cfg.train.split
    if split not in collection.qrels:
        raise ValueError(
            f"{role}.train.enabled=true, but dataset {collection.name!r} has no judged {split!r} split "
            f"(judged splits: {sorted(collection.qrels)}). Train on a dataset with one (e.g. dataset=scifact) "
            f"and pass the trained folder as {role}.model=<folder>, or set {role}.train.enabled=false."
        )
    return split


def _model_key(kind: str, backbone: str, cfg: DictConfig, ctx, first_stage_cfg: Any) -> str:
    from retrieval_lab.retrievers.dense import model_fingerprint

    hw = ctx.hardware
    return fingerprint(
        kind, model_fingerprint(backbone), ctx.collection.fingerprint, _plain(cfg), _plain(ctx.cfg.loss),
        _plain(first_stage_cfg), hw.precision, hw.devices, hw.strategy, ctx.cfg.seed,
    )


def _fit_and_export(module, loader, cfg: DictConfig, ctx, stage: str, key: str) -> str:
    from retrieval_lab.training.trainer import build_trainer, fit

    target = ctx.cache_dir / "models" / key
    module.model.train()  # from_pretrained returns eval mode; Lightning keeps modes as it finds them (dropout on)
    trainer = build_trainer(
        ctx.hardware, cfg.train, output_dir=ctx.stage_dir(stage),
        logger=ctx.logger.get_lightning_logger(), enable_progress_bar=ctx.show_progress,
    )
    fit(module, loader, trainer, ckpt_path=cfg.train.resume_from)
    if trainer.global_rank != 0:  # DDP workers: training is their only job
        sys.exit(0)
    with atomic_dir(target) as tmp:
        module.export(str(tmp))
    (ctx.output_dir / f"{stage}_model.txt").write_text(str(target) + "\n")
    log.info("%s: trained model saved to %s", stage, target)
    return str(target)


def _cached(key: str, ctx, stage: str) -> str | None:
    target = ctx.cache_dir / "models" / key
    if is_complete(target):
        log.info("%s: reusing the model trained with the same settings at %s", stage, target)
        (ctx.output_dir / f"{stage}_model.txt").write_text(str(target) + "\n")
        return str(target)
    return None


def train_reranker(cfg: DictConfig, ctx, backbone: str, first_stage, load_model) -> str:
    """Fine-tune a reranker (``load_model(path)`` gives the family) on lists from ``first_stage``'s run on the
    training split; returns the folder of the trained model."""
    from torch.utils.data import DataLoader

    from retrieval_lab.training.data import RerankerCollator, RerankerListDataset
    from retrieval_lab.training.modules import RerankerModule

    split = train_split(ctx, cfg, "reranker")
    if first_stage is None:
        raise ValueError("reranker training needs a first stage: negatives are sampled from its run")
    key = _model_key("reranker", backbone, cfg, ctx, first_stage.cfg)
    if (done := _cached(key, ctx, "train_reranker")) is not None:
        return done
    run = first_stage.retrieve(split)
    t = cfg.train
    model = load_model(backbone)
    dataset = RerankerListDataset(ctx.collection, split, run, list_size=t.list_size, sample_depth=t.sample_depth,
                                  seed=t.seed)
    generator = torch.Generator().manual_seed(t.seed)
    loader = DataLoader(dataset, batch_size=t.batch_size, shuffle=True, generator=generator,
                        collate_fn=RerankerCollator(model.tokenize_pairs))
    module = RerankerModule(model, loss_from_config(ctx.cfg.loss), lr=t.lr, weight_decay=t.weight_decay,
                            warmup_steps=t.warmup_steps, schedule=t.schedule)
    log.info("training %s on %d %s queries (lists of %d from %s's top %d), loss=%s",
             cfg.name, len(dataset), split, t.list_size, first_stage.name, t.sample_depth, ctx.cfg.loss.name)
    return _fit_and_export(module, loader, cfg, ctx, "train_reranker", key)


def train_retriever(cfg: DictConfig, ctx, backbone: str, negatives, load_model) -> str:
    """Fine-tune a retriever (``load_model(path)`` gives the family) with in-batch negatives plus hard negatives
    from ``negatives``' run on the training split; returns the folder of the trained model."""
    from torch.utils.data import DataLoader

    from retrieval_lab.training.data import RetrieverCollator, RetrieverPairDataset
    from retrieval_lab.training.modules import RetrieverModule

    split = train_split(ctx, cfg, "retriever")
    t = cfg.train
    key = _model_key("retriever", backbone, cfg, ctx, negatives.cfg if negatives else None)
    if (done := _cached(key, ctx, "train_retriever")) is not None:
        return done
    run = negatives.retrieve(split) if negatives is not None else None
    model = load_model(backbone)
    dataset = RetrieverPairDataset(ctx.collection, split, run, num_hard_negatives=t.num_hard_negatives,
                                   hard_negative_depth=t.hard_negative_depth, seed=t.seed)
    generator = torch.Generator().manual_seed(t.seed)
    loader = DataLoader(dataset, batch_size=t.batch_size, shuffle=True, generator=generator, drop_last=False,
                        collate_fn=RetrieverCollator(model.tokenize_queries, model.tokenize_docs))
    scale = 20.0 if getattr(model, "similarity", None) == "cosine" else 1.0  # softmax temperature for cosines
    module = RetrieverModule(model, loss_from_config(ctx.cfg.loss), lr=t.lr, weight_decay=t.weight_decay,
                             warmup_steps=t.warmup_steps, schedule=t.schedule,
                             in_batch_negatives=t.in_batch_negatives, scale=scale)
    log.info("training %s on %d %s queries (%d hard negatives from %s), loss=%s", cfg.name, len(dataset), split,
             t.num_hard_negatives, negatives.name if negatives else "-", ctx.cfg.loss.name)
    return _fit_and_export(module, loader, cfg, ctx, "train_retriever", key)
