"""Encode a corpus once and keep the embeddings on disk (the "encoded corpus" artifact).

``encode_corpus`` runs a document encoder over a corpus in length-sorted batches -- the
length bucketing of ColBERT section 3.4: documents of similar length share a batch, so
padding to the longest document *in the batch* wastes little -- puts the rows back in the
caller's order, and stores them under ``cache_dir/key``::

    cache_dir/key/embeddings.npy    float32 or float16, [n, d], rows in the order of doc_ids
    cache_dir/key/ids.json          the doc ids, same order
    cache_dir/key/meta.json         dtype, shape, batch size (informational)
    cache_dir/key/_COMPLETE         written last; a directory without it is never read

The directory is written atomically (temporary sibling directory + rename), and only after
every batch has been encoded, so an encoder that raises half-way leaves nothing that looks
finished. The cache key is the caller's business: it must hash everything the embeddings
depend on (checkpoint, corpus fingerprint, max length, pooling, ...); this module only
checks that a cached directory holds the doc ids it is asked for.

Writes go through ``retrieval_lab.cache.atomic_dir``: if another process finishes the same
key first, its directory is kept (same key, same content).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_lab.cache import COMPLETE_MARKER, atomic_dir, is_complete

__all__ = ["encode_corpus", "load_encoded"]

_DTYPES = {"float32": np.float32, "float16": np.float16}


# --------------------------------------------------------------------------- helpers
def _to_numpy(batch: Any) -> np.ndarray:
    """np.ndarray | torch.Tensor (any device, any float dtype) -> float32 ndarray."""
    if hasattr(batch, "detach"):  # torch.Tensor, without importing torch here
        batch = batch.detach().float().cpu().numpy()
    return np.asarray(batch, dtype=np.float32)


def _no_grad():
    """torch.no_grad() if torch is already imported (the encoder uses it), else a no-op."""
    torch = sys.modules.get("torch")
    return torch.no_grad() if torch is not None else nullcontext()


def _check_key(key: str) -> None:
    if not key or not isinstance(key, str) or key in (".", "..") or key.startswith(".") \
            or "/" in key or (os.sep in key) or (os.altsep and os.altsep in key):
        raise ValueError(
            f"cache key {key!r} must be a plain directory name (e.g. a hex digest), "
            "without path separators and not starting with '.'"
        )


def load_encoded(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a complete encoded-corpus directory: (float32 embeddings [n, d], doc ids)."""
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(
            f"{path} is not a complete encoded-corpus directory (no {COMPLETE_MARKER} marker): "
            "it was never written or its write was interrupted; encode again"
        )
    emb = np.load(path / "embeddings.npy")
    ids = json.loads((path / "ids.json").read_text())
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"{path}: embeddings {emb.shape} do not match {len(ids)} ids")
    return emb.astype(np.float32, copy=False), ids


# --------------------------------------------------------------------------- main entry
def encode_corpus(
    encode_fn: Callable[[list[str]], Any],
    doc_ids: Sequence[str],
    texts: Sequence[str],
    cache_dir: str | os.PathLike,
    key: str,
    batch_size: int = 64,
    dtype: str = "float32",
    show_progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` with ``encode_fn`` once; later calls with the same ``key`` read the cache.

    Args:
        encode_fn: encodes ONE batch: ``list[str] -> np.ndarray | torch.Tensor`` of shape
            ``[len(batch), d]``. Called under ``torch.no_grad()`` when torch is loaded.
        doc_ids: ids of the documents, same length and order as ``texts``; unique.
        texts: the text each document is encoded from (e.g. ``Doc.contents()``).
        cache_dir: parent directory of all encoded corpora.
        key: directory name under ``cache_dir``; must hash everything the embeddings depend
            on (checkpoint, corpus fingerprint, max length, pooling, ...).
        batch_size: documents per ``encode_fn`` call.
        dtype: storage precision on disk, ``"float32"`` or ``"float16"`` (half the bytes;
            ColBERT 3.4 stores 16-bit values). The result is always float32.
        show_progress: tqdm bar over documents.

    Returns:
        float32 array ``[len(doc_ids), d]``; row i embeds ``texts[i]``. With float16 storage
        the returned values are the float16-rounded ones, so a fresh encode and a cache hit
        return identical arrays.

    Batches are formed over the documents sorted by text length, longest first (an
    out-of-memory error shows up on the first batch, not after an hour), and the rows are
    scattered back to the input order.
    """
    _check_key(key)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    doc_ids = list(doc_ids)
    n = len(doc_ids)
    if n != len(texts):
        raise ValueError(f"{n} doc ids but {len(texts)} texts")
    if n == 0:
        raise ValueError("cannot encode an empty corpus")
    if len(set(doc_ids)) != n:
        raise ValueError("doc_ids contain duplicates")

    target = Path(cache_dir) / key
    if is_complete(target):
        emb, cached_ids = load_encoded(target)
        if cached_ids != doc_ids:
            raise ValueError(
                f"encoded-corpus cache {target} holds different doc ids than requested "
                f"({len(cached_ids)} cached vs {n} asked): the cache key must include the "
                "corpus fingerprint"
            )
        return emb

    # Length bucketing (ColBERT 3.4): sort by length, longest first; stable for ties.
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")
    store_dtype = _DTYPES[dtype]
    out: np.ndarray | None = None

    from tqdm.auto import tqdm

    with _no_grad(), tqdm(total=n, desc=f"encoding {key[:12]}", unit="doc",
                          disable=not show_progress) as bar:
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            emb = _to_numpy(encode_fn([texts[i] for i in rows]))
            if emb.ndim != 2 or emb.shape[0] != len(rows):
                raise ValueError(
                    f"encode_fn returned shape {emb.shape} for a batch of {len(rows)} texts; "
                    "expected [batch, dim]"
                )
            if out is None:
                out = np.empty((n, emb.shape[1]), dtype=store_dtype)
            elif emb.shape[1] != out.shape[1]:
                raise ValueError(f"encode_fn changed dimension: {emb.shape[1]} != {out.shape[1]}")
            out[rows] = emb
            bar.update(len(rows))
    assert out is not None
    if not np.isfinite(out).all():
        raise ValueError(
            f"embeddings contain inf/nan (storage dtype {dtype}); "
            + ("values exceed float16's range: use dtype='float32'" if dtype == "float16"
               else "the encoder produced non-finite values")
        )

    with atomic_dir(target) as tmp:
        np.save(tmp / "embeddings.npy", out)
        (tmp / "ids.json").write_text(json.dumps(doc_ids))
        (tmp / "meta.json").write_text(json.dumps(
            {"dtype": dtype, "shape": list(out.shape), "batch_size": batch_size,
             "order": "length-sorted batches, stored in input order"}, indent=2))
    return out.astype(np.float32, copy=False)
