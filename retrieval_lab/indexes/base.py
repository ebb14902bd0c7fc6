"""What every index is (BM25, single-vector FAISS, the multi-vector token store), and how it is cached.

An index is built once from a corpus (texts for BM25, embeddings for dense indexes), saved into a folder, loaded
back, searched into a Run, and reports its size. The stages depend on this protocol, not on bm25s or faiss.

:func:`cached_index` is the one cache path: a complete folder under the key is loaded; otherwise the index is built,
saved under a temporary name and renamed (:func:`retrieval_lab.cache.atomic_dir`), so a killed build is never
mistaken for a finished index. The caller's key must cover everything the index depends on (the corpus or
embeddings' content and the index settings).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from retrieval_lab.cache import atomic_dir, is_complete

__all__ = ["Index", "cached_index", "cached_folder", "folder_bytes"]

Run = dict[str, dict[str, float]]
I = TypeVar("I", bound="Index")


@runtime_checkable
class Index(Protocol):
    def build(self, *args: Any, **kwargs: Any) -> Any:
        """BM25: ``build(doc_ids, texts)``; dense: ``build(embeddings, doc_ids)``."""
        ...

    def save(self, path: str | os.PathLike) -> Any: ...

    @classmethod
    def load(cls, path: str | os.PathLike, **options: Any) -> Index: ...

    def search_run(self, qids: list[str], queries: Any, k: int) -> Run:
        """Top-k per query as a Run; ``queries`` are texts (BM25) or query embeddings (dense)."""
        ...

    def nbytes(self) -> int:
        """Bytes the index holds (its search structures), for bytes-per-document reports."""
        ...


def folder_bytes(path: str | os.PathLike) -> int:
    """Bytes of the files under ``path`` (what an index costs on disk)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def cached_index(path: str | os.PathLike, build: Callable[[], I], load: Callable[[Path], I]) -> tuple[I, bool]:
    """``(index, hit)``: the index saved at ``path`` when complete (``hit=True``), else ``build()`` saved there
    atomically (``hit=False``). The index's own files live in ``path/index``."""
    path = Path(path)
    if is_complete(path):
        return load(path / "index"), True
    index = build()
    with atomic_dir(path) as tmp:
        index.save(tmp / "index")
    return index, False


def cached_folder(path: str | os.PathLike, write: Callable[[Path], Any], load: Callable[[Path], I]) -> tuple[I, bool]:
    """``(index, hit)`` for an index written straight to disk (streamed, memory-mapped): when ``path`` is not
    complete, ``write(folder)`` fills ``path/index`` under a temporary name, which is renamed when it returns; the
    index is then loaded from its final place (a memory map must not point into the temporary folder)."""
    path = Path(path)
    hit = is_complete(path)
    if not hit:
        with atomic_dir(path) as tmp:
            write(tmp / "index")
    return load(path / "index"), hit
