"""What the stages and the Lightning modules call on a model family: two typed protocols.

A family is a plain ``nn.Module`` (one file in ``retrieval_lab/models/``); it plays a role when it has the
methods below. The generic stages (``retrievers/model.py``, ``rerankers/model.py``) and the Lightning modules
(``training/modules.py``) depend on these protocols only, never on a family's class.

Embeddings always come **with their mask**: ``mask[n]`` (one vector per text: all True) or ``mask[n, T]``
(one vector per token, ColBERT: False on padding). A padded position must never take part in a score, and a
cross-device gather pads, so the mask travels with the embeddings everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Encoded", "RetrieverFamily", "RerankerFamily", "IndexKind"]

#: how a retriever family's documents are indexed: one vector per document (FAISS) or one per token
IndexKind = str  # "single_vector" | "multi_vector"


class Encoded(NamedTuple):
    """Embeddings ``[n, dim]`` or ``[n, T, dim]`` and their mask ``[n]`` or ``[n, T]`` (True = real)."""

    embeddings: Tensor
    mask: Tensor

    @classmethod
    def single(cls, embeddings: Tensor) -> Encoded:
        """One vector per text: every row is real."""
        return cls(embeddings, torch.ones(embeddings.shape[0], dtype=torch.bool, device=embeddings.device))


@runtime_checkable
class RetrieverFamily(Protocol):
    """Encodes queries and documents apart; a score compares their embeddings (bi-encoder, ColBERT)."""

    family: ClassVar[str]
    index_kind: ClassVar[IndexKind]

    def tokenize_queries(self, texts: Sequence[str]) -> Mapping[str, Tensor]: ...

    def tokenize_docs(self, texts: Sequence[str]) -> Mapping[str, Tensor]: ...

    roles: ClassVar[tuple[str, ...]]
    SETTINGS: ClassVar[tuple[str, ...]]

    @property
    def settings(self) -> dict[str, Any]:
        """The resolved settings saved in ``retrieval_lab.json`` (part of cache keys of what the model encodes)."""
        ...

    def encode(self, batch: Mapping[str, Tensor]) -> Encoded:
        """Training path: a tokenised batch -> embeddings with their mask (gradients flow)."""
        ...

    def score(self, q: Encoded, d: Encoded) -> Tensor:
        """``[nq, nd]`` scores of every query against every document (padding never scores)."""
        ...

    def encode_queries(self, texts: Sequence[str], batch_size: int = ..., precision: str = ...,
                       show_progress: bool = ...) -> Any: ...

    def encode_docs(self, texts: Sequence[str], batch_size: int = ..., precision: str = ...,
                    show_progress: bool = ...) -> Any: ...

    def save_pretrained(self, path: Any) -> None: ...


@runtime_checkable
class RerankerFamily(Protocol):
    """Scores a (query, document) pair in one pass: pairs, or a single templated sequence (cross-encoder, T5)."""

    family: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]
    SETTINGS: ClassVar[tuple[str, ...]]

    def tokenize_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> Mapping[str, Tensor]: ...

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Training path: tokenised pairs -> one score per pair ``[n]`` (float32)."""
        ...

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str], batch_size: int = ...,
                    precision: str = ..., show_progress: bool = ...) -> Tensor: ...

    def save_pretrained(self, path: Any) -> None: ...
