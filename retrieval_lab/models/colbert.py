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

Ablations of section 4.4 (Figure 5), each a setting:

* [A] ``single_vector=True``: the "[CLS]-based dot product" model. The encoder's [CLS] output goes through its own
  linear layer (no bias) to ``query_max_length * dim`` dimensions (Nq * m = 32 * 128 = 4096), not normalised;
  the score is the plain dot product (the paper found it better than cosine for a single vector). One vector per
  text, so ``index_kind`` is ``"single_vector"`` (the FAISS index); ``similarity`` and ``interaction`` do not apply.
* [B] ``interaction="avgsim"``: the mean over document tokens instead of the max.
* [C] ``query_augmentation=False``: queries padded as usual, the padding masked out (no [MASK] query vectors).
* [D] ``num_layers=k``: only the first k transformer layers of the encoder (the paper's ablations use 5 of 12).
* ``dim``: the size m of the token vectors (128; the paper's space/quality trade-off also tries 24 to 128).

Where the rest lives: this file is the model family (tokenisation, encoding, exact MaxSim for training, save/load),
registered as ``colbert`` in :data:`~retrieval_lab.models.registry.FAMILIES`. Offline indexing (section 3.4) writes
every document's vectors into the memory-mapped token store (``indexes/token_store.py``); re-ranking (3.5) scores
the first stage's top-k against the store (``rerankers/model.py``); end-to-end retrieval (3.6: FAISS IVFPQ
candidates, exact MaxSim) and exhaustive MaxSim are ``indexes/multi_vector.py``, wired through
``retrievers/model.py:INDEX_KINDS["multi_vector"]``. A fresh model's new weights come from a fixed generator
(:data:`INIT_SEED`), so an untrained ColBERT is the same model in every process and run.
"""

from __future__ import annotations

import logging
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
    pad_rows,
    resolve_backbone,
    save_family,
)
from retrieval_lab.models.inference import batched_inference
from retrieval_lab.models.protocols import Encoded

__all__ = ["ColBERT", "maxsim", "keep_first_layers"]

log = logging.getLogger(__name__)

Q_MARKER, D_MARKER = "[Q]", "[D]"
LINEAR_FILE = "colbert_linear.safetensors"  # "weight": token linear layer; "cls_weight": [A]'s [CLS] linear layer
INIT_SEED = 12345  # the generator of a fresh ColBERT's new weights (see ColBERT.__init__)
CLS_KEY = "cls_weight"
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
    "single_vector": False,
    "num_layers": None,
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


def keep_first_layers(encoder: nn.Module, k: int) -> nn.Module:
    """Keep only the first ``k`` transformer layers of a BERT-style encoder (``encoder.encoder.layer``, an
    ``nn.ModuleList``), in place; ``config.num_hidden_layers`` becomes ``k`` so that ``save_pretrained`` writes a
    config that reloads with ``k`` layers. ``k`` equal to the current count changes nothing (a saved cut model
    loaded again). Ablation [D]."""
    config = getattr(encoder, "config", None)
    model_type = getattr(config, "model_type", None) or type(encoder).__name__
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"num_layers needs a BERT-style encoder whose layers are encoder.layer (a list); this "
                         f"{model_type!r} backbone ({type(encoder).__name__}) has none")
    have = len(layers)
    if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= have:
        raise ValueError(f"num_layers must be between 1 and {have} (the layers this {model_type!r} backbone has), "
                         f"got {k!r}")
    k = int(k)
    if k < have:
        encoder.encoder.layer = nn.ModuleList(list(layers)[:k])
    encoder.config.num_hidden_layers = k
    return encoder


class ColBERT(nn.Module):
    """ColBERT over any BERT-style Hugging Face encoder (see the module docstring).

    ``default_temperature`` is 1: the paper trains on raw MaxSim scores (no temperature), and the training stage
    reads this attribute when its config sets none.
    """

    family = "colbert"
    roles = ("retriever", "reranker")
    index_kind = "multi_vector"  # one vector per token: a token index; "single_vector" on an instance with [A]
    default_temperature = 1.0  # raw MaxSim (or [A]'s dot product) scores in the softmax, as the paper trains
    SETTINGS = tuple(_DEFAULTS)

    def __init__(self, encoder: nn.Module, tokenizer: Any, linear: nn.Linear | None = None,
                 cls_linear: nn.Linear | None = None, **settings: Any) -> None:
        """``linear`` maps token vectors to ``dim`` (multi-vector), ``cls_linear`` the [CLS] vector to
        ``query_max_length * dim`` ([A], ``single_vector=True``); the one the mode needs is created (random) when
        not given, the other is kept only when given. ``num_layers`` cuts ``encoder`` in place."""
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
        if s["num_layers"] is not None:
            keep_first_layers(encoder, s["num_layers"])
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.dim = int(s["dim"])
        self.query_max_length = int(s["query_max_length"])
        self.doc_max_length = int(s["doc_max_length"])
        self.query_augmentation = bool(s["query_augmentation"])
        self.similarity = str(s["similarity"])
        self.interaction = str(s["interaction"])
        self.mask_punctuation = bool(s["mask_punctuation"])
        self.single_vector = bool(s["single_vector"])
        self.num_layers = None if s["num_layers"] is None else int(s["num_layers"])
        self.index_kind = "single_vector" if self.single_vector else "multi_vector"
        hidden = encoder.config.hidden_size
        # New weights (the [Q]/[D] embedding rows, the linear layer) come from a fixed generator, not the global
        # one: an untrained ColBERT is then a function of its backbone and settings, which is what the caches of its
        # token store key on, and a retriever and a re-ranker loading the same backbone get the same model.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self._add_markers()
            if linear is None and not self.single_vector:
                linear = nn.Linear(hidden, self.dim, bias=False)
            if cls_linear is None and self.single_vector:
                cls_linear = nn.Linear(hidden, self.single_dim, bias=False)
        self.linear = linear  # None in single-vector mode unless given: no parameter that never gets a gradient
        self.cls_linear = cls_linear
        if self.linear is not None and self.linear.out_features != self.dim:
            raise ValueError(f"the saved linear layer maps to {self.linear.out_features} dimensions, not dim={self.dim}")
        if self.cls_linear is not None and self.cls_linear.out_features != self.single_dim:
            raise ValueError(f"the saved [CLS] linear layer maps to {self.cls_linear.out_features} dimensions, not "
                             f"query_max_length * dim = {self.query_max_length} * {self.dim} = {self.single_dim}")
        self._skip_ids = torch.tensor(sorted(self._punctuation_ids()), dtype=torch.long)

    # -- facts -----------------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        return {"dim": self.dim, "query_max_length": self.query_max_length, "doc_max_length": self.doc_max_length,
                "query_augmentation": self.query_augmentation, "similarity": self.similarity,
                "interaction": self.interaction, "mask_punctuation": self.mask_punctuation,
                "single_vector": self.single_vector, "num_layers": self.num_layers}

    @property
    def single_dim(self) -> int:
        """Size of the single vector of ablation [A]: ``query_max_length * dim`` (Nq * m, 4096 in the paper)."""
        return self.query_max_length * self.dim

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
        to ``pad_to``). Returns input ids, attention mask and which texts were cut (bool ``[n]``)."""
        room = max_length - 3
        # one token more than fits: a body longer than ``room`` was cut
        body = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=room + 1)
        cut = torch.tensor([len(ids) > room for ids in body["input_ids"]], dtype=torch.bool)
        cls, sep, pad = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id
        rows = [[cls, marker, *ids[:room], sep] for ids in body["input_ids"]]
        input_ids, attention = pad_rows(rows, pad, pad_to)
        return input_ids, attention, cut

    def tokenize_queries(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Queries -> ``[CLS] [Q] q [SEP]`` padded with ``[MASK]`` to ``query_max_length`` (augmentation), or with
        padding to the batch's longest. ``score_mask`` says which output vectors are query vectors; ``truncated``
        (bool ``[n]``) which queries were longer than ``query_max_length - 3`` tokens and were cut."""
        n = self.query_max_length
        input_ids, attention, cut = self._with_marker(texts, self.q_marker_id, n,
                                                      n if self.query_augmentation else None)
        if self.query_augmentation:
            input_ids[attention == 0] = self.tokenizer.mask_token_id
            score_mask = torch.ones_like(attention, dtype=torch.bool)  # the [MASK]s are query vectors too
        else:
            score_mask = attention.bool()
        return {"input_ids": input_ids, "attention_mask": attention, "score_mask": score_mask, "truncated": cut}

    def tokenize_docs(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Documents -> ``[CLS] [D] d [SEP]`` (at most ``doc_max_length`` tokens); ``score_mask`` drops padding and
        punctuation."""
        input_ids, attention, _ = self._with_marker(texts, self.d_marker_id, self.doc_max_length, None)
        score_mask = attention.bool()
        if len(self._skip_ids):
            score_mask &= ~torch.isin(input_ids, self._skip_ids)
        return {"input_ids": input_ids, "attention_mask": attention, "score_mask": score_mask}

    # -- the model -------------------------------------------------------------------------

    def encode(self, batch: Mapping[str, torch.Tensor]) -> Encoded:
        """Tokenised batch -> normalised token vectors ``[n, T, dim]`` with their mask (the training path); with
        ``single_vector`` ([A]) the [CLS] vector through ``cls_linear``, not normalised: ``Encoded.single([n,
        query_max_length * dim])``."""
        device = self.device
        hidden = self.encoder(input_ids=batch["input_ids"].to(device),
                              attention_mask=batch["attention_mask"].to(device)).last_hidden_state
        if self.single_vector:
            return Encoded.single(self.cls_linear(hidden[:, 0]).float())
        emb = F.normalize(self.linear(hidden).float(), p=2, dim=-1)
        mask = batch["score_mask"].to(device)
        return Encoded(emb * mask.unsqueeze(-1), mask)

    def score(self, q: Encoded, d: Encoded) -> torch.Tensor:
        """``[nq, nd]`` late-interaction scores (:func:`maxsim`); with ``single_vector`` ([A]) the dot products of
        the single vectors."""
        if self.single_vector:
            return q.embeddings.float() @ d.embeddings.float().T
        return maxsim(q, d, self.similarity, self.interaction)

    # -- inference ---------------------------------------------------------------------------

    def _encode_ragged(self, texts, tokenize, batch_size, precision, show_progress, desc) -> list[torch.Tensor]:
        def run(batch):
            enc = self.encode(tokenize(batch))
            return [e[m].to("cpu", torch.float32) for e, m in zip(enc.embeddings, enc.mask)]

        return batched_inference(self, list(texts), run, batch_size=batch_size, precision=precision,
                                 show_progress=show_progress, desc=desc, stack=False)

    def _encode_single(self, texts, tokenize, batch_size, precision, show_progress, desc) -> torch.Tensor:
        texts = list(texts)
        if not texts:
            return torch.empty(0, self.single_dim, dtype=torch.float32)
        return batched_inference(self, texts, lambda batch: self.encode(tokenize(batch)).embeddings,
                                 batch_size=batch_size, precision=precision, show_progress=show_progress,
                                 desc=desc, stack=True)

    def _encode(self, texts, tokenize, batch_size, precision, show_progress, desc):
        encode = self._encode_single if self.single_vector else self._encode_ragged
        return encode(texts, tokenize, batch_size, precision, show_progress, desc)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, precision: str = "fp32",
                       show_progress: bool = False) -> list[torch.Tensor] | torch.Tensor:
        """Queries -> one float32 ``[Tq_i, dim]`` tensor each (the query's vectors), in input order; with
        ``single_vector`` one float32 tensor ``[n, query_max_length * dim]``. One warning per call says how many
        queries were longer than ``query_max_length`` and were truncated."""
        cut: list[str] = []

        def tokenize(batch: list[str]) -> dict[str, torch.Tensor]:
            tok = self.tokenize_queries(batch)
            cut.extend(t for t, c in zip(batch, tok["truncated"].tolist()) if c)
            return tok

        out = self._encode(texts, tokenize, batch_size, precision, show_progress, "queries")
        if cut:
            first = cut[0] if len(cut[0]) <= 60 else cut[0][:60].rstrip() + "..."
            log.warning("ColBERT: %d of %d queries are longer than query_max_length=%d tokens and were truncated "
                        "(e.g. %r)", len(cut), len(texts), self.query_max_length, first)
        return out

    def encode_docs(self, texts: Sequence[str], batch_size: int = 32, precision: str = "fp32",
                    show_progress: bool = True) -> list[torch.Tensor] | torch.Tensor:
        """Documents -> one float32 ``[n_i, dim]`` tensor each (real, non-punctuation tokens), in input order; with
        ``single_vector`` one float32 tensor ``[n, query_max_length * dim]``."""
        return self._encode(texts, self.tokenize_docs, batch_size, precision, show_progress, "documents")

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str], batch_size: int = 32,
                    precision: str = "fp32", show_progress: bool = False) -> torch.Tensor:
        """Re-ranking: the score of ``(queries[i], docs[i])`` for each pair -> float32 ``[n]``; every distinct text
        is encoded once."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        uq, ud = list(dict.fromkeys(queries)), list(dict.fromkeys(docs))
        if self.single_vector:  # dot products of the single vectors
            q = self.encode_queries(uq, batch_size, precision)
            d = self.encode_docs(ud, batch_size, precision, show_progress)
            q_pos, d_pos = {t: i for i, t in enumerate(uq)}, {t: i for i, t in enumerate(ud)}
            qi = torch.tensor([q_pos[x] for x in queries], dtype=torch.long)
            di = torch.tensor([d_pos[x] for x in docs], dtype=torch.long)
            return (q[qi] * d[di]).sum(-1)
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
        """A saved ColBERT (encoder + tokenizer with the markers + the linear layer(s)), or a plain BERT-style
        backbone (markers added, linear layer initialised randomly). ``num_layers`` cuts the loaded encoder (a
        saved cut model has that many layers already: no change)."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        overrides = given_settings("ColBERT", overrides, _DEFAULTS)
        path = resolve_backbone(name_or_path)
        settings = {**_DEFAULTS, **family_settings(path, cls.family, cls.__name__), **overrides}
        encoder = load_pretrained(AutoModel.from_pretrained, path, dtype=torch.float32)
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path)
        saved: dict[str, torch.Tensor] = {}
        file = Path(path) / LINEAR_FILE
        if file.is_file():
            saved = load_file(str(file))
        # only the layer this mode uses (a multi-vector checkpoint loaded as [A] gets a new [CLS] layer, and back)
        single = bool(settings["single_vector"])
        linear = None if single else _linear(saved.get("weight"))
        cls_linear = _linear(saved.get(CLS_KEY)) if single else None
        return cls(encoder, tokenizer, linear, cls_linear, **settings)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Encoder (safetensors) + tokenizer (with [Q]/[D]) + the linear layer(s) + ``retrieval_lab.json``."""
        from safetensors.torch import save_file

        Path(path).mkdir(parents=True, exist_ok=True)
        weights = {key: layer.weight.detach().contiguous().cpu()
                   for key, layer in (("weight", self.linear), (CLS_KEY, self.cls_linear)) if layer is not None}
        save_file(weights, str(Path(path) / LINEAR_FILE))
        save_family(path, self.encoder, self.tokenizer, self.family, self.settings)


def _linear(weight: torch.Tensor | None) -> nn.Linear | None:
    """A bias-free linear layer holding a saved ``[out, in]`` weight (None for None)."""
    if weight is None:
        return None
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear
