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

Status: first step of the issue "RankT5 encoder-only and encoder-decoder rerankers" (issue 10): the families' scoring
and tokenisation, checked against Hugging Face's model; not registered yet (no preset, no training through the
pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from retrieval_lab.models.backbone import pad_rows

__all__ = ["RankT5", "MonoT5", "VARIANTS"]

VARIANTS = ("encdec", "enc")
POOLINGS = ("first", "mean")


class RankT5(nn.Module):
    """RankT5 over a Hugging Face ``T5ForConditionalGeneration`` (see the module docstring)."""

    family = "rankt5"
    roles = ("reranker",)
    SETTINGS = ("variant", "max_length", "score_token", "pooling")

    def __init__(self, model: nn.Module, tokenizer: Any, head: nn.Linear | None = None, *, variant: str = "encdec",
                 max_length: int = 128, score_token: str = "<extra_id_10>", pooling: str = "first") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model, self.tokenizer = model, tokenizer
        self.variant, self.max_length, self.score_token, self.pooling = variant, int(max_length), score_token, pooling
        token_id = tokenizer.convert_tokens_to_ids(score_token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"score_token {score_token!r} is not in the tokenizer's vocabulary")
        self.score_token_id = int(token_id)
        d_model = int(model.config.d_model)
        self.head = head if head is not None else (nn.Linear(d_model, 1) if variant == "enc" else None)

    @property
    def settings(self) -> dict[str, Any]:
        return {"variant": self.variant, "max_length": self.max_length, "score_token": self.score_token,
                "pooling": self.pooling}

    # -- tokenisation ----------------------------------------------------------------------
    SUFFIX = ""  # text after the document (monoT5: " Relevant:")

    def tokenize_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> dict[str, torch.Tensor]:
        """``Query: {q} Document: {d}`` (+ the family's suffix) + ``</s>``, at most ``max_length`` tokens, cutting
        only the document (a query too long for the budget keeps the template and the query whole and gets no
        document tokens)."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        tok = self.tokenizer
        heads = tok([f"Query: {q} Document:" for q in queries], add_special_tokens=False)["input_ids"]
        bodies = tok([str(d) for d in docs], add_special_tokens=False)["input_ids"]
        tail = tok(self.SUFFIX.strip(), add_special_tokens=False)["input_ids"] if self.SUFFIX else []
        rows = []
        for head, body in zip(heads, bodies):
            room = max(self.max_length - len(head) - len(tail) - 1, 0)
            rows.append([*head, *body[:room], *tail, tok.eos_token_id])
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
        """The decoder's hidden state ``[n, d]`` at its first step (from the start token), scaled as
        ``T5ForConditionalGeneration`` scales it before the output projection: a row of that projection times this
        is the token's logit."""
        start = torch.full((encoded.shape[0], 1), int(self.model.config.decoder_start_token_id), dtype=torch.long,
                           device=encoded.device)
        hidden = self.model.get_decoder()(input_ids=start, encoder_hidden_states=encoded,
                                          encoder_attention_mask=mask).last_hidden_state[:, 0]
        if getattr(self.model.config, "scale_decoder_outputs", getattr(self.model.config, "tie_word_embeddings", False)):
            hidden = hidden * (self.model.model_dim ** -0.5)
        return hidden.float()

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised pairs -> one float32 score per pair ``[n]``."""
        encoded, mask = self._encode(batch)
        if self.variant == "enc":
            if self.pooling == "first":
                pooled = encoded[:, 0]
            else:
                m = mask.unsqueeze(-1).to(encoded.dtype)
                pooled = (encoded * m).sum(1) / m.sum(1).clamp(min=1)
            return self.head(pooled.float()).squeeze(-1).float()
        row = self.model.get_output_embeddings().weight[self.score_token_id]
        return self._first_decoder_state(encoded, mask) @ row.float()


class MonoT5(RankT5):
    """monoT5: ``Query: {q} Document: {d} Relevant:``; score = log P(true) over the two logits (true, false) at
    the first decoder step. Only those two rows of the output embedding are used."""

    family = "monot5"
    SUFFIX = " Relevant:"
    SETTINGS = ("max_length",)

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

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        rows = self.model.get_output_embeddings().weight[[self.false_id, self.true_id]]  # [2, d]
        two = self._first_decoder_state(*self._encode(batch)) @ rows.float().T  # [n, 2]: (false, true)
        return torch.log_softmax(two, dim=-1)[:, 1]
