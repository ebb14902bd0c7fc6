"""Training as a pipeline stage: config + collection + first-stage run (or ``train.triples``, an ir_datasets
dataset of training triples, see :mod:`.triples`) -> a trained model folder.

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


# settings that only change how a trained model is used (depth, inference batch, index), not the model
_INFERENCE_ONLY = ("depth", "batch_size", "k", "index", "embeddings_dtype")


def _model_key(kind: str, backbone: str, cfg: DictConfig, ctx, first_stage_cfg: Any) -> str:
    """Everything a trained model depends on, and nothing it does not: a sweep over ``reranker.depth`` trains once."""
    from retrieval_lab.retrievers.dense import model_fingerprint

    hw = ctx.hardware
    training = {k: v for k, v in _plain(cfg).items() if k not in _INFERENCE_ONLY}
    # trained on train.triples (named, with max_triples, in cfg), the model does not depend on the collection
    data = None if cfg.train.get("triples") else ctx.collection.fingerprint
    return fingerprint(
        kind, model_fingerprint(backbone), data, training, _plain(ctx.cfg.loss),
        _plain(first_stage_cfg), hw.precision, hw.devices, hw.strategy, ctx.cfg.seed,
    )


def _fit_and_export(module, loader, cfg: DictConfig, ctx, stage: str, key: str) -> str:
    from retrieval_lab.training.trainer import build_trainer, fit

    target = ctx.cache_dir / "models" / key
    module.model.train()  # from_pretrained returns eval mode; Lightning keeps modes as it finds them (dropout on)
    if cfg.train.get("attention_dropout") is not None:
        from retrieval_lab.models.backbone import set_attention_dropout

        n = set_attention_dropout(module.model, float(cfg.train.attention_dropout))
        log.info("%s: attention dropout %s in %d attention modules", stage, cfg.train.attention_dropout, n)
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


def _triples(t: DictConfig):
    from retrieval_lab.training.triples import IrDatasetsTriples

    return IrDatasetsTriples(t.triples, max_triples=t.max_triples, seed=t.seed)


def train_reranker(cfg: DictConfig, ctx, backbone: str, first_stage, load_model) -> str:
    """Fine-tune a reranker (``load_model(path)`` gives the family) on lists from ``first_stage``'s run on the
    training split, or on (positive, negative) lists from ``train.triples``; returns the trained model's folder."""
    from torch.utils.data import DataLoader

    from retrieval_lab.training.data import RerankerCollator, RerankerListDataset
    from retrieval_lab.training.modules import RerankerModule

    t = cfg.train
    if t.get("triples"):  # ir_datasets training triples: no train split, no first-stage run
        first_stage = None
    else:
        split = train_split(ctx, cfg, "reranker")
        if first_stage is None:
            raise ValueError("reranker training needs a first stage: negatives are sampled from its run")
    key = _model_key("reranker", backbone, cfg, ctx, first_stage.cfg if first_stage else None)
    if (done := _cached(key, ctx, "train_reranker")) is not None:
        return done
    if t.get("triples"):
        dataset = _triples(t)
        source = f"{len(dataset)} triples of {t.triples} (lists of 2: positive, negative)"
    else:
        dataset = RerankerListDataset(ctx.collection, split, first_stage.retrieve(split), list_size=t.list_size,
                                      sample_depth=t.sample_depth, seed=t.seed)
        source = (f"{len(dataset)} {split} queries (lists of {t.list_size} from {first_stage.name}'s top "
                  f"{t.sample_depth})")
    model = load_model(backbone)
    generator = torch.Generator().manual_seed(t.seed)
    loader = DataLoader(dataset, batch_size=t.batch_size, shuffle=True, generator=generator,
                        collate_fn=RerankerCollator(model.tokenize_pairs))
    module = RerankerModule(model, loss_from_config(ctx.cfg.loss), lr=t.lr, weight_decay=t.weight_decay,
                            warmup_steps=t.warmup_steps, schedule=t.schedule)
    log.info("training %s on %s, loss=%s", cfg.name, source, ctx.cfg.loss.name)
    return _fit_and_export(module, loader, cfg, ctx, "train_reranker", key)


def train_retriever(cfg: DictConfig, ctx, backbone: str, negatives, load_model) -> str:
    """Fine-tune a retriever (``load_model(path)`` gives the family) with in-batch negatives plus hard negatives
    from ``negatives``' run on the training split, or from ``train.triples``; returns the trained model's folder."""
    from torch.utils.data import DataLoader

    from retrieval_lab.training.data import RetrieverCollator, RetrieverPairDataset
    from retrieval_lab.training.modules import RetrieverModule

    t = cfg.train
    if t.get("triples"):  # ir_datasets training triples: no train split; their negatives are the hard ones
        negatives = None
    else:
        split = train_split(ctx, cfg, "retriever")
    key = _model_key("retriever", backbone, cfg, ctx, negatives.cfg if negatives else None)
    if (done := _cached(key, ctx, "train_retriever")) is not None:
        return done
    if t.get("triples"):
        dataset = _triples(t).pairs(t.num_hard_negatives)
        source = f"{len(dataset)} triples of {t.triples} ({t.num_hard_negatives} hard negative from each)"
    else:
        run = negatives.retrieve(split) if negatives is not None else None
        dataset = RetrieverPairDataset(ctx.collection, split, run, num_hard_negatives=t.num_hard_negatives,
                                       hard_negative_depth=t.hard_negative_depth, seed=t.seed)
        source = (f"{len(dataset)} {split} queries ({t.num_hard_negatives} hard negatives from "
                  f"{negatives.name if negatives else '-'})")
    model = load_model(backbone)
    generator = torch.Generator().manual_seed(t.seed)
    loader = DataLoader(dataset, batch_size=t.batch_size, shuffle=True, generator=generator, drop_last=False,
                        collate_fn=RetrieverCollator(model.tokenize_queries, model.tokenize_docs))
    scale = 20.0 if getattr(model, "similarity", None) == "cosine" else 1.0  # softmax temperature for cosines
    module = RetrieverModule(model, loss_from_config(ctx.cfg.loss), lr=t.lr, weight_decay=t.weight_decay,
                             warmup_steps=t.warmup_steps, schedule=t.schedule,
                             in_batch_negatives=t.in_batch_negatives, scale=scale)
    log.info("training %s on %s, loss=%s", cfg.name, source, ctx.cfg.loss.name)
    return _fit_and_export(module, loader, cfg, ctx, "train_retriever", key)
