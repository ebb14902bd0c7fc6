"""The token store: every document's token embeddings in one memory-mapped array (ColBERT sections 3.4-3.5).

Layout of a store folder (no pickles, no headers: every binary file is raw little-endian values whose shape the
manifest gives, so ``np.memmap`` opens it at offset 0)::

    manifest.json   {"format", "version", "dtype": "float16"|"float32", "dim", "num_docs", "num_tokens", ...}
    tokens.bin      [num_tokens, dim] token embeddings, document after document
    offsets.bin     int64 [num_docs + 1]: document i owns rows offsets[i] .. offsets[i+1]
    doc_ids.json    the documents' ids, in store order

The store is written once, streaming (:class:`TokenStoreWriter`: documents are encoded in chunks and appended, so
building never holds the corpus's embeddings in memory) into a temporary folder that is renamed when complete
(:func:`retrieval_lab.indexes.base.cached_folder`): a killed build is never read. On load every file's size is
checked against the manifest, so a truncated file stops with its name instead of giving wrong scores.

Scoring (:meth:`TokenStore.maxsim`) is exact late interaction against stored documents, with no encoder: the
candidates are sorted by length (little padding), and for each chunk of 32 documents one ``index_select`` gathers
their token rows into a padded ``[c, L, dim]`` block (a document shorter than ``L`` repeats its last token, which
cannot change a max), one conversion to float32, one batched matmul with the query's vectors, a max over the
document's tokens and a sum over the query's. A chunk's block stays in cache; ``benchmarks/bench_maxsim.py``
measures it against a padded torch einsum, PyLate and maxsim-cpu on the same tensors (README, "Benchmarks").
Scores are float32 sums of float32 products of the stored values and agree with a float64 loop to ~1e-6, whatever
the chunk size or the other documents of the call.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TokenStore", "TokenStoreWriter", "STORE_DTYPES", "as_rows"]

log = logging.getLogger(__name__)

FORMAT, VERSION = "retrieval-lab-token-store", 1
MANIFEST, TOKENS, OFFSETS, IDS = "manifest.json", "tokens.bin", "offsets.bin", "doc_ids.json"
STORE_DTYPES = {"float16": np.float16, "float32": np.float32}
SIMILARITIES = ("cosine", "l2")
INTERACTIONS = ("maxsim", "avgsim")
CHUNK_DOCS = 32  # documents per gathered block: ~3 MB of float32 at 180 x 128, cache-sized


def as_rows(x: Any) -> np.ndarray:
    """An array or tensor of vectors ``[n, dim]`` (any device, any float dtype) -> float32 ndarray."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"token embeddings must be 2-D [tokens, dim], got shape {x.shape}")
    return x


class TokenStoreWriter:
    """Append documents' token embeddings to a store folder; :meth:`finish` writes the offsets and the manifest."""

    def __init__(self, folder: str | os.PathLike, dim: int, dtype: str = "float16") -> None:
        if dtype not in STORE_DTYPES:
            raise ValueError(f"store dtype must be one of {sorted(STORE_DTYPES)}, got {dtype!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dim, self.dtype = int(dim), dtype
        self._file = open(self.folder / TOKENS, "wb")  # noqa: SIM115 (closed in finish)
        self._lengths: list[int] = []
        self._ids: list[str] = []

    def add(self, doc_ids: Sequence[str], embeddings: Sequence[Any]) -> None:
        """One ``[n_i, dim]`` array (or tensor) per document, in the order of ``doc_ids``."""
        if len(doc_ids) != len(embeddings):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(embeddings)} embedding arrays")
        rows = [as_rows(e) for e in embeddings]
        for doc_id, r in zip(doc_ids, rows):
            if r.shape[1] != self.dim:
                raise ValueError(f"document {doc_id!r}: token vectors of {r.shape[1]} dims, the store has {self.dim}")
        if rows:
            block = np.concatenate(rows).astype(STORE_DTYPES[self.dtype], copy=False)
            self._file.write(np.ascontiguousarray(block).astype(block.dtype.newbyteorder("<"), copy=False).tobytes())
        self._lengths.extend(len(r) for r in rows)
        self._ids.extend(str(i) for i in doc_ids)

    def finish(self, **info: Any) -> dict[str, Any]:
        """Close the token file, write offsets, ids and the manifest (``info`` is recorded in it); returns it."""
        self._file.close()
        offsets = np.zeros(len(self._lengths) + 1, dtype="<i8")
        np.cumsum(self._lengths, out=offsets[1:])
        (self.folder / OFFSETS).write_bytes(offsets.tobytes())
        (self.folder / IDS).write_text(json.dumps(self._ids), encoding="utf-8")
        manifest = {"format": FORMAT, "version": VERSION, "dtype": self.dtype, "dim": self.dim,
                    "num_docs": len(self._ids), "num_tokens": int(offsets[-1]), **info}
        (self.folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest


class TokenStore:
    """A read-only, memory-mapped token store (see the module docstring)."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, doc_ids: list[str], manifest: dict[str, Any],
                 path: Path | None = None) -> None:
        import torch

        self.tokens = tokens
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.doc_ids = doc_ids
        self.manifest = manifest
        self.path = path
        self.dim = int(manifest["dim"])
        self.lengths = np.diff(self.offsets)
        self._pos = {d: i for i, d in enumerate(doc_ids)}
        self._tokens_t = torch.from_numpy(tokens) if len(tokens) else torch.empty(0, self.dim)
        self._token_doc: np.ndarray | None = None

    # -- building / loading -------------------------------------------------------------------------------------
    @classmethod
    def write(cls, folder: str | os.PathLike, doc_ids: Sequence[str], texts: Sequence[str], encode_docs,
              *, dim: int, dtype: str = "float16", chunk_docs: int = 1024, show_progress: bool = False,
              info: dict[str, Any] | None = None) -> dict[str, Any]:
        """Encode ``texts`` with ``encode_docs(list of texts) -> list of [n_i, dim]`` in chunks of ``chunk_docs``
        (the encoder sorts each chunk by length) and write them to ``folder``; returns the manifest, which records
        the encoding time and documents per second."""
        from tqdm.auto import tqdm

        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(texts)} texts")
        writer = TokenStoreWriter(folder, dim, dtype)
        start = time.perf_counter()
        with tqdm(total=len(texts), desc="token index", unit="doc", disable=not show_progress) as bar:
            for i in range(0, len(texts), chunk_docs):
                chunk = list(texts[i:i + chunk_docs])
                writer.add(list(doc_ids[i:i + chunk_docs]), encode_docs(chunk))
                bar.update(len(chunk))
        seconds = time.perf_counter() - start
        return writer.finish(encode_seconds=round(seconds, 3),
                             docs_per_second=round(len(texts) / seconds, 2) if seconds > 0 else None, **(info or {}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TokenStore:
        """Open a store folder: the tokens memory-mapped (copy-on-write, never written back), the rest read."""
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path / MANIFEST}: not a token store manifest ({error})") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(f"{path / MANIFEST}: format {manifest.get('format')!r} v{manifest.get('version')}, "
                             f"expected {FORMAT!r} v{VERSION}")
        dtype, dim = manifest["dtype"], int(manifest["dim"])
        n_docs, n_tokens = int(manifest["num_docs"]), int(manifest["num_tokens"])
        item = np.dtype(STORE_DTYPES[dtype]).itemsize
        for name, want in ((TOKENS, n_tokens * dim * item), (OFFSETS, (n_docs + 1) * 8)):
            got = (path / name).stat().st_size
            if got != want:
                raise ValueError(f"{path / name}: {got} bytes, but the manifest says {want} "
                                 f"({n_docs} documents, {n_tokens} tokens x {dim} dims of {dtype}): a damaged store")
        offsets = np.fromfile(path / OFFSETS, dtype="<i8")
        if offsets[0] != 0 or offsets[-1] != n_tokens or (np.diff(offsets) < 0).any():
            raise ValueError(f"{path / OFFSETS}: offsets are not a partition of the {n_tokens} token rows")
        doc_ids = json.loads((path / IDS).read_text(encoding="utf-8"))
        if len(doc_ids) != n_docs:
            raise ValueError(f"{path / IDS}: {len(doc_ids)} ids, the manifest says {n_docs} documents")
        if n_tokens:
            tokens = np.memmap(path / TOKENS, dtype=np.dtype(STORE_DTYPES[dtype]).newbyteorder("<"), mode="c",
                               shape=(n_tokens, dim))
        else:
            tokens = np.empty((0, dim), dtype=STORE_DTYPES[dtype])
        return cls(tokens, offsets, list(doc_ids), manifest, path)

    def save(self, path: str | os.PathLike) -> None:  # the Index protocol; a store is written by `write`
        raise NotImplementedError("a token store is written once by TokenStore.write; copy its folder to move it")

    # -- facts --------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def nbytes(self) -> int:
        """Bytes of the token embeddings (the store's footprint; offsets and ids add 8 bytes a document + ids)."""
        return int(self.tokens.nbytes)

    def positions(self, doc_ids: Iterable[str]) -> np.ndarray:
        """Store positions of ``doc_ids`` (a ``KeyError`` naming the first unknown id)."""
        try:
            return np.fromiter((self._pos[d] for d in doc_ids), dtype=np.int64)
        except KeyError as error:
            raise KeyError(f"document {error.args[0]!r} is not in the token store ({len(self)} documents)") from None

    def doc_tokens(self, i: int) -> np.ndarray:
        """Document ``i``'s token embeddings ``[n_i, dim]`` as stored."""
        return np.asarray(self.tokens[self.offsets[i]:self.offsets[i + 1]])

    @property
    def token_doc(self) -> np.ndarray:
        """int32 ``[num_tokens]``: the store position of each token's document (4 bytes a token, built once)."""
        if self._token_doc is None:
            self._token_doc = np.repeat(np.arange(len(self), dtype=np.int32), self.lengths)
        return self._token_doc

    # -- scoring ------------------------------------------------------------------------------------------------
    def maxsim(self, query: Any, docs: np.ndarray, similarity: str = "cosine", interaction: str = "maxsim",
               chunk_docs: int = CHUNK_DOCS, timer: dict[str, float] | None = None) -> np.ndarray:
        """Late-interaction scores of one query (``[Tq, dim]``, its real vectors only) against the stored
        documents at positions ``docs`` -> float32 ``[len(docs)]``.

        ``similarity``: "cosine" (dot product of the normalised vectors) or "l2" (negative squared distance);
        ``interaction``: "maxsim" (max over the document's tokens) or "avgsim" (their mean). A document without
        vectors (never written by ColBERT, which keeps ``[CLS] [D] [SEP]``) matches nothing: ``-inf``, ranked last.
        ``timer`` (optional) accumulates seconds under "gather" (the candidates' rows copied out of the store),
        "convert" (to float32; nothing for a float32 store) and "maxsim" (products, max, sum).
        """
        import torch

        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
        q = torch.from_numpy(as_rows(query))
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors of shape {tuple(q.shape)}; the store holds {self.dim}-dim vectors")
        docs = np.asarray(docs, dtype=np.int64)
        out = np.zeros(len(docs), dtype=np.float32)
        if len(docs) == 0 or len(q) == 0:
            return out
        qT = q.T.contiguous()
        qn = (q * q).sum(-1) if similarity == "l2" else None
        # documents of similar length share a chunk (little padding), as the encoder batches them (section 3.4)
        order = np.argsort(self.lengths[docs], kind="stable")
        starts, lens = self.offsets[docs][order], self.lengths[docs][order]
        out_sorted = np.full(len(docs), -np.inf, dtype=np.float32)
        # one pair of buffers for the call: the gathered rows as stored, and as float32
        most = chunk_docs * int(lens.max(initial=0))
        stored = torch.empty((most, self.dim), dtype=self._tokens_t.dtype)
        converted = stored if stored.dtype == torch.float32 else torch.empty((most, self.dim), dtype=torch.float32)
        last_row = max(self.num_tokens - 1, 0)
        clock = time.perf_counter
        spent = {"gather": 0.0, "convert": 0.0, "maxsim": 0.0}
        for i in range(0, len(docs), chunk_docs):
            t0 = clock()
            s, n = starts[i:i + chunk_docs], lens[i:i + chunk_docs]
            c, width = len(s), int(n.max(initial=0))
            if width == 0:
                continue  # no vectors in the whole chunk: -inf
            # rows of each document, padded by repeating its last row (a max is unchanged; masked for avgsim)
            col = np.minimum(np.arange(width)[None, :], np.maximum(n, 1)[:, None] - 1)
            rows = torch.from_numpy(np.minimum(s[:, None] + col, last_row).reshape(-1))
            raw = torch.index_select(self._tokens_t, 0, rows, out=stored[: c * width])
            t1 = clock()
            x = (raw if converted is stored else converted[: c * width].copy_(raw)).view(c, width, self.dim)
            t2 = clock()
            sim = torch.matmul(x, qT)  # [c, width, Tq]
            if qn is not None:  # -|q - d|^2 = 2 q.d - |q|^2 - |d|^2
                sim = 2 * sim - (x * x).sum(-1, keepdim=True) - qn
            if interaction == "maxsim":
                per_q = sim.amax(1)  # padding repeats a real row: no effect on the max
            else:
                pad = torch.from_numpy(np.arange(width)[None, :] >= n[:, None])  # [c, width]
                per_q = sim.masked_fill(pad[:, :, None], 0.0).sum(1) / torch.from_numpy(np.maximum(n, 1))[:, None]
            score = per_q.sum(1)
            score[torch.from_numpy(n == 0)] = float("-inf")
            out_sorted[i:i + c] = score.numpy()
            t3 = clock()
            spent["gather"] += t1 - t0
            spent["convert"] += t2 - t1
            spent["maxsim"] += t3 - t2
        out[order] = out_sorted
        if timer is not None:
            for key, seconds in spent.items():
                timer[key] = timer.get(key, 0.0) + seconds
        return out

    def score_all(self, query: Any, similarity: str = "cosine", interaction: str = "maxsim",
                  timer: dict[str, float] | None = None) -> np.ndarray:
        """Scores of one query against every stored document (exhaustive search; the end-to-end oracle)."""
        return self.maxsim(query, np.arange(len(self)), similarity, interaction, timer=timer)
