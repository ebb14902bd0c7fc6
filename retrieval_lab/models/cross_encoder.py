"""Cross-encoder (monoBERT; Nogueira & Cho, 2019): one pass over the query and document together.

    Input(q, d) = [CLS] Tokenize(q) [SEP] Tokenize(d) [SEP]      segments 0 ... 0 1 ... 1
    s(q, d)     = w . h_[CLS] + b                                one score per pair

* The pair goes through the tokenizer's own pair encoding (so non-BERT backbones get their own
  special tokens), truncating only the document (``truncation="only_second"``) to ``max_length``
  tokens in all (256 by default). A query that alone overflows ``max_length`` falls back to
  truncating both sides (longest first) instead of failing.
* The head is Hugging Face's ``AutoModelForSequenceClassification`` with ``num_labels=1``: a
  linear layer on the [CLS] representation (via BERT's pooler for BERT, as in monoBERT and BERT's
  own classifier). Loading a plain backbone (BertModel, MiniLM) initialises that head randomly
  (transformers reports the new weights); loading a trained sequence-classification checkpoint
  keeps its head. A 2-label checkpoint (e.g. castorini/monobert-large-msmarco) scores
  ``logit[1] - logit[0]``, which orders pairs exactly as monoBERT's ``log_softmax(...)[1]``.

``score_pairs`` is the inference path (eval mode, ``torch.inference_mode``, batches of similar
length, optional bf16 autocast, tqdm bar); ``forward`` is the training path. In both the score head
(the output ``nn.Linear`` with ``num_labels`` outputs, whatever its name) runs in float32 with autocast
off (:class:`Float32Linear`), so bf16 autocast / bf16-mixed training rounds the encoder, not the scores.

Example::

    model = CrossEncoder.from_pretrained("tests/fixtures/models/tiny-bert")
    model.score_pairs(["what causes rain?"] * 2, ["Warm air rises.", "The cat sat."])  # Tensor[2]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from retrieval_lab.models.backbone import (
    BackboneError,
    Float32Linear,
    family_settings,
    given_settings,
    load_pretrained,
    resolve_backbone,
    save_family,
)
from retrieval_lab.models.inference import batched_inference

__all__ = ["CrossEncoder", "Float32Linear"]

_DEFAULTS: dict[str, Any] = {"max_length": 256}


def _float32_heads(model: nn.Module, num_labels: int) -> list[str]:
    """Turn the score head(s) of ``model`` (every plain ``nn.Linear`` with ``out_features == num_labels``: BERT's
    and DistilBERT's ``classifier``, RoBERTa's ``classifier.out_proj``, GPT-style ``score``, ...) into
    :class:`Float32Linear` in place; returns their names."""
    names = []
    for name, module in model.named_modules():
        if type(module) is nn.Linear and module.out_features == num_labels:
            module.__class__ = Float32Linear
            names.append(name)
        elif type(module) is Float32Linear:
            names.append(name)
    return names


#: model types whose checkpoints are encoder-decoders even when config.json says otherwise (a saved T5EncoderModel)
_ENCODER_DECODER_TYPES = frozenset({"t5", "mt5", "umt5", "longt5", "bart", "mbart", "pegasus", "marian"})


def _check_not_an_encoder_decoder(config: Any, name: str) -> None:
    """Stop on an encoder-decoder without a trained sequence-classification head (a T5 or monoT5, a BART),
    recognised from its config.json (``is_encoder_decoder``, ``architectures``, ``model_type``): the cross-encoder
    would put a new, untrained head on it (and for a T5 encoder alone, a decoder it does not have), ignoring a
    monoT5's true/false generation scoring, so its scores would mean nothing."""
    archs = [str(a) for a in (getattr(config, "architectures", None) or [])]
    model_type = str(getattr(config, "model_type", "") or "")
    if not (getattr(config, "is_encoder_decoder", False) or model_type in _ENCODER_DECODER_TYPES
            or any(a.endswith(("ForConditionalGeneration", "EncoderModel")) for a in archs)):
        return
    what = archs[0] if archs else f"{model_type or 'encoder-decoder'} model"
    generation = any(a.endswith("ForConditionalGeneration") for a in archs)
    encoder_only = any(a.endswith("EncoderModel") for a in archs)
    raise BackboneError(
        f"{name!r} is a {what} (an encoder-decoder, model_type {model_type!r}): as a cross-encoder it would get a new, "
        "untrained classification head"
        + (" and its generation head (a monoT5's 'true'/'false' scoring) would be ignored" if generation else "")
        + (" and a decoder with random weights (the folder holds the encoder only)" if encoder_only else "")
        + ", so its scores would mean nothing. Give reranker.model an encoder (BERT, MiniLM, ELECTRA: a plain backbone "
        "or a *ForSequenceClassification reranker checkpoint); a T5's encoder can be a retriever "
        f"(retriever=biencoder retriever.model={name})"
    )


class CrossEncoder(nn.Module):
    """monoBERT-style cross-encoder over any Hugging Face sequence-classification model."""

    family = "cross_encoder"
    roles = ("reranker",)
    SETTINGS = ("max_length",)

    def __init__(self, model: nn.Module, tokenizer: Any, *, max_length: int = 256) -> None:
        super().__init__()
        num_labels = int(getattr(model.config, "num_labels", 1))
        if num_labels not in (1, 2):
            raise ValueError(f"a cross-encoder head needs 1 or 2 labels, the model has {num_labels}")
        if int(max_length) < 4:
            raise ValueError(f"max_length must be >= 4, got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.num_labels = num_labels
        # the score head computes in float32 under autocast, in training and inference alike
        self.head_names = _float32_heads(model, num_labels)
        import inspect

        params = inspect.signature(model.forward).parameters
        self._forward_keys = frozenset(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in params)

    @property
    def settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}, num_labels={self.num_labels}"

    # -- tokenisation ----------------------------------------------------------------------

    def tokenize_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> dict[str, torch.Tensor]:
        """(query, document) pairs -> padded tensors ``[CLS] q [SEP] d [SEP]`` (longest in batch)."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        kwargs = dict(padding=True, max_length=self.max_length, return_tensors="pt")
        try:
            batch = self.tokenizer(list(queries), list(docs), truncation="only_second", **kwargs)
        except Exception as err:  # the Rust tokenizer refuses when a query alone is too long
            if "truncat" not in str(err).lower():
                raise
            batch = self.tokenizer(list(queries), list(docs), truncation="longest_first", **kwargs)
        return {k: v for k, v in batch.items() if k in self._forward_keys}

    # -- the model -------------------------------------------------------------------------

    def _logits_to_score(self, logits: torch.Tensor) -> torch.Tensor:
        if self.num_labels == 1:
            return logits[:, 0]
        return logits[:, 1] - logits[:, 0]

    def forward(self, batch: Mapping[str, torch.Tensor] | None = None, **tokenized: torch.Tensor) -> torch.Tensor:
        """Tokenised pairs (a mapping, or keyword tensors) -> scores ``[n]`` (the training path)."""
        inputs = dict(batch or {}, **tokenized)
        device = self.device
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items() if k in self._forward_keys}
        logits = self.model(**inputs).logits
        return self._logits_to_score(logits).float()

    def score_pairs(
        self,
        queries: Sequence[str],
        docs: Sequence[str],
        batch_size: int = 32,
        precision: str = "fp32",
        show_progress: bool = True,
    ) -> torch.Tensor:
        """Score ``(queries[i], docs[i])`` pairs -> float32 CPU tensor ``[n]`` in input order."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        queries = [q if isinstance(q, str) else str(q) for q in queries]
        docs = [d if isinstance(d, str) else str(d) for d in docs]
        if not queries:
            return torch.empty(0, dtype=torch.float32)
        return batched_inference(
            self, list(zip(queries, docs)),
            lambda batch: self.forward(self.tokenize_pairs([q for q, _ in batch], [d for _, d in batch])),
            batch_size=batch_size, precision=precision, key=lambda p: len(p[0]) + len(p[1]),
            show_progress=show_progress, desc="pairs",
        )

    # -- persistence -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **overrides: Any) -> CrossEncoder:
        """Load a saved cross-encoder, a sequence-classification checkpoint or a plain backbone.

        Settings: defaults (``max_length=256``) < the checkpoint's ``retrieval_lab.json`` <
        ``overrides`` (``None`` means "not set"). A checkpoint of another family raises
        :class:`~retrieval_lab.models.backbone.FamilyMismatchError`; an encoder-decoder without a trained
        sequence-classification head (a T5 / monoT5, a T5EncoderModel, a BART), recognised from its config.json,
        raises :class:`~retrieval_lab.models.backbone.BackboneError` naming it.
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        overrides = given_settings("CrossEncoder", overrides, _DEFAULTS)
        path = resolve_backbone(name_or_path)
        settings = {**_DEFAULTS, **family_settings(path, cls.family, cls.__name__), **overrides}

        config = load_pretrained(AutoConfig.from_pretrained, path)
        trained_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if not trained_head:
            _check_not_an_encoder_decoder(config, os.fspath(name_or_path))
        num_labels = int(config.num_labels) if trained_head else 1
        if num_labels not in (1, 2):
            raise BackboneError(f"{path!r} is a {num_labels}-label classifier; a cross-encoder needs 1 or 2 labels")
        model = load_pretrained(
            AutoModelForSequenceClassification.from_pretrained, path, num_labels=num_labels, dtype=torch.float32
        )
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path)
        return cls(model, tokenizer, **settings)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write model + head (safetensors) + tokenizer + ``retrieval_lab.json`` into ``path``."""
        save_family(path, self.model, self.tokenizer, self.family, self.settings)
