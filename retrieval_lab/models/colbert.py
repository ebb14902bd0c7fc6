"""ColBERT (Khattab & Zaharia, SIGIR 2020): late interaction over token embeddings.

    E_q = Normalize(Linear(BERT("[CLS] [Q] q_1 .. q_l [MASK] .. [MASK]")))     Nq vectors (query augmentation)
    E_d = Filter(Normalize(Linear(BERT("[CLS] [D] d_1 .. d_n [SEP]"))))        punctuation filtered out
    S(q, d) = sum over i of max over j of  E_q[i] . E_d[j]                     MaxSim (section 3.1-3.2)

* One shared encoder for queries and documents; the markers ``[Q]`` / ``[D]`` right after ``[CLS]`` are new
  tokens (their embeddings are trained from scratch) that tell the encoder which input it reads.
* Queries are padded with ``[MASK]`` to ``Nq`` tokens (32) and truncated beyond: the masks do not take part in the
  encoder's attention, but their output embeddings are query vectors ("query augmentation", section 3.2: a soft,
  differentiable query expansion). ``query_augmentation=False`` pads as usual and masks the padding out (ablation
  [C]).
* Documents are cut at ``doc_max_length`` tokens (180) and not padded beyond their batch's longest; the embeddings
  of punctuation tokens (and of padding) are dropped: their mask is False.
* A linear layer without activation maps the encoder's hidden size to ``dim`` (m = 128), then each vector is
  L2-normalised, so a dot product is a cosine. ``similarity="l2"`` scores with the negative squared L2 distance
  instead (the paper's end-to-end set-up, section 3.6). ``interaction="avgsim"`` replaces the max over document
  tokens by their mean (ablation [B]).

Every embedding tensor comes with its mask (:class:`~retrieval_lab.models.protocols.Encoded`): a padded position
never scores, also after a cross-device gather.

Status: this file is the model family (tokenisation, encoding, exact MaxSim, save/load). The token index, the
end-to-end FAISS retrieval and the ``retriever=colbert`` preset plug in through the registry and
``retrievers/model.py:INDEX_KINDS`` next.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from retrieval_lab.models.backbone import (
    family_settings,
    given_settings,
    load_pretrained,
    resolve_backbone,
    save_family,
)
from retrieval_lab.models.inference import batched_inference
from retrieval_lab.models.protocols import Encoded

__all__ = ["ColBERT", "maxsim"]

Q_MARKER, D_MARKER = "[Q]", "[D]"
LINEAR_FILE = "colbert_linear.safetensors"
INTERACTIONS = ("maxsim", "avgsim")
SIMILARITIES = ("cosine", "l2")
_DEFAULTS: dict[str, Any] = {
    "dim": 128,
    "query_max_length": 32,
    "doc_max_length": 180,
    "query_augmentation": True,
    "similarity": "cosine",
    "interaction": "maxsim",
    "mask_punctuation": True,
}


def maxsim(q: Encoded, d: Encoded, similarity: str = "cosine", interaction: str = "maxsim") -> torch.Tensor:
    """Late-interaction scores ``[nq, nd]`` of every query against every document.

    ``q.embeddings [nq, Tq, m]`` with ``q.mask [nq, Tq]``; ``d.embeddings [nd, Td, m]`` with ``d.mask [nd, Td]``.
    For each query vector, the max (``maxsim``) or mean (``avgsim``) of its similarity over the document's real
    vectors; summed over the query's real vectors. A document without any real vector scores 0 on every query.
    """
    if interaction not in INTERACTIONS:
        raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
    qe, de = q.embeddings.float(), d.embeddings.float()
    sim = torch.einsum("aim,bjm->abij", qe, de)  # [nq, nd, Tq, Td]
    if similarity == "l2":  # -|q - d|^2 = 2 q.d - |q|^2 - |d|^2
        sim = 2 * sim - (qe * qe).sum(-1)[:, None, :, None] - (de * de).sum(-1)[None, :, None, :]
    elif similarity != "cosine":
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    dmask = d.mask[None, :, None, :].to(sim.device)
    if interaction == "maxsim":
        per_token = sim.masked_fill(~dmask, float("-inf")).amax(dim=-1)
        per_token = torch.where(torch.isfinite(per_token), per_token, torch.zeros_like(per_token))
    else:
        count = dmask.sum(-1).clamp(min=1)
        per_token = sim.masked_fill(~dmask, 0.0).sum(-1) / count
    return (per_token * q.mask[:, None, :].to(per_token.dtype)).sum(-1)


class ColBERT(nn.Module):
    """ColBERT over any BERT-style Hugging Face encoder (see the module docstring)."""

    family = "colbert"
    roles = ("retriever", "reranker")
    index_kind = "multi_vector"  # one vector per token: a token index
    SETTINGS = tuple(_DEFAULTS)

    def __init__(self, encoder: nn.Module, tokenizer: Any, linear: nn.Linear | None = None, **settings: Any) -> None:
        super().__init__()
        s = {**_DEFAULTS, **settings}
        if s["interaction"] not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {s['interaction']!r}")
        if s["similarity"] not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {s['similarity']!r}")
        for key in ("query_max_length", "doc_max_length"):
            if int(s[key]) < 4:
                raise ValueError(f"{key} must be >= 4 ([CLS], marker, a token, [SEP]), got {s[key]}")
        if int(s["dim"]) < 1:
            raise ValueError(f"dim must be >= 1, got {s['dim']}")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.dim = int(s["dim"])
        self.query_max_length = int(s["query_max_length"])
        self.doc_max_length = int(s["doc_max_length"])
        self.query_augmentation = bool(s["query_augmentation"])
        self.similarity = str(s["similarity"])
        self.interaction = str(s["interaction"])
        self.mask_punctuation = bool(s["mask_punctuation"])
        self._add_markers()
        self.linear = linear if linear is not None else nn.Linear(encoder.config.hidden_size, self.dim, bias=False)
        if self.linear.out_features != self.dim:
            raise ValueError(f"the saved linear layer maps to {self.linear.out_features} dimensions, not dim={self.dim}")
        self._skip_ids = torch.tensor(sorted(self._punctuation_ids()), dtype=torch.long)

    # -- facts -----------------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        return {"dim": self.dim, "query_max_length": self.query_max_length, "doc_max_length": self.doc_max_length,
                "query_augmentation": self.query_augmentation, "similarity": self.similarity,
                "interaction": self.interaction, "mask_punctuation": self.mask_punctuation}

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def _add_markers(self) -> None:
        """[Q] and [D] as new tokens (new embedding rows, trained from scratch) unless the tokenizer has them."""
        missing = [m for m in (Q_MARKER, D_MARKER) if m not in self.tokenizer.get_vocab()]
        if missing:
            self.tokenizer.add_special_tokens({"additional_special_tokens": missing})
            self.encoder.resize_token_embeddings(len(self.tokenizer))
        self.q_marker_id = self.tokenizer.convert_tokens_to_ids(Q_MARKER)
        self.d_marker_id = self.tokenizer.convert_tokens_to_ids(D_MARKER)

    def _punctuation_ids(self) -> set[int]:
        if not self.mask_punctuation:
            return set()
        ids = set()
        for symbol in string.punctuation:
            ids.update(self.tokenizer.encode(symbol, add_special_tokens=False))
        return ids - {self.tokenizer.unk_token_id}

    # -- tokenisation ----------------------------------------------------------------------

    def _with_marker(self, texts: Sequence[str], marker: int, max_length: int, pad_to: int | None):
        """``[CLS] marker tokens [SEP]`` per text, cut at ``max_length`` in all, padded to the batch's longest (or
        to ``pad_to``). Returns input ids and attention mask."""
        body = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length - 3)
        cls, sep, pad = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id
        rows = [[cls, marker, *ids, sep] for ids in body["input_ids"]]
        length = pad_to or max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
        return input_ids, attention

    def tokenize_queries(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Queries -> ``[CLS] [Q] q [SEP]`` padded with ``[MASK]`` to ``query_max_length`` (augmentation), or with
        padding to the batch's longest. ``score_mask`` says which output vectors are query vectors."""
        n = self.query_max_length
        input_ids, attention = self._with_marker(texts, self.q_marker_id, n, n if self.query_augmentation else None)
        if self.query_augmentation:
            input_ids[attention == 0] = self.tokenizer.mask_token_id
            score_mask = torch.ones_like(attention, dtype=torch.bool)  # the [MASK]s are query vectors too
        else:
            score_mask = attention.bool()
        return {"input_ids": input_ids, "attention_mask": attention, "score_mask": score_mask}

    def tokenize_docs(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Documents -> ``[CLS] [D] d [SEP]`` (at most ``doc_max_length`` tokens); ``score_mask`` drops padding and
        punctuation."""
        input_ids, attention = self._with_marker(texts, self.d_marker_id, self.doc_max_length, None)
        score_mask = attention.bool()
        if len(self._skip_ids):
            score_mask &= ~torch.isin(input_ids, self._skip_ids)
        return {"input_ids": input_ids, "attention_mask": attention, "score_mask": score_mask}

    # -- the model -------------------------------------------------------------------------

    def encode(self, batch: Mapping[str, torch.Tensor]) -> Encoded:
        """Tokenised batch -> normalised token vectors ``[n, T, dim]`` with their mask (the training path)."""
        device = self.device
        hidden = self.encoder(input_ids=batch["input_ids"].to(device),
                              attention_mask=batch["attention_mask"].to(device)).last_hidden_state
        emb = F.normalize(self.linear(hidden).float(), p=2, dim=-1)
        mask = batch["score_mask"].to(device)
        return Encoded(emb * mask.unsqueeze(-1), mask)

    def score(self, q: Encoded, d: Encoded) -> torch.Tensor:
        """``[nq, nd]`` late-interaction scores (:func:`maxsim`)."""
        return maxsim(q, d, self.similarity, self.interaction)

    # -- inference ---------------------------------------------------------------------------

    def _encode_ragged(self, texts, tokenize, batch_size, precision, show_progress, desc) -> list[torch.Tensor]:
        def run(batch):
            enc = self.encode(tokenize(batch))
            return [e[m].to("cpu", torch.float32) for e, m in zip(enc.embeddings, enc.mask)]

        return batched_inference(self, list(texts), run, batch_size=batch_size, precision=precision,
                                 show_progress=show_progress, desc=desc, stack=False)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, precision: str = "fp32",
                       show_progress: bool = False) -> list[torch.Tensor]:
        """Queries -> one float32 ``[Tq_i, dim]`` tensor each (the query's vectors), in input order."""
        return self._encode_ragged(texts, self.tokenize_queries, batch_size, precision, show_progress, "queries")

    def encode_docs(self, texts: Sequence[str], batch_size: int = 32, precision: str = "fp32",
                    show_progress: bool = True) -> list[torch.Tensor]:
        """Documents -> one float32 ``[n_i, dim]`` tensor each (real, non-punctuation tokens), in input order."""
        return self._encode_ragged(texts, self.tokenize_docs, batch_size, precision, show_progress, "documents")

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str], batch_size: int = 32,
                    precision: str = "fp32", show_progress: bool = False) -> torch.Tensor:
        """Re-ranking: the score of ``(queries[i], docs[i])`` for each pair -> float32 ``[n]``; every distinct text
        is encoded once."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        uq, ud = list(dict.fromkeys(queries)), list(dict.fromkeys(docs))
        qv = dict(zip(uq, self.encode_queries(uq, batch_size, precision)))
        dv = dict(zip(ud, self.encode_docs(ud, batch_size, precision, show_progress)))
        def one(vectors: torch.Tensor) -> Encoded:
            return Encoded(vectors[None], torch.ones(1, len(vectors), dtype=torch.bool))

        out = torch.empty(len(queries), dtype=torch.float32)
        for i, (q, d) in enumerate(zip(queries, docs)):
            out[i] = maxsim(one(qv[q]), one(dv[d]), self.similarity, self.interaction)[0, 0]
        return out

    # -- persistence -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **overrides: Any) -> ColBERT:
        """A saved ColBERT (encoder + tokenizer with the markers + the linear layer), or a plain BERT-style backbone
        (markers added, linear layer initialised randomly)."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        overrides = given_settings("ColBERT", overrides, _DEFAULTS)
        path = resolve_backbone(name_or_path)
        settings = {**_DEFAULTS, **family_settings(path, cls.family, cls.__name__), **overrides}
        encoder = load_pretrained(AutoModel.from_pretrained, path, dtype=torch.float32)
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path)
        linear = None
        file = Path(path) / LINEAR_FILE
        if file.is_file():
            weight = load_file(str(file))["weight"]
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            with torch.no_grad():
                linear.weight.copy_(weight)
        return cls(encoder, tokenizer, linear, **settings)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Encoder (safetensors) + tokenizer (with [Q]/[D]) + the linear layer + ``retrieval_lab.json``."""
        from safetensors.torch import save_file

        Path(path).mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.linear.weight.detach().contiguous().cpu()}, str(Path(path) / LINEAR_FILE))
        save_family(path, self.encoder, self.tokenizer, self.family, self.settings)
