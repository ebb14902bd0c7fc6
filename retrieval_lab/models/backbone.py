"""Backbones: where a model name points to, how it loads offline, and what every family shares.

Every model family in this package is a plain ``nn.Module`` around a Hugging Face backbone. This
file holds what they have in common, so that each family's file reads top to bottom next to its
paper:

* :func:`resolve_backbone` turns a config value (``retriever.model=...``) into something
  ``from_pretrained`` can load without surprises, and :func:`load_pretrained` loads it, turning the
  Hub's "couldn't connect" into a :class:`BackboneError` that says what to do.
* :func:`read_family` / :func:`write_family` keep the small ``retrieval_lab.json`` that a saved
  checkpoint carries (which family it is, with which settings), so a cross-encoder folder is never
  silently loaded as a bi-encoder.
* :func:`length_sorted_batches` and :func:`inference_context` are the inference plumbing: batches
  of similar length (ColBERT, section 3.4: sort by length so little compute is spent on padding),
  ``torch.inference_mode`` and optional bf16 autocast.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from retrieval_lab.cache import write_text_atomic
from retrieval_lab.hub import (  # name resolution and availability live in a module without torch (start-up checks)
    MINILM_ALIASES,
    BackboneError,
    FamilyMismatchError,
    hub_offline,
    require_available,
    resolve_backbone,
    shipped_minilm_path,
)

__all__ = [
    "BackboneError",
    "FamilyMismatchError",
    "FAMILY_FILE",
    "DEFAULT_BACKBONE",
    "MINILM_ALIASES",
    "shipped_minilm_path",
    "resolve_backbone",
    "require_available",
    "hub_offline",
    "load_pretrained",
    "read_family",
    "write_family",
    "save_family",
    "family_settings",
    "supports_token_types",
    "length_sorted_batches",
    "inference_context",
    "autocast_off",
    "Float32Linear",
    "PRECISIONS",
]

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
FAMILY_FILE = "retrieval_lab.json"
PRECISIONS = ("fp32", "bf16", "fp16")


# ---------------------------------------------------------------------------------------------
# Where a name points to
# ---------------------------------------------------------------------------------------------


_UNREACHABLE_HINTS = ("couldn't connect", "offline mode", "connection", "name or service not known", "timed out")


def load_pretrained(loader: Callable[..., Any], name_or_path: str, **kwargs: Any) -> Any:
    """``loader(resolve_backbone(name_or_path), **kwargs)`` with errors that say what to do.

    ``loader`` is any ``from_pretrained`` (``AutoModel.from_pretrained``, ``AutoTokenizer...``).
    When HF_HUB_OFFLINE is set at call time the Hub is not contacted at all
    (``local_files_only=True``), so an unknown name fails at once instead of retrying the network.
    """
    resolved = resolve_backbone(name_or_path)
    local = os.path.isdir(resolved)
    if not local and hub_offline():
        kwargs.setdefault("local_files_only", True)
    try:
        return loader(resolved, **kwargs)
    except ValueError as err:
        if type(err).__name__ != "HFValidationError":
            raise
        raise BackboneError(
            f"backbone {name_or_path!r} is neither a local folder nor a valid Hugging Face Hub name "
            "(org/name). Point the config at a folder: retriever.model=/path/to/folder"
        ) from err
    except OSError as err:
        if local:
            raise BackboneError(f"could not load a backbone from the folder {resolved!r}: {err}") from err
        text = str(err).lower()
        if hub_offline() or any(h in text for h in _UNREACHABLE_HINTS):
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "no network"
            raise BackboneError(
                f"could not load backbone {name_or_path!r}: it is not a local folder, the Hugging Face "
                f"Hub is unreachable ({why}) and it is not in the local Hugging Face cache. Download "
                "it where the Hub can be reached (e.g. `hf download "
                f"{name_or_path} --local-dir /path/to/folder`) and point the config at that folder: "
                "retriever.model=/path/to/folder (reranker.model=... for a reranker)."
            ) from err
        raise BackboneError(
            f"could not load backbone {name_or_path!r} from the Hugging Face Hub: {err}. "
            "Check the name, or point the config at a local folder: retriever.model=/path/to/folder"
        ) from err


# ---------------------------------------------------------------------------------------------
# retrieval_lab.json: which family saved a checkpoint
# ---------------------------------------------------------------------------------------------


def read_family(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``retrieval_lab.json`` of a local checkpoint folder, or None (plain backbone / Hub name)."""
    file = Path(os.path.expanduser(os.fspath(path))) / FAMILY_FILE
    if not file.is_file():
        return None
    meta = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or "family" not in meta:
        raise BackboneError(f"{file} is not a retrieval-lab model file (no 'family' key)")
    return meta


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("retrieval-lab")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


def write_family(path: str | os.PathLike[str], family: str, settings: dict[str, Any]) -> None:
    """Write ``retrieval_lab.json`` (family name + settings) into a checkpoint folder."""
    meta = {"family": family, "settings": settings, "retrieval_lab_version": _version(), "format": 1}
    write_text_atomic(Path(path) / FAMILY_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def save_family(path: str | os.PathLike[str], model: Any, tokenizer: Any, family: str, settings: dict[str, Any]) -> None:
    """Write a family's checkpoint folder: HF model (safetensors) + tokenizer, then ``retrieval_lab.json``
    last, which marks the folder complete."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    write_family(path, family, settings)


def given_settings(loader: str, overrides: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings a ``from_pretrained`` call sets (``None`` means "not set"); a name the family does not know is a
    ``TypeError`` naming ``loader`` and the known ones."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f"{loader}.from_pretrained got unknown settings {unknown}; known: {sorted(defaults)}")
    return given


def family_settings(path: str, expected: str, loader: str) -> dict[str, Any]:
    """Settings saved in ``path`` by family ``expected`` ({} for a plain backbone).

    Raises :class:`FamilyMismatchError` naming both families when ``path`` was saved by another.
    """
    meta = read_family(path) if os.path.isdir(os.path.expanduser(path)) else None
    if meta is None:
        return {}
    if meta["family"] != expected:
        raise FamilyMismatchError(
            f"{path!r} is a {meta['family']!r} checkpoint, but {loader}.from_pretrained loads "
            f"{expected!r} checkpoints. Load it with the {meta['family']!r} family (or point the "
            "config at a plain backbone / a checkpoint of the right family)."
        )
    return dict(meta.get("settings", {}))


# ---------------------------------------------------------------------------------------------
# Shared inference plumbing
# ---------------------------------------------------------------------------------------------


_PROJECTIONS = (("query", "key"), ("q", "k"), ("q_proj", "k_proj"), ("q_lin", "k_lin"))


def _computes_attention(module: torch.nn.Module) -> bool:
    """True for a module that projects queries and keys itself (so its ``dropout`` is on attention probabilities)."""
    return any(isinstance(getattr(module, q, None), torch.nn.Module) and isinstance(getattr(module, k, None), torch.nn.Module)
               for q, k in _PROJECTIONS)


def set_attention_dropout(model: torch.nn.Module, p: float) -> int:
    """Set the dropout on attention probabilities of every attention module of ``model`` to ``p``.

    Hugging Face attention modules keep it either as an ``nn.Dropout`` (BERT family: ``attention_probs_dropout_prob``)
    or as a float (T5: ``dropout_rate``); hidden-state dropout is untouched. Returns how many modules changed and
    raises :class:`BackboneError` when the model has none, so a setting never silently does nothing. On CPU, a
    MiniLM training step (32 pairs x 256 tokens, bf16) takes 2.3 s with ``p=0`` against 5.7 s with 0.1: dropout
    keeps PyTorch's scaled-dot-product attention off its fused kernel.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"attention dropout must be in [0, 1), got {p}")
    changed = 0
    for module in model.modules():
        if not _computes_attention(module):  # e.g. T5LayerSelfAttention's dropout is on the residual branch
            continue
        dropout = getattr(module, "dropout", None)
        if isinstance(dropout, torch.nn.Dropout):
            dropout.p = p
            changed += 1
        elif isinstance(dropout, float) and not isinstance(dropout, bool):
            module.dropout = p
            changed += 1
    if not changed:
        raise BackboneError(f"{type(model).__name__} has no attention module with a dropout to set")
    return changed


def enable_gradient_checkpointing(family: torch.nn.Module) -> int:
    """Turn on Hugging Face activation checkpointing (non-reentrant) in every backbone of a family that supports
    it; returns how many. :class:`BackboneError` when none does, so the setting never silently does nothing."""
    count = 0
    for module in family.modules():
        if not getattr(module, "supports_gradient_checkpointing", False):
            continue
        kwargs = {"use_reentrant": False}
        if hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5 (the old name is deprecated)
            if not module.is_activation_checkpointing:
                module.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
                count += 1
        elif hasattr(module, "gradient_checkpointing_enable"):
            if not module.is_gradient_checkpointing:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
                count += 1
    if not count:
        raise BackboneError(f"{type(family).__name__} has no backbone with gradient checkpointing "
                            "(train.gradient_checkpointing=true)")
    return count


def supports_token_types(model: torch.nn.Module, n: int = 2) -> bool:
    """True when the backbone has a token-type (segment) embedding with at least ``n`` types."""
    config = getattr(model, "config", None)
    if int(getattr(config, "type_vocab_size", 0) or 0) < n:
        return False
    return "token_type_ids" in inspect.signature(model.forward).parameters


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows built by hand (markers, templates) -> ``(input_ids, attention_mask)`` ``[n, L]``, padded with
    ``pad_id`` to the longest row (or to ``pad_to``)."""
    length = pad_to or max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        attention[i, : len(r)] = 1
    return input_ids, attention


@contextlib.contextmanager
def autocast_off(device: torch.device) -> Iterator[None]:
    """Autocast disabled for what runs inside (it computes in its inputs' dtype): the last step of a score, so a
    bf16 run rounds the backbone, never the score (:class:`Float32Linear`, RankT5's token row, monoT5's softmax)."""
    if torch.is_autocast_enabled(device.type):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:
        yield


class Float32Linear(torch.nn.Linear):
    """An ``nn.Linear`` that always computes in float32, with autocast disabled: a score head.

    A bf16 logit has 8 significant bits: scores near 5 come in steps of 1/32, enough to tie candidates a
    reranker should order, and under bf16-mixed training the loss would see (and the gradient flow through)
    those rounded scores. The head is one small matrix, so computing it in float32 costs nothing; the encoder
    below it still runs in bf16. The cross-encoder turns its model's head into this class in place
    (``module.__class__ = Float32Linear``): parameters, their names (``state_dict`` keys, so
    ``save_pretrained`` / ``from_pretrained``) and values are unchanged, and copies and pickles keep working
    (the class lives at module level); RankT5-Enc's dense head is one. Outputs are float32 whatever the input's
    dtype.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        with autocast_off(input.device):
            return torch.nn.functional.linear(input.float(), self.weight.float(), bias)


def length_sorted_batches(texts: Sequence[Any], batch_size: int, key: Callable[[Any], int] | None = None) -> Iterator[list[int]]:
    """Index batches over ``texts``, longest first, each batch of similar length.

    Sorting by length (characters by default, a cheap proxy for tokens) means each batch pads to
    the length of its own longest text, not the corpus's (ColBERT, section 3.4). Longest first so
    an out-of-memory error shows up in the first batch. Callers scatter results back by index.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    key = key or len
    order = sorted(range(len(texts)), key=lambda i: -key(texts[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@contextlib.contextmanager
def inference_context(precision: str, device: torch.device) -> Iterator[None]:
    """``torch.inference_mode`` plus autocast for ``precision`` in {"fp32", "bf16", "fp16"}.

    bf16 autocast works on CPU and GPU; fp16 only on GPU. On CPU it pays only where the CPU has native bf16
    (AVX512-BF16 / AMX): the README's encoding benchmark has the measured speed; on AVX2-only CPUs it is emulated
    and slower than fp32. Embeddings stay at cosine ~0.9999 to fp32. Don't cast a model you will train to bf16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' needs a GPU; use 'bf16' on CPU")
    with torch.inference_mode():
        if precision == "fp32":
            yield
        else:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield
