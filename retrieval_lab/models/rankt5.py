"""RankT5 (Zhuang et al., SIGIR 2023): T5 as a ranker that outputs a score, not text.

    input  = "Query: {q} Document: {d}"                        (no "Relevant:" suffix, as in the paper)
    EncDec:  score = the unnormalised logit of one vocabulary token (``<extra_id_10>``) at the first decoder step
    Enc:     score = Dense(Pool(Encoder(input)))               (the first token's output by default, or the mean)

* Truncation cuts only the document: the template words and the query always survive (a peer that cuts the whole
  string can lose the document marker, or in monoT5 the "Relevant:" suffix).
* EncDec computes only the one logit it needs: the decoder's first hidden state times that token's row of the output
  embedding (scaled by ``d_model ** -0.5`` when the model says so, as ``T5ForConditionalGeneration`` does with tied
  embeddings), never the full-vocabulary projection and no generation.

monoT5 (Nogueira et al., 2020), the generation baseline (:class:`MonoT5`): ``Query: {q} Document: {d} Relevant:``,
the decoder trained to say ``true`` or ``false``; the score is the log-probability of ``true`` from the softmax
over those two logits alone.

Loading and saving: :meth:`RankT5.from_pretrained` takes any Hugging Face T5 checkpoint (t5-small/base/large,
flan-t5, a monoT5, a folder saved here). The EncDec variant loads ``T5ForConditionalGeneration`` (or its mT5/umT5
twin); the Enc variant loads the encoder alone (``T5EncoderModel``: a T5 checkpoint's decoder is not loaded) plus a
dense head, saved beside it as ``rankt5_head.safetensors``. ``retrieval_lab.json`` records the family and its settings.

The last step of every score is computed in float32 with autocast off (the Enc head; EncDec's product of the
decoder state with the token's row; monoT5's two-way softmax): a bf16-mixed run rounds the T5 stack (encoder and
decoder run under autocast), never the scores the loss sees.

Presets: ``reranker=rankt5`` (``reranker.variant=encdec|enc``), ``rankt5_encdec``, ``rankt5_enc``, ``monot5``.

Example::

    model = RankT5.from_pretrained("tests/fixtures/models/tiny-t5", variant="encdec")
    model.score_pairs(["what causes rain?"] * 2, ["Warm air rises.", "The cat sat."])  # Tensor[2]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from retrieval_lab.models.backbone import (
    BackboneError,
    Float32Linear,
    autocast_off,
    family_settings,
    given_settings,
    load_pretrained,
    pad_rows,
    resolve_backbone,
    save_family,
)
from retrieval_lab.models.inference import batched_inference

__all__ = ["RankT5", "MonoT5", "VARIANTS", "POOLINGS", "HEAD_FILE", "INIT_SEED"]

log = logging.getLogger(__name__)

VARIANTS = ("encdec", "enc")
POOLINGS = ("first", "mean")
HEAD_FILE = "rankt5_head.safetensors"  # the Enc variant's dense layer, beside the encoder's weights
INIT_SEED = 12345  # the generator of a fresh Enc head: an untrained RankT5-Enc is a function of its backbone

#: model_type -> (encoder-decoder class, encoder-only class) in transformers
_T5_CLASSES = {
    "t5": ("T5ForConditionalGeneration", "T5EncoderModel"),
    "mt5": ("MT5ForConditionalGeneration", "MT5EncoderModel"),
    "umt5": ("UMT5ForConditionalGeneration", "UMT5EncoderModel"),
}


class RankT5(nn.Module):
    """RankT5 over a Hugging Face T5 (see the module docstring). ``model`` is a ``T5ForConditionalGeneration`` for
    the EncDec variant, a ``T5EncoderModel`` (or a full T5, whose encoder is used) for Enc."""

    family = "rankt5"
    roles = ("reranker",)
    SETTINGS = ("variant", "max_length", "score_token", "pooling")
    DEFAULTS: dict[str, Any] = {"variant": "encdec", "max_length": 128, "score_token": "<extra_id_10>",
                                "pooling": "first"}

    def __init__(self, model: nn.Module, tokenizer: Any, head: Float32Linear | None = None, *,
                 variant: str = "encdec", max_length: int = 128, score_token: str = "<extra_id_10>",
                 pooling: str = "first") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if int(max_length) < 8:
            raise ValueError(f"max_length must be >= 8 (the template alone takes several tokens), got {max_length}")
        if variant == "encdec" and not hasattr(model, "get_decoder"):
            raise BackboneError(f"the EncDec variant needs a T5 with its decoder; got a {type(model).__name__} "
                                "(an encoder alone: use variant=enc)")
        self.model, self.tokenizer = model, tokenizer
        self.variant, self.max_length, self.score_token, self.pooling = variant, int(max_length), score_token, pooling
        token_id = tokenizer.convert_tokens_to_ids(score_token)
        if self.USES_SCORE_TOKEN and (token_id is None or token_id == tokenizer.unk_token_id):
            raise ValueError(f"score_token {score_token!r} is not in the tokenizer's vocabulary")
        self.score_token_id = int(token_id) if token_id is not None else -1
        self.queries_cut, self._warned_cut = 0, False  # queries too long for max_length on their own
        if variant == "enc" and head is None:
            head = Float32Linear(int(model.config.d_model), 1)
            with torch.no_grad():  # a fixed generator: an untrained Enc model does not depend on the global seed
                gen = torch.Generator().manual_seed(INIT_SEED)
                bound = float(model.config.d_model) ** -0.5  # nn.Linear's default init range
                head.weight.copy_(torch.empty_like(head.weight).uniform_(-bound, bound, generator=gen))
                head.bias.copy_(torch.empty_like(head.bias).uniform_(-bound, bound, generator=gen))
        self.head = head if variant == "enc" else None

    @property
    def settings(self) -> dict[str, Any]:
        return {"variant": self.variant, "max_length": self.max_length, "score_token": self.score_token,
                "pooling": self.pooling}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())

    # -- tokenisation ----------------------------------------------------------------------
    SUFFIX = ""  # text after the document (monoT5: " Relevant:")
    USES_SCORE_TOKEN = True  # monoT5 reads "true"/"false" instead

    def tokenize_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> dict[str, torch.Tensor]:
        """``Query: {q} Document: {d}`` (+ the family's suffix) + ``</s>``, at most ``max_length`` tokens, cutting
        only the document. A query too long for the budget on its own (template and suffix included) is the one
        exception: it is cut to fit, keeps ``Document:`` and the suffix, gets no document tokens, and a warning
        counts such queries."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        tok = self.tokenizer
        heads = tok([f"Query: {q} Document:" for q in queries], add_special_tokens=False)["input_ids"]
        # a document never keeps more than max_length tokens: cut there (the exact cut is below)
        bodies = tok([str(d) for d in docs], add_special_tokens=False, truncation=True,
                     max_length=self.max_length)["input_ids"]
        tail = tok(self.SUFFIX.strip(), add_special_tokens=False)["input_ids"] if self.SUFFIX else []
        rows, cut = [], 0
        marker = None
        for head, body in zip(heads, bodies):
            if len(head) + len(tail) + 1 > self.max_length:  # the query alone overflows: cut it, keep "Document:"
                if marker is None:
                    marker = tok(" Document:", add_special_tokens=False)["input_ids"]
                keep = max(self.max_length - len(marker) - len(tail) - 1, 1)
                head = head[: keep] + marker
                cut += 1
            room = max(self.max_length - len(head) - len(tail) - 1, 0)
            rows.append([*head, *body[:room], *tail, tok.eos_token_id])
        if cut:
            self.queries_cut += cut
            if not self._warned_cut:  # once per model: tokenize_pairs runs once per batch
                self._warned_cut = True
                log.warning("%s: %d of %d queries of a batch are longer than max_length=%d tokens with the template: "
                            "cut, with no document tokens left for them (warned once; the model's queries_cut counts "
                            "them)", type(self).__name__, cut, len(rows), self.max_length)
        input_ids, attention = pad_rows(rows, tok.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention}

    # -- the model -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output ``[n, T, d]`` and the attention mask, on the model's device."""
        mask = batch["attention_mask"].to(self.device)
        ids = batch["input_ids"].to(self.device)
        return self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state, mask

    def _first_decoder_state(self, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The decoder's hidden state ``[n, d]`` (float32) at its first step (from the start token), scaled as
        ``T5ForConditionalGeneration`` scales it before the output projection: a row of that projection times this
        is the token's logit."""
        start = torch.full((encoded.shape[0], 1), int(self.model.config.decoder_start_token_id), dtype=torch.long,
                           device=encoded.device)
        hidden = self.model.get_decoder()(input_ids=start, encoder_hidden_states=encoded,
                                          encoder_attention_mask=mask, use_cache=False).last_hidden_state[:, 0]
        hidden = hidden.float()
        if _scales_decoder_outputs(self.model.config):
            hidden = hidden * (self.model.model_dim ** -0.5)
        return hidden

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised pairs -> one float32 score per pair ``[n]`` (the training path)."""
        encoded, mask = self._encode(batch)
        if self.variant == "enc":  # pooled in float32; the head (Float32Linear) computes with autocast off
            if self.pooling == "first":
                pooled = encoded[:, 0].float()
            else:
                m = mask.unsqueeze(-1).float()
                pooled = (encoded.float() * m).sum(1) / m.sum(1).clamp(min=1)
            return self.head(pooled).squeeze(-1)
        hidden = self._first_decoder_state(encoded, mask)  # the decoder runs under the caller's autocast
        with autocast_off(encoded.device):
            return hidden @ self.model.get_output_embeddings().weight[self.score_token_id].float()

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str], batch_size: int = 32, precision: str = "fp32",
                    show_progress: bool = True) -> torch.Tensor:
        """Score ``(queries[i], docs[i])`` pairs -> float32 CPU tensor ``[n]`` in input order (eval mode, inference
        mode, length-sorted batches, optional bf16 autocast)."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        pairs = [(str(q), str(d)) for q, d in zip(queries, docs)]
        return batched_inference(
            self, pairs, lambda batch: self.inference_scores(self.tokenize_pairs(*zip(*batch))),
            batch_size=batch_size, precision=precision, key=lambda p: len(p[0]) + len(p[1]),
            show_progress=show_progress, desc="pairs",
        )

    def inference_scores(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What re-ranking reports for tokenised pairs: the training score (RankT5: the same)."""
        return self(batch)

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **overrides: Any) -> RankT5:
        """Load a T5 checkpoint (Hub name or folder) or a folder saved by this family.

        Settings: the family's defaults < the folder's ``retrieval_lab.json`` < ``overrides`` (``None`` = not set).
        A folder saved by another family raises :class:`~retrieval_lab.models.backbone.FamilyMismatchError`; a
        model that is not a T5 (BERT...), an EncDec request on an encoder-only folder, or a variant other than the
        one a trained folder was saved with raises :class:`~retrieval_lab.models.backbone.BackboneError` saying
        which setting to change.
        """
        import transformers
        from transformers import AutoConfig, AutoTokenizer

        overrides = given_settings(cls.__name__, overrides, cls.DEFAULTS)
        path = resolve_backbone(name_or_path)
        saved = family_settings(path, cls.family, cls.__name__)
        if "variant" in saved and "variant" in overrides and saved["variant"] != overrides["variant"]:
            raise BackboneError(
                f"{os.fspath(name_or_path)!r} is a RankT5-{_title(saved['variant'])} checkpoint; the config asks for "
                f"variant={overrides['variant']!r}. Use reranker.variant={saved['variant']} (or the rankt5_"
                f"{saved['variant']} preset) for it, or start the {overrides['variant']!r} variant from a plain T5")
        settings = {**cls.DEFAULTS, **saved, **overrides}
        config = load_pretrained(AutoConfig.from_pretrained, path)
        model_type = str(getattr(config, "model_type", ""))
        if model_type not in _T5_CLASSES:
            raise BackboneError(
                f"{os.fspath(name_or_path)!r} is a {model_type or 'non-T5'} model; {cls.__name__} needs a T5 checkpoint "
                f"(model_type one of {sorted(_T5_CLASSES)}: t5-base, google/flan-t5-base, castorini/monot5-base-msmarco, "
                "or a folder saved here). A BERT-style reranker is reranker=cross_encoder")
        archs = [str(a) for a in (getattr(config, "architectures", None) or [])]
        encdec_name, enc_name = _T5_CLASSES[model_type]
        variant = settings.get("variant", "encdec")
        if variant == "encdec" and archs and all(a.endswith("EncoderModel") for a in archs):
            raise BackboneError(f"{os.fspath(name_or_path)!r} holds a T5 encoder only ({archs[0]}): the EncDec variant "
                                "needs the decoder. Use variant=enc (reranker=rankt5_enc), or a full T5 checkpoint")
        loader = getattr(transformers, encdec_name if variant == "encdec" else enc_name)
        model = load_pretrained(loader.from_pretrained, path, dtype=torch.float32)
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path)
        head, head_file = None, Path(path) / HEAD_FILE
        if variant == "enc" and head_file.is_file():
            from safetensors.torch import load_file

            head = Float32Linear(int(config.d_model), 1)
            head.load_state_dict(load_file(str(head_file)))
        elif variant == "enc" and saved.get("variant") == "enc":
            raise BackboneError(f"{os.fspath(name_or_path)!r} was saved as a RankT5-Enc model but has no {HEAD_FILE}: "
                                "its trained score head is missing (an incomplete copy?)")
        return cls._build(model, tokenizer, head, settings).eval()

    @classmethod
    def _build(cls, model: nn.Module, tokenizer: Any, head: Float32Linear | None, settings: dict[str, Any]) -> RankT5:
        return cls(model, tokenizer, head, **settings)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Write the T5 (safetensors), the Enc head (``rankt5_head.safetensors``), the tokenizer, then
        ``retrieval_lab.json`` (written last: it marks the folder complete)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.head is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                      str(path / HEAD_FILE))
        save_family(path, self.model, self.tokenizer, self.family, self.settings)


def _scales_decoder_outputs(config: Any) -> bool:
    """Whether Hugging Face's model multiplies the decoder output by ``d_model ** -0.5`` before its LM head: T5 in
    transformers >= 5 says so in ``scale_decoder_outputs`` (a tied head, as t5-base; flan-t5's untied head is not
    scaled); mT5's model never scales; umT5 (and T5 configs written before the flag) scale when the head is tied.
    ``tests/test_rankt5.py`` checks each against the model's own logits."""
    flag = getattr(config, "scale_decoder_outputs", None)
    if flag is not None:
        return bool(flag)
    if str(getattr(config, "model_type", "")) == "mt5":
        return False
    return bool(getattr(config, "tie_word_embeddings", False))


def _title(variant: str) -> str:
    return {"encdec": "EncDec", "enc": "Enc"}.get(variant, variant)


class MonoT5(RankT5):
    """monoT5: ``Query: {q} Document: {d} Relevant:``; the decoder's first step is read at two words only,
    ``false`` and ``true``.

    * Re-ranking (:meth:`score_pairs`) reports ``log P(true)`` over those two logits (the monoT5 score).
    * Training (:meth:`forward`) gives ``logit(true) - logit(false)``: its sigmoid is that same ``P(true)``, so the
      pointwise loss (``loss=pointwise_ce``) on it is exactly monoT5's generation loss for a target of ``true`` or
      ``false`` taken over those two words; ranking losses see a score in the same order as ``log P(true)``.
    """

    family = "monot5"
    SUFFIX = " Relevant:"
    USES_SCORE_TOKEN = False
    SETTINGS = ("max_length",)
    DEFAULTS: dict[str, Any] = {"max_length": 512}  # monoT5's own (the presets use RankT5's 128)

    def __init__(self, model: nn.Module, tokenizer: Any, *, max_length: int = 512, true_token: str = "true",
                 false_token: str = "false") -> None:
        super().__init__(model, tokenizer, variant="encdec", max_length=max_length)
        ids = []
        for word in (false_token, true_token):
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                raise ValueError(f"monoT5 needs {word!r} to be one token of the vocabulary; it is {pieces}")
            ids.append(pieces[0])
        self.false_id, self.true_id = ids

    @property
    def settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length}

    @classmethod
    def _build(cls, model: nn.Module, tokenizer: Any, head: Float32Linear | None, settings: dict[str, Any]) -> MonoT5:
        return cls(model, tokenizer, max_length=settings["max_length"])

    def two_logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[n, 2]`` float32: the (false, true) logits at the first decoder step."""
        hidden = self._first_decoder_state(*self._encode(batch))
        with autocast_off(hidden.device):
            rows = self.model.get_output_embeddings().weight[[self.false_id, self.true_id]]  # [2, d]
            return hidden @ rows.float().T

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Training score: ``logit(true) - logit(false)`` (sigmoid = P(true) over the two words)."""
        two = self.two_logits(batch)
        return two[:, 1] - two[:, 0]

    def inference_scores(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``log P(true)`` from the softmax over (false, true): monoT5's score."""
        two = self.two_logits(batch)  # the T5 stack under the caller's autocast; the two logits in float32
        with autocast_off(two.device):
            return torch.log_softmax(two, dim=-1)[:, 1]
