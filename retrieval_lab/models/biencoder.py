"""Bi-encoder (RepBERT; Zhan et al., 2020): one shared encoder embeds queries and documents.

    Input(text)    = [CLS] Tokenize(text) [SEP]                                  (RepBERT eq. 1)
    Embed(text)    = Pool(Encoder(Input(text)))     Pool = masked mean (eq. 2) or the [CLS] vector
    Rel(q, d)      = Embed(q) . Embed(d)            similarity "dot" (eq. 3), or "cosine":
                     the same product over L2-normalised embeddings

* ONE encoder (weights shared by queries and documents, as in RepBERT).
* Segment ids (RepBERT, footnote 2): token_type_ids are 0 on query tokens and 1 on document
  tokens, so the shared encoder knows which side it reads. Only when ``segment_ids=True`` AND the
  backbone has a token-type embedding with >= 2 types (BERT, MiniLM: type_vocab_size 2); other
  backbones (RoBERTa, DistilBERT, T5) silently use none (``uses_segment_ids`` says which).
  sentence-transformers models were trained with segment 0 everywhere: loading a
  sentence-transformers folder turns segment ids off (see :meth:`BiEncoder.from_pretrained`).
* Lengths: queries truncated to ``query_max_length`` (20 in RepBERT), documents to
  ``doc_max_length`` (256), special tokens included.

Encoding (``encode_queries`` / ``encode_docs``) is the inference path: eval mode,
``torch.inference_mode``, batches of similar length (sorted longest first, results scattered
back to the input order; ColBERT section 3.4), padding only to the longest text of each batch,
optional bf16 autocast, a tqdm bar. It returns what an index should store: float32 on CPU,
L2-normalised when ``similarity="cosine"``, so that inner product == :meth:`score` in both cases.
``forward_encode`` is the training path (grad on, the caller's mode and device).

Zero-shot all-MiniLM-L6-v2 (measured on SciFact test, 300 queries, nDCG@10, bf16, exact search)::

    segment_ids  query_max_length   nDCG@10  R@100
    False        256                0.646    0.925   (MTEB reports 0.645 for this model)
    True         256                0.649    0.927   (not significantly different: paired t-test)
    False        20                 0.607    0.903   (significantly worse: 52% of SciFact
    True         20                 0.606    0.900    queries are longer than 20 tokens)

Document segment 1 neither helps nor hurts the zero-shot model, so a zero-shot preset should keep
what the model was trained with: ``pooling=mean similarity=cosine segment_ids=false`` and a
query length that fits the collection (256, as sentence-transformers uses; RepBERT's 20 suits MS
MARCO's short queries, not SciFact's claims). That is also what :meth:`BiEncoder.from_pretrained`
reads from a sentence-transformers folder when no override is given.

Example::

    model = BiEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    q = model.encode_queries(["what causes rain?"])
    d = model.encode_docs(["Warm air rises and cools.", "The cat sat."])
    model.score(q, d)                    # Tensor[1, 2]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from retrieval_lab.models.backbone import (
    BackboneError,
    family_settings,
    given_settings,
    load_pretrained,
    resolve_backbone,
    supports_token_types,
    save_family,
)
from retrieval_lab.models.inference import batched_inference
from retrieval_lab.models.protocols import Encoded

__all__ = ["BiEncoder", "POOLINGS", "SIMILARITIES"]

POOLINGS = ("mean", "cls")
SIMILARITIES = ("dot", "cosine")
_DEFAULTS: dict[str, Any] = {
    "pooling": "mean",
    "similarity": "dot",
    "query_max_length": 20,
    "doc_max_length": 256,
    "segment_ids": True,
}
_ENCODER_ONLY = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


class BiEncoder(nn.Module):
    """RepBERT-style bi-encoder over any Hugging Face encoder (see the module docstring)."""

    family = "biencoder"
    roles = ("retriever", "reranker")  # re-ranking: the dot product of its embeddings on the first stage's top
    index_kind = "single_vector"  # one vector per document: a FAISS index
    SETTINGS = ("pooling", "similarity", "query_max_length", "doc_max_length", "segment_ids")

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        similarity: str = "dot",
        query_max_length: int = 20,
        doc_max_length: int = 256,
        segment_ids: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        for name, value in (("query_max_length", query_max_length), ("doc_max_length", doc_max_length)):
            if int(value) < 2:
                raise ValueError(f"{name} must be >= 2 (room for [CLS] and [SEP]), got {value}")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.similarity = similarity
        self.query_max_length = int(query_max_length)
        self.doc_max_length = int(doc_max_length)
        self.segment_ids = bool(segment_ids)
        self.uses_segment_ids = self.segment_ids and supports_token_types(encoder)
        self._forward_keys = _accepted_inputs(encoder)

    # -- facts -----------------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        """The settings saved in ``retrieval_lab.json`` (and accepted by ``from_pretrained``)."""
        return {
            "pooling": self.pooling,
            "similarity": self.similarity,
            "query_max_length": self.query_max_length,
            "doc_max_length": self.doc_max_length,
            "segment_ids": self.segment_ids,
        }

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.encoder.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def extra_repr(self) -> str:
        s = self.settings
        return ", ".join(f"{k}={v!r}" for k, v in s.items()) + f", uses_segment_ids={self.uses_segment_ids}"

    # -- tokenisation ----------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str], max_length: int, segment: int) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            padding=True,  # to the longest text of this batch, never to max_length
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batch = {k: v for k, v in batch.items() if k in self._forward_keys}
        if self.uses_segment_ids:
            # RepBERT footnote 2: segment 0 on query tokens, 1 on document tokens ([CLS]/[SEP]
            # included, as in RepBERT's code); padding keeps 0 like a BERT pair encoding.
            batch["token_type_ids"] = batch["attention_mask"].to(torch.long) * segment
        return batch

    def tokenize_queries(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Queries -> padded tensors (``query_max_length``, segment 0)."""
        return self._tokenize(texts, self.query_max_length, 0)

    def tokenize_docs(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Documents -> padded tensors (``doc_max_length``, segment 1 when segment ids are on)."""
        return self._tokenize(texts, self.doc_max_length, 1)

    # -- the model -------------------------------------------------------------------------

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[n, len, h] token vectors -> [n, h]: masked mean over real tokens, or the first ([CLS])."""
        if self.pooling == "cls":
            return hidden[:, 0].float()
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        summed = (hidden.float() * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)

    def forward_encode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised batch (from ``tokenize_queries``/``tokenize_docs``) -> embeddings [n, dim].

        The training path: gradients flow, nothing is switched. Embeddings are float32 and
        L2-normalised when ``similarity="cosine"``.
        """
        device = self.device
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in self._forward_keys}
        hidden = self.encoder(**inputs).last_hidden_state
        emb = self.pool(hidden, inputs["attention_mask"])
        if self.similarity == "cosine":
            emb = F.normalize(emb, p=2, dim=-1)
        return emb

    forward = forward_encode

    def encode(self, batch: Mapping[str, torch.Tensor]) -> Encoded:
        """The protocol's training path (:class:`~retrieval_lab.models.protocols.RetrieverFamily`): one vector
        per text, so the mask is all True."""
        return Encoded.single(self.forward_encode(batch))

    def score(self, q: torch.Tensor | Encoded, d: torch.Tensor | Encoded) -> torch.Tensor:
        """Relevance scores.

        * ``q[nq, dim]``, ``d[nd, dim]`` -> ``[nq, nd]`` (every query with every document; in-batch
          negatives in training);
        * ``q[B, dim]``, ``d[B, L, dim]`` -> ``[B, L]`` (each query with its own L candidates, the
          shape the losses take).

        ``dot``: inner product; ``cosine``: inner product of L2-normalised vectors (normalising
        again is harmless, so raw or encoded embeddings both work). :class:`Encoded` inputs are taken by
        their embeddings (a single-vector mask has nothing to hide).
        """
        q = q.embeddings if isinstance(q, Encoded) else q
        d = d.embeddings if isinstance(d, Encoded) else d
        if q.dim() == 1:
            q = q.unsqueeze(0)
        if d.dim() == 1:
            d = d.unsqueeze(0)
        if self.similarity == "cosine":
            q = F.normalize(q, p=2, dim=-1)
            d = F.normalize(d, p=2, dim=-1)
        if d.dim() == 3:
            if d.shape[0] != q.shape[0]:
                raise ValueError(f"q has {q.shape[0]} rows but d has candidates for {d.shape[0]} queries")
            return torch.einsum("bh,blh->bl", q, d)
        return q @ d.transpose(0, 1)

    # -- inference ---------------------------------------------------------------------------

    def _encode(
        self,
        texts: Sequence[str],
        tokenize: Any,
        batch_size: int,
        precision: str,
        show_progress: bool,
        desc: str,
    ) -> torch.Tensor:
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return torch.empty(0, self.dim, dtype=torch.float32)
        return batched_inference(
            self, texts, lambda batch: self.forward_encode(tokenize(batch)), batch_size=batch_size,
            precision=precision, show_progress=show_progress, desc=desc,
        )

    def encode_queries(
        self, texts: Sequence[str], batch_size: int = 64, precision: str = "fp32", show_progress: bool = False
    ) -> torch.Tensor:
        """Queries -> float32 CPU tensor [n, dim] in input order (see the module docstring)."""
        return self._encode(texts, self.tokenize_queries, batch_size, precision, show_progress, "queries")

    def encode_docs(
        self, texts: Sequence[str], batch_size: int = 32, precision: str = "fp32", show_progress: bool = True
    ) -> torch.Tensor:
        """Documents -> float32 CPU tensor [n, dim] in input order (see the module docstring)."""
        return self._encode(texts, self.tokenize_docs, batch_size, precision, show_progress, "documents")

    def score_pairs(
        self,
        queries: Sequence[str],
        docs: Sequence[str],
        batch_size: int = 64,
        precision: str = "fp32",
        show_progress: bool = False,
    ) -> torch.Tensor:
        """Re-ranking: ``score(queries[i], docs[i])`` for each pair -> float32 ``[n]``. Each distinct query and
        document is encoded once."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        uq = list(dict.fromkeys(queries))
        ud = list(dict.fromkeys(docs))
        q = self.encode_queries(uq, batch_size=batch_size, precision=precision, show_progress=False)
        d = self.encode_docs(ud, batch_size=batch_size, precision=precision, show_progress=show_progress)
        q_pos = {text: i for i, text in enumerate(uq)}
        d_pos = {text: i for i, text in enumerate(ud)}
        qi = torch.tensor([q_pos[x] for x in queries], dtype=torch.long)
        di = torch.tensor([d_pos[x] for x in docs], dtype=torch.long)
        return (q[qi] * d[di]).sum(-1)  # rows are L2-normalised already when similarity="cosine"

    # -- persistence -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **overrides: Any) -> BiEncoder:
        """Load a bi-encoder from a saved checkpoint, a sentence-transformers model or a plain backbone.

        Settings come from, in increasing priority: the defaults (RepBERT: mean pooling, dot,
        20/256 tokens, segment ids on); what the folder says about itself -- a retrieval-lab
        checkpoint's ``retrieval_lab.json``, or for a sentence-transformers folder (such as the
        default all-MiniLM-L6-v2) the pooling, normalisation (-> cosine) and max_seq_length it
        was trained with, with segment ids off as sentence-transformers uses segment 0
        everywhere; then ``overrides`` (a ``None`` override means "not set").

        Raises :class:`~retrieval_lab.models.backbone.FamilyMismatchError` for a checkpoint of
        another family and :class:`~retrieval_lab.models.backbone.BackboneError` for a name the
        Hub cannot serve, or for a trained sequence classifier not saved by this project (a Hub
        cross-encoder: its config.json's ``architectures`` ends in ``ForSequenceClassification``),
        whose head the bi-encoder would ignore. A T5 (or a saved ``T5EncoderModel``) loads its encoder.
        """
        from transformers import AutoConfig, AutoTokenizer

        overrides = given_settings("BiEncoder", overrides, _DEFAULTS)
        path = resolve_backbone(name_or_path)
        saved = family_settings(path, cls.family, cls.__name__) or _sentence_transformers_settings(path)
        settings = {**_DEFAULTS, **saved, **overrides}

        config = load_pretrained(AutoConfig.from_pretrained, path)
        _check_not_a_classifier(config, os.fspath(name_or_path))
        encoder_cls = _encoder_class(config, path)
        encoder = load_pretrained(encoder_cls.from_pretrained, path, dtype=torch.float32)
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path)
        return cls(encoder, tokenizer, **settings)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write backbone (safetensors) + tokenizer + ``retrieval_lab.json`` into ``path``."""
        save_family(path, self.encoder, self.tokenizer, self.family, self.settings)


def _accepted_inputs(encoder: nn.Module) -> frozenset[str]:
    import inspect

    params = inspect.signature(encoder.forward).parameters
    return frozenset(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in params)


def _check_not_a_classifier(config: Any, name: str) -> None:
    """Stop on a checkpoint that was not saved by this project and is not an encoder to embed with: a trained
    sequence classifier (a cross-encoder from the Hub, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2), recognised from
    its config.json ``architectures``. A plain backbone (``BertModel``, ``BertForMaskedLM``, a sentence-transformers
    folder) and a T5 (its encoder is used, see `_encoder_class`) pass."""
    heads = [a for a in (getattr(config, "architectures", None) or []) if str(a).endswith("ForSequenceClassification")]
    if heads:
        labels = int(getattr(config, "num_labels", 0) or 0)
        raise BackboneError(
            f"{name!r} is a {heads[0]} (a trained classifier head, {labels} label(s), model_type "
            f"{getattr(config, 'model_type', '?')!r}): as a retriever the bi-encoder would embed with its encoder and "
            "ignore the head, so its rankings would mean nothing. Use it as a reranker "
            f"(reranker=cross_encoder reranker.model={name}), or pass the plain encoder it was trained from "
            "(a BertModel / sentence-transformers folder or Hub name) as retriever.model"
        )


def _encoder_class(config: Any, path: str) -> Any:
    import transformers

    model_type = getattr(config, "model_type", "")
    if model_type in _ENCODER_ONLY:  # a T5ForConditionalGeneration or a saved T5EncoderModel: the encoder alone
        return getattr(transformers, _ENCODER_ONLY[model_type])
    if not getattr(config, "is_encoder_decoder", False):
        return transformers.AutoModel
    name = _ENCODER_ONLY.get(model_type)
    if name is None:
        raise BackboneError(
            f"{path!r} is an encoder-decoder ({config.model_type}); the bi-encoder needs an encoder "
            f"and knows the encoder-only classes of {sorted(_ENCODER_ONLY)}"
        )
    return getattr(transformers, name)


def _sentence_transformers_settings(path: str) -> dict[str, Any]:
    """Pooling / normalisation / max length of a local sentence-transformers folder ({} if none)."""
    root = Path(path)
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return {}
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    settings: dict[str, Any] = {"segment_ids": False, "similarity": "dot"}
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            pooling_file = root / module.get("path", "") / "config.json"
            if pooling_file.is_file():
                pool = json.loads(pooling_file.read_text(encoding="utf-8"))
                if pool.get("pooling_mode_cls_token"):
                    settings["pooling"] = "cls"
                elif pool.get("pooling_mode_mean_tokens"):
                    settings["pooling"] = "mean"
                else:
                    raise BackboneError(
                        f"{pooling_file} asks for a pooling the bi-encoder lacks ({pool}); it knows {POOLINGS}"
                    )
        elif kind.endswith("Normalize"):
            settings["similarity"] = "cosine"
    st_config = root / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        if max_len:
            settings["query_max_length"] = settings["doc_max_length"] = int(max_len)
    return settings
